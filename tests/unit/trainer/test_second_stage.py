"""The supervised second stage: it learns a separable signal, refuses bad labels, repeats for a seed, and
compiles to TFLite with the same outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer import second_stage
from trainer.second_stage import MIN_FRAUDS, SecondStage, SecondStageError

F = 6
ROOT = Path(__file__).resolve().parents[3]


def synthetic(n: int, frauds: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw rows with a heavy-tailed amount column and errors spanning 1e-6..1e4; frauds shifted in both."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, F)).astype(np.float32)
    raw[:, -1] = rng.lognormal(3, 1.5, size=n)  # Amount-like
    errors = rng.lognormal(-2, 2, size=(n, F)).astype(np.float32) * 1e-3
    y = np.zeros(n, np.int8)
    y[rng.choice(n, frauds, replace=False)] = 1
    raw[y == 1, 0] += 2.5
    errors[y == 1, 2] *= 1e4
    return raw, errors.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted() -> tuple[SecondStage, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rows = synthetic(1500, 30, seed=0)
    return second_stage.fit(*rows, seed=3), rows


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
    again = second_stage.fit(*rows, seed=3)
    np.testing.assert_array_equal(second_stage.predict(again, *rows[:2]), second_stage.predict(stage, *rows[:2]))


def test_sample_weights_make_legit_rows_count_more() -> None:
    """Legit rows standing for 100 rows each (a 1 % sample): the fitted fraud rate drops accordingly."""
    raw, errors, y = synthetic(600, 30, seed=2)
    plain = second_stage.fit(raw, errors, y, seed=0)
    weighted = second_stage.fit(raw, errors, y, seed=0, sample_weight=np.where(y == 1, 1.0, 100.0))
    assert weighted.info["sample_weighting"]["weighted_legit"] == 570 * 100
    p_plain, p_weighted = (second_stage.predict(s, raw, errors)[y == 0].mean() for s in (plain, weighted))
    assert p_weighted < p_plain / 10


def test_it_compiles_to_tflite_with_the_same_outputs() -> None:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter  # what the fast path runs (fraudscore.fastpath)

    raw, errors, y = synthetic(400, 20, seed=4)
    stage = second_stage.fit(raw, errors, y, seed=0, hidden=4)  # the hidden layer too (elu)
    x = np.concatenate([raw, errors], axis=1)
    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(stage.model).convert())
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1)
    np.testing.assert_allclose(got, second_stage.predict(stage, raw, errors), rtol=1e-5)


def test_errors_only_ignores_the_raw_features() -> None:
    raw, errors, y = synthetic(400, 20, seed=5)
    stage = second_stage.fit(raw, errors, y, seed=0, inputs="errors")
    np.testing.assert_array_equal(
        second_stage.predict(stage, raw, errors), second_stage.predict(stage, raw * 0 + 7, errors)
    )


def _rows(n: int = 50, frauds: int = MIN_FRAUDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw, errors, y = synthetic(n, 0, seed=6)
    y[:frauds] = 1
    return raw, errors, y


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
        second_stage.fit(raw, errors, y)
    assert "\n" not in str(caught.value)


def test_fewer_than_min_frauds_names_the_count() -> None:
    raw, errors, y = _rows(frauds=MIN_FRAUDS - 1)
    with pytest.raises(SecondStageError, match=f"{MIN_FRAUDS - 1} labelled, at least {MIN_FRAUDS} needed"):
        second_stage.fit(raw, errors, y)


@pytest.mark.parametrize(("weights", "message"), [(np.zeros(50), "> 0"), (np.ones(49), "sample_weight")])
def test_bad_sample_weights_are_refused(weights: np.ndarray, message: str) -> None:
    with pytest.raises(SecondStageError, match=message):
        second_stage.fit(*_rows(), sample_weight=weights)


def test_a_saved_model_loads_back_in_a_fresh_process(
    fitted: tuple[SecondStage, tuple[np.ndarray, ...]], tmp_path: Path
) -> None:
    """trainer.derive keeps the model as .keras beside the SavedModel; a fresh process needs load_model."""
    stage, (raw, errors, _) = fitted
    stage.model.save(tmp_path / "stage.keras")
    np.save(tmp_path / "x.npy", np.concatenate([raw, errors], axis=1))
    script = (
        "import sys, numpy as np; from trainer import second_stage; "
        f"m = second_stage.load_model({str(tmp_path / 'stage.keras')!r}); "
        f"np.save({str(tmp_path / 'p.npy')!r}, np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}))).reshape(-1))"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, capture_output=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), second_stage.predict(stage, raw, errors))
