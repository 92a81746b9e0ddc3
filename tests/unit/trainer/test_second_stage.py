"""The supervised second stage: it learns a separable signal, refuses bad labels, repeats for a seed, compiles to
TFLite with the same outputs, and chooses its family by time-ordered folds of the labelled rows only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer import second_stage
from trainer.second_stage import MIN_FRAUDS, Errors, SecondStage, SecondStageError

F = 6
ROOT = Path(__file__).resolve().parents[3]


def synthetic(n: int, frauds: int, seed: int) -> tuple[np.ndarray, Errors, np.ndarray]:
    """Raw rows with a heavy-tailed amount column and errors spanning 1e-6..1e4; frauds shifted in both."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, F)).astype(np.float32)
    raw[:, -1] = rng.lognormal(3, 1.5, size=n)  # Amount-like
    errors = rng.lognormal(-2, 2, size=(n, F)).astype(np.float32) * 1e-3
    y = np.zeros(n, np.int8)
    y[rng.choice(n, frauds, replace=False)] = 1
    raw[y == 1, 0] += 2.5
    errors[y == 1, 2] *= 1e4
    return raw, scores_of(errors), y


def scores_of(errors: np.ndarray) -> Errors:
    errors = errors.astype(np.float32)
    return Errors(errors, errors.mean(axis=1, dtype=np.float32))


@pytest.fixture(scope="module")
def fitted() -> tuple[SecondStage, tuple[np.ndarray, Errors, np.ndarray]]:
    rows = synthetic(1500, 30, seed=0)
    return second_stage.fit(*rows, seed=3, family="logistic"), rows


def test_it_ranks_unseen_rows_of_a_separable_set(fitted: tuple[SecondStage, tuple[np.ndarray, ...]]) -> None:
    from sklearn.metrics import roc_auc_score

    stage, _ = fitted
    raw, errors, y = synthetic(3000, 60, seed=1)
    p = second_stage.predict(stage, raw, errors)
    assert p.dtype == np.float32 and p.shape == (3000,)
    assert roc_auc_score(y, p) > 0.97
    assert stage.info["frauds"] == 30 and stage.info["legit"] == 1470 and stage.info["rows"] == 1500


def test_the_probability_refers_to_the_population_not_to_the_balanced_fit(
    fitted: tuple[SecondStage, tuple[np.ndarray, ...]],
) -> None:
    """Frauds are up-weighted 49x for the fit; without the prior correction legit rows would score ~0.5."""
    stage, (raw, errors, y) = fitted
    p = second_stage.predict(stage, raw, errors)
    assert np.median(p[y == 0]) < 0.01
    assert 0.2 * y.mean() < p.mean() < 2 * y.mean()
    assert stage.info["sample_weighting"]["fraud_weight_multiplier"] == pytest.approx(1470 / 30)


def test_the_same_seed_gives_the_same_model(fitted: tuple[SecondStage, tuple[np.ndarray, ...]]) -> None:
    stage, rows = fitted
    again = second_stage.fit(*rows, seed=3, family="logistic")
    np.testing.assert_array_equal(second_stage.predict(again, *rows[:2]), second_stage.predict(stage, *rows[:2]))


@pytest.mark.parametrize(("family", "factor"), [("logistic", 10), ("gbdt", 5)])
def test_sample_weights_make_legit_rows_count_more(family: str, factor: float) -> None:
    """Legit rows standing for 100 rows each (a 1 % sample): the fitted fraud rate drops accordingly."""
    raw, errors, y = synthetic(600, 30, seed=2)
    plain = second_stage.fit(raw, errors, y, seed=0, family=family)
    weighted = second_stage.fit(raw, errors, y, seed=0, sample_weight=np.where(y == 1, 1.0, 100.0), family=family)
    assert weighted.info["sample_weighting"]["weighted_legit"] == 570 * 100
    new_raw, new_errors, new_y = synthetic(600, 30, seed=12)  # unseen rows: trees fit their training rows closely
    p_plain, p_weighted = (second_stage.predict(s, new_raw, new_errors)[new_y == 0].mean() for s in (plain, weighted))
    assert p_weighted < p_plain / factor


