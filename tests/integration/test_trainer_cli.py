"""``fraudscore train`` end to end: label-free data with bad rows and a constant feature, the quality gate,
and errors that name what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fraudscore import features
from fraudscore.cli import main as fraudscore_main
from fraudscore.dev.generate import generate_frame, write_csv
from fraudscore.model import CARD_FILE, load
from trainer.config import TrainResult

pytestmark = pytest.mark.integration

FEATURES = list(features.MODEL_FEATURES)
BAD_LINES = ["0,oops" + ",1" * 29, "1" + ",nan" * 29, "2,3"]


@pytest.fixture(scope="module")
def label_free(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A label-free run: no Class column, V28 constant, three bad rows. Returns (model base, exit code)."""
    root = tmp_path_factory.mktemp("label-free")
    frame = generate_frame(6000, fraud_rate=0.0, seed=11).drop(columns=[features.LABEL])
    frame["V28"] = 0.25
    csv = root / "no-labels.csv"
    write_csv(frame, csv)
    with open(csv, "a") as f:
        f.write("\n".join(BAD_LINES) + "\n")
    base = root / "models" / "nolabels"
    code = fraudscore_main(
        ["train", "--data", str(csv), "--model-base", str(base), "--epochs", "3", "--batch-size", "512", "--quiet"]
    )
    return base, code


def test_label_free_training_uses_an_alert_budget(label_free: tuple[Path, int]) -> None:
    base, code = label_free
    assert code == 0
    card = json.loads((base / "1" / CARD_FILE).read_text())
    assert card["threshold"]["policy"] == "budget:0.2"
    assert card["threshold"]["validation"]["alert_rate"] == pytest.approx(0.002, abs=0.001)
    assert "pr_auc" not in card["metrics"] and card["data"]["has_labels"] is False
    assert card["splits"]["validation"]["frauds"] == 0


def test_bad_rows_are_dropped_and_counted_in_the_card(label_free: tuple[Path, int]) -> None:
    card = json.loads((label_free[0] / "1" / CARD_FILE).read_text())
    assert card["data"]["bad_rows"] == len(BAD_LINES)
    assert card["data"]["rows_read"] == 6000 + len(BAD_LINES) and card["data"]["rows_used"] == 6000


def test_zero_range_feature_scores_finite_and_counts_other_values(label_free: tuple[Path, int]) -> None:
    base = label_free[0]
    card = json.loads((base / "1" / CARD_FILE).read_text())
    assert card["statistics"]["V28"]["zero_range"] is True
    model = load(base)
    rows = generate_frame(20, fraud_rate=0.0, seed=12)[FEATURES].to_numpy(copy=True)
    rows[:, FEATURES.index("V28")] = 0.25
    same = model.score(rows)
    rows[:, FEATURES.index("V28")] = 3.0
    other = model.score(rows)
    assert np.isfinite(other.reconstruction_error).all()
    np.testing.assert_allclose(other.reconstruction_error, same.reconstruction_error, rtol=1e-6)
    np.testing.assert_array_equal(other.out_of_range_count, same.out_of_range_count + 1)


def test_quality_gate_refuses_a_worse_model_and_exports_nothing(
    train_csv: Path, train_result: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    achieved = train_result.card["metrics"]["pr_auc"]
    required = 0.999
    assert achieved < required  # precondition: the quick model is worse than the bar
    base = tmp_path / "models" / "gated"
    # The session model's settings (tests/conftest.py quick_config): a deterministic rerun must measure the same.
    args = ["--epochs", "8", "--batch-size", "512", "--patience", "3", "--seed", "7", "--quiet"]
    code = fraudscore_main(
        ["train", "--data", str(train_csv), "--model-base", str(base), "--min-pr-auc", str(required), *args]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"test PR-AUC {achieved:.4f} is below the required {required:g}" in err
    assert not base.exists() or (not any(base.glob("[0-9]*")) and not any(base.glob(".tmp*")))


def test_missing_columns_fail_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "partial.csv"
    generate_frame(300, fraud_rate=0.01, seed=1).drop(columns=["V7", "Amount"]).to_csv(csv, index=False)
    code = fraudscore_main(["train", "--data", str(csv), "--model-base", str(tmp_path / "m"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "missing required columns V7, Amount" in err
    assert not (tmp_path / "m").exists()


def test_label_policy_on_label_free_data_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "nolabels.csv"
    generate_frame(300, fraud_rate=0.0, seed=1).drop(columns=[features.LABEL]).to_csv(csv, index=False)
    code = fraudscore_main(
        ["train", "--data", str(csv), "--model-base", str(tmp_path / "m"), "--threshold-policy", "best-f1", "--quiet"]
    )
    assert code == 1 and "budget:Q" in capsys.readouterr().err
