"""The model search end to end (``trainer.pipeline.run`` and ``fraudscore train --search``), on tiny data.

- the choice is made on validation only: two files that differ only in their test rows give the same search
  table, the same design and the same threshold, and different test metrics;
- the exported model of a non-default design (z-score, no clipping, standardized errors) carries its
  transform and its error divisors inside: it scores like the trainer after the tf.Transform output is gone,
  and values far outside the training range are counted, not clipped;
- bad input is one clear line and exit 1, with nothing exported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudscore import features
from fraudscore.cli import main as fraudscore_main
from fraudscore.dev.generate import generate_frame, write_csv
from fraudscore.model import CARD_FILE, load
from tests.conftest import quick_config
from trainer import data, split
from trainer.config import TrainResult
from trainer.evaluate import offline_scores
from trainer.pipeline import run

pytestmark = pytest.mark.integration

FEATURES = list(features.MODEL_FEATURES)
ROWS, FRAUD_RATE = 6000, 0.02  # 120 frauds: 60 in validation, 60 in test
SPACE = {
    "bottleneck": [6, 12],
    "depth": [1],
    "activation": ["tanh"],
    "scaling": ["minmax", "zscore"],
    "clip": [False],
    "error_weighting": ["none"],
    "pca_start": [False],
}
ROW_ID = "_row"


def rows_in_test_split(frame: pd.DataFrame) -> np.ndarray:
    """Positions in ``frame`` of the rows trainer.split puts into the test split."""
    tagged = frame.assign(**{ROW_ID: np.arange(len(frame))})
    return np.sort(split.split(tagged, True).test[ROW_ID].to_numpy())


def search_table(result: TrainResult) -> list[tuple[Any, ...]]:
    return [(t["trial"], t["design"], t["state"], t["validation_pr_auc"]) for t in result.report["search"]["trials"]]


@pytest.fixture(scope="module")
def same_but_test(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, TrainResult]:
    """Searches on a file and on a copy whose test frauds were given the features of test normals."""
    root = tmp_path_factory.mktemp("search-leak")
    frame = generate_frame(ROWS, fraud_rate=FRAUD_RATE, seed=21)
    original, changed_csv = root / "original.csv", root / "test-changed.csv"
    write_csv(frame, original)

    in_test = rows_in_test_split(frame)
    is_fraud = frame[features.LABEL].to_numpy() == 1
    test_frauds = in_test[is_fraud[in_test]]
    test_normals = in_test[~is_fraud[in_test]]
    assert len(test_frauds) == 60 and len(test_normals) > 1000
    changed = frame.copy()
    donors = np.random.default_rng(0).choice(test_normals, size=len(test_frauds), replace=False)
    changed.loc[test_frauds, FEATURES] = frame.loc[donors, FEATURES].to_numpy()
    write_csv(changed, changed_csv)

    # Precondition: as the trainer reads them, the two files differ in the test split only.
    a, b = (split.split(data.load_csv(p).frame, True) for p in (original, changed_csv))
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.validation, b.validation)
    assert not a.test[FEATURES].equals(b.test[FEATURES])
    np.testing.assert_array_equal(a.test[features.LABEL], b.test[features.LABEL])

    def search(csv: Path, name: str) -> TrainResult:
        config = quick_config(
            csv,
            root / "models" / name,
            search=True,
            search_space=SPACE,
            search_trials=3,
            search_seeds=(0, 1),
            search_refine=False,  # bounded time; refinement sees the same validation split (tests/unit)
            baselines=False,
            plots=False,
        )
        return run(config)

    return search(original, "original"), search(changed_csv, "changed")


def test_the_search_never_looks_at_the_test_split(same_but_test: tuple[TrainResult, TrainResult]) -> None:
    original, changed = same_but_test
    # The test rows changed the test metrics a lot (the changed file's test frauds look like normals) ...
    assert original.report["metrics"]["pr_auc"] > changed.report["metrics"]["pr_auc"] + 0.2
    # ... and nothing that was chosen: the per-trial validation PR-AUCs, the design, the seed, the threshold.
    assert search_table(original) == search_table(changed)
    assert len(search_table(original)) == 3
    assert original.card["training"]["design"] == changed.card["training"]["design"]
    assert original.card["training"]["seed"] == changed.card["training"]["seed"]
    assert original.card["threshold"]["value"] == changed.card["threshold"]["value"]
    assert original.report["metrics"]["validation_pr_auc"] == changed.report["metrics"]["validation_pr_auc"]


def test_the_exported_model_is_the_winners_best_seed(same_but_test: tuple[TrainResult, TrainResult]) -> None:
    result = same_but_test[0]
    s = result.report["search"]
    complete = [t for t in s["trials"] if t["state"] == "complete"]
    winner = max(complete, key=lambda t: t["validation_pr_auc_mean"])
    assert s["winner"]["trial"] == winner["trial"] and result.card["training"]["design"] == winner["design"]
    assert result.card["training"]["chosen_by"] == "model search (--search)"
    best_seed = (0, 1)[int(np.argmax(winner["validation_pr_auc"]))]
    assert s["exported_seed"] == best_seed == result.card["training"]["seed"]
    # The exported model's own validation PR-AUC is that seed's entry in the table.
    assert result.report["metrics"]["validation_pr_auc"] == pytest.approx(max(winner["validation_pr_auc"]))
    md = (result.version_dir / "report" / "report.md").read_text()
    assert "## Model search (validation only)" in md and winner["design"] in md


# --- the exported transform of a non-default design -------------------------------------------------------

NON_DEFAULT = {**SPACE, "bottleneck": [12], "scaling": ["zscore"], "error_weighting": ["standardized"]}


@pytest.fixture(scope="module")
def zscore_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``fraudscore train --search`` pinned to z-score, no clipping, standardized errors; the work dir deleted."""
    root = tmp_path_factory.mktemp("zscore")
    csv = root / "train.csv"
    write_csv(generate_frame(ROWS, fraud_rate=FRAUD_RATE, seed=22), csv)
    base, work = root / "models" / "zscore", root / "work"
    code = fraudscore_main(
        [
            "train", "--data", str(csv), "--model-base", str(base), "--work-dir", str(work),
            "--search", "--search-space", json.dumps(NON_DEFAULT), "--search-trials", "1", "--search-seeds", "3",
            "--no-search-refine", "--epochs", "6", "--batch-size", "512", "--no-baselines", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    assert any(work.rglob("transform_fn"))  # precondition: the tf.Transform output existed ...
    shutil.rmtree(work)  # ... and is gone now: serving must not need it
    return base, csv


def test_the_design_and_error_divisors_are_in_the_card(zscore_model: tuple[Path, Path]) -> None:
    card = json.loads((zscore_model[0] / "1" / CARD_FILE).read_text())
    assert card["training"]["design"] == "zscore noclip 29-12-29 tanh error:standardized"
    assert card["training"]["seed"] == 3
    assert card["preprocessing"]["scaling"] == "zscore" and card["preprocessing"]["clip"] is False
    divisors = np.array(card["error"]["divisors"])
    assert card["error"]["weighting"] == "standardized" and divisors.shape == (29,)
    assert divisors.min() > 0 and divisors.max() > 2 * divisors.min()  # dividing by them changes the error


def test_the_saved_model_scores_like_the_trainer_without_the_transform_output(
    zscore_model: tuple[Path, Path],
) -> None:
    base, csv = zscore_model
    frame = pd.read_csv(csv).iloc[::5]
    model = load(base)
    got = model.score(frame[FEATURES].to_numpy())
    expected = offline_scores(frame, model.path)
    np.testing.assert_allclose(got.reconstruction_error, expected.reconstruction_error, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.feature_errors, expected.feature_errors, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got.out_of_range_count, expected.out_of_range_count)
    # Unit divisors would give other errors: the SavedModel really applies the standardized weighting.
    divisors = np.array(json.loads((model.path / CARD_FILE).read_text())["error"]["divisors"], np.float32)
    unweighted = (got.feature_errors * divisors).mean(axis=1)
    assert not np.allclose(unweighted, got.reconstruction_error, rtol=1e-2)


def test_values_far_outside_the_training_range_are_counted_not_clipped(zscore_model: tuple[Path, Path]) -> None:
    base, csv = zscore_model
    model = load(base)
    stats = json.loads((model.path / CARD_FILE).read_text())["statistics"]
    train = split.split(data.load_csv(csv).frame, True).train
    row = train[FEATURES].iloc[0].to_numpy(np.float64)
    assert model.score(row[None, :]).out_of_range_count[0] == 0  # a training normal is inside the range
    i, v1 = FEATURES.index("V1"), stats["V1"]
    distances = [5.0, 50.0, 500.0]  # in standard deviations beyond the training maximum / minimum
    pushed = np.repeat(row[None, :], 2 * len(distances), axis=0)
    for k, d in enumerate(distances):
        pushed[k, i] = v1["max"] + d * v1["scale"]
        pushed[len(distances) + k, i] = v1["min"] - d * v1["scale"]
    scores = model.score(pushed)
    np.testing.assert_array_equal(scores.out_of_range_count, 1)
    for side in (scores.reconstruction_error[: len(distances)], scores.reconstruction_error[len(distances) :]):
        assert side[0] < side[1] < side[2], side  # clipped values would all score the same
        assert side[2] > 100 * side[0]  # the scaled value grows linearly, its squared error quadratically
    expected = offline_scores(pd.DataFrame(pushed, columns=FEATURES), model.path)
    np.testing.assert_allclose(scores.reconstruction_error, expected.reconstruction_error, rtol=1e-5)


# --- bad input: one line, exit 1, nothing exported ----------------------------------------------------------


def nothing_exported(base: Path) -> bool:
    return not base.exists() or (not any(base.glob("[0-9]*")) and not any(base.glob(".tmp*")))


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("fraudscore train:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "small.csv"
    write_csv(generate_frame(1500, fraud_rate=0.02, seed=23), path)
    return path


def train(csv: Path, base: Path, *argv: str) -> int:
    return fraudscore_main(["train", "--data", str(csv), "--model-base", str(base), "--quiet", *argv])


def test_search_without_class_column_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "nolabels.csv"
    generate_frame(1500, fraud_rate=0.0, seed=1).drop(columns=[features.LABEL]).to_csv(csv, index=False)
    base = tmp_path / "models" / "m"
    assert train(csv, base, "--search") == 1
    line = error_line(capsys.readouterr().err)
    assert f"{csv}: --search ranks designs by validation PR-AUC and needs the Class column" in line
    assert "train without --search" in line
    assert not base.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ('{"depth": []}', "search space: depth must be a non-empty list of choices, got []"),
        ('{"width": [8]}', "search space: unknown dimension width"),
        ('{"depth": [1,', "--search-space: not valid JSON: "),
        ('["depth"]', "--search-space: expected a JSON object of dimension -> list of choices"),
    ],
)
def test_a_bad_search_space_is_one_clear_line(
    small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], space: str, message: str
) -> None:
    base = tmp_path / "models" / "m"
    assert train(small_csv, base, "--search", "--search-space", space) == 1
    assert message in error_line(capsys.readouterr().err)
    assert nothing_exported(base)


# Diverging on purpose: the errors of the diverged networks overflow float32 when squared.
@pytest.mark.filterwarnings("ignore:overflow encountered in square:RuntimeWarning")
def test_a_search_where_every_design_diverges_exports_nothing(
    small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An absurd learning rate blows every design's weights up: its validation errors are not finite.
    base = tmp_path / "models" / "m"
    space = {**SPACE, "bottleneck": [6], "scaling": ["zscore"], "activation": ["relu"]}
    code = train(
        small_csv, base, "--search", "--search-space", json.dumps(space), "--search-trials", "2", "--no-search-refine",
        "--search-seeds", "0", "--learning-rate", "1e30", "--epochs", "2",
    )  # fmt: skip
    line = error_line(capsys.readouterr().err)
    assert code == 1
    assert "the search produced no usable model in 2 trials (trial 0 failed: " in line
    assert nothing_exported(base)