@pytest.mark.parametrize("family", ["hidden8", "gbdt"])
def test_it_compiles_to_tflite_with_the_same_outputs(family: str) -> None:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter  # what the fast path runs (fraudscore.fastpath)

    raw, errors, y = synthetic(400, 20, seed=4)
    stage = second_stage.fit(raw, errors, y, seed=0, family=family)  # the hidden layer (elu), the trees' ops
    x = second_stage.stage_input(raw, errors)
    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(stage.model).convert())
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1)
    np.testing.assert_allclose(got, second_stage.predict(stage, raw, errors), rtol=1e-5, atol=1e-7)


def test_the_trees_in_tf_ops_are_the_librarys_trees() -> None:
    """The Keras model's probability is scikit-learn's own (with the prior correction), on the fit rows (where
    values sit exactly on split thresholds) and on unseen rows."""
    raw, errors, y = synthetic(800, 25, seed=7)
    stage = second_stage.fit(raw, errors, y, seed=0, family="gbdt")
    assert stage.library is not None
    for r, e in ((raw, errors), synthetic(2000, 40, seed=8)[:2]):
        x = second_stage.stage_input(r, e)  # type: ignore[arg-type]
        np.testing.assert_allclose(second_stage.predict(stage, r, e), stage.library.probability(x), atol=1e-6)  # type: ignore[arg-type]


def test_the_error_family_ranks_by_the_reconstruction_error_alone() -> None:
    raw, errors, y = synthetic(400, 20, seed=5)
    stage = second_stage.fit(raw, errors, y, seed=0, family="error")
    p = second_stage.predict(stage, raw, errors)
    other = Errors(errors.feature_errors * 0 + 7, errors.reconstruction_error)
    np.testing.assert_array_equal(p, second_stage.predict(stage, raw * 0 + 7, other))
    order = np.argsort(errors.reconstruction_error, kind="stable")
    assert (np.diff(p[order]) >= 0).all()  # monotone in the error: the autoencoder's ranking


def test_time_folds_validate_on_later_rows_of_each_class() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.05).astype(np.int8)
    order = rng.permutation(500).astype(np.float64)
    folds = second_stage.time_folds(y, order)
    assert len(folds) == second_stage.CV_FOLDS
    for fit_rows, val_rows in folds:
        assert not np.isin(fit_rows, val_rows).any() and y[val_rows].any()
        for cls in (0, 1):
            assert order[fit_rows][y[fit_rows] == cls].max() < order[val_rows][y[val_rows] == cls].min()


def test_selection_chooses_by_the_folds_and_records_why() -> None:
    """Frauds that only trees can tell apart (an interaction), with an uninformative reconstruction error: the
    trees win the folds; a fraud signal in the error alone: the error family (the simplest) wins."""
    rng = np.random.default_rng(1)
    n = 1200
    raw = rng.normal(size=(n, F)).astype(np.float32)
    y = ((raw[:, 0] > 0.8) & (raw[:, 1] > 0.8)).astype(np.int8)
    flat = scores_of(rng.random((n, F)))
    stage = second_stage.fit(raw, flat, y, seed=0, families=("error", "logistic", "gbdt"))
    sel = stage.info["selection"]
    assert sel["chosen"] == "gbdt" and stage.info["design"]["family"] == "gbdt"
    assert set(sel["families"]) == {"error", "logistic", "gbdt"} and len(sel["folds"]) == second_stage.CV_FOLDS
    means = {k: v["mean_average_precision"] for k, v in sel["families"].items()}
    assert means["gbdt"] == max(means.values())

    errors = rng.random((n, F)).astype(np.float32)
    telling = Errors(errors, (errors.mean(axis=1) + 2 * y).astype(np.float32))
    noise = rng.normal(size=(n, F)).astype(np.float32)
    stage = second_stage.fit(noise, telling, y, seed=0, families=("error", "gbdt-raw"))
    assert stage.info["selection"]["chosen"] == "error"


def test_all_equal_scores_are_refused_with_one_line() -> None:
    n = 200
    y = np.zeros(n, np.int8)
    y[::20] = 1
    same = Errors(np.ones((n, F), np.float32), np.ones(n, np.float32))
    with pytest.raises(SecondStageError, match="same probability") as caught:
        second_stage.fit(np.zeros((n, F), np.float32), same, y, family="gbdt")
    assert "\n" not in str(caught.value)


def _rows(n: int = 50, frauds: int = MIN_FRAUDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw, errors, y = synthetic(n, 0, seed=6)
    y[:frauds] = 1
    return raw, errors.feature_errors, y


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r, e, y: (r, e, y * 0), "no frauds among the labels"),
        (lambda r, e, y: (r, e, np.r_[np.ones(MIN_FRAUDS - 1), np.zeros(len(y) - MIN_FRAUDS + 1)]), "too few frauds"),
        (lambda r, e, y: (r, e, y * 0 + 1), "no legit rows"),
        (lambda r, e, y: (r[:, :-1], e, y), "shape mismatch: raw"),
        (lambda r, e, y: (r, e, y[:-1]), "shape mismatch: labels"),
        (lambda r, e, y: (r, e, np.where(y == 1, 2, 0)), "labels: every label must be 0"),
        (lambda r, e, y: (np.where(np.arange(len(y))[:, None] == 7, np.nan, r), e, y), "non-finite values in raw"),
        (lambda r, e, y: (r, np.where(np.arange(len(y))[:, None] == 3, np.inf, e), y), "non-finite values in feature"),
    ],
)
def test_bad_labels_or_arrays_are_refused_with_one_line(change: object, message: str) -> None:
    raw, errors, y = change(*_rows())  # type: ignore[operator]
    with pytest.raises(SecondStageError, match=message) as caught:
        second_stage.fit(raw, scores_of(errors), y)
    assert "\n" not in str(caught.value)


def test_fewer_than_min_frauds_names_the_count() -> None:
    raw, errors, y = _rows(frauds=MIN_FRAUDS - 1)
    with pytest.raises(SecondStageError, match=f"{MIN_FRAUDS - 1} labelled, at least {MIN_FRAUDS} needed"):
        second_stage.fit(raw, scores_of(errors), y)


@pytest.mark.parametrize(("weights", "message"), [(np.zeros(50), "> 0"), (np.ones(49), "sample_weight")])
def test_bad_sample_weights_are_refused(weights: np.ndarray, message: str) -> None:
    with pytest.raises(SecondStageError, match=message):
        raw, errors, y = _rows()
        second_stage.fit(raw, scores_of(errors), y, sample_weight=weights)


@pytest.mark.parametrize("family", ["logistic", "gbdt"])
def test_a_saved_model_loads_back_in_a_fresh_process(family: str, tmp_path: Path) -> None:
    """trainer.derive keeps the model as .keras beside the SavedModel; a fresh process needs load_model."""
    raw, errors, y = synthetic(600, 20, seed=9)
    stage = second_stage.fit(raw, errors, y, seed=0, family=family)
    stage.model.save(tmp_path / "stage.keras")
    np.save(tmp_path / "x.npy", second_stage.stage_input(raw, errors))
    script = (
        "import sys, numpy as np; from trainer import second_stage; "
        f"m = second_stage.load_model({str(tmp_path / 'stage.keras')!r}); "
        f"np.save({str(tmp_path / 'p.npy')!r}, np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}))).reshape(-1))"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, capture_output=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), second_stage.predict(stage, raw, errors))
