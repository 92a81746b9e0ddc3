"""Threshold policies on validation errors."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.calibrate import calibrate, confusion
from trainer.config import PolicyError, ThresholdPolicy


def test_best_f1_finds_the_optimum_by_brute_force() -> None:
    rng = np.random.default_rng(3)
    errors = np.r_[rng.gamma(2.0, 1.0, 2000), rng.gamma(6.0, 1.5, 40)].astype(np.float32)
    labels = np.r_[np.zeros(2000, int), np.ones(40, int)]
    chosen = calibrate(errors, labels, ThresholdPolicy.parse("best-f1"))
    best = max(confusion(errors, labels, float(t) - 1e-6).f1 for t in np.unique(errors))
    assert chosen.validation["f1"] == pytest.approx(best)
    assert confusion(errors, labels, chosen.value).f1 == pytest.approx(best)


def test_target_precision_takes_the_most_frauds_at_that_precision() -> None:
    errors = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1], np.float32)
    labels = np.array([1, 1, 0, 1, 1, 0, 0, 1, 0])
    chosen = calibrate(errors, labels, ThresholdPolicy.parse("precision:0.8"))
    # Flagging the top 5 gives precision 4/5 = 0.8 with 4 frauds; top 8 gives 5/8 < 0.8.
    assert 4 < chosen.value < 5
    assert chosen.validation["precision"] == pytest.approx(0.8)
    assert chosen.validation["tp"] == 4
    with pytest.raises(PolicyError, match="no threshold reaches precision"):
        calibrate(errors, np.array([0, 0, 0, 0, 0, 0, 0, 0, 1]), ThresholdPolicy.parse("precision:0.9"))


def test_budget_flags_that_share_without_labels() -> None:
    errors = np.arange(1000, dtype=np.float32)
    chosen = calibrate(errors, None, ThresholdPolicy.parse("budget:2"))
    assert int(np.sum(errors > np.float32(chosen.value))) == 20
    assert chosen.validation["alert_rate"] == pytest.approx(0.02)


def test_budget_never_splits_a_tie() -> None:
    # 2 rows wanted (20 % of 10). A tie that does not fit is left out, unless it is the very top.
    errors = np.array([5, 4, 4, 4, 1, 1, 1, 1, 1, 1], np.float32)
    chosen = calibrate(errors, None, ThresholdPolicy.parse("budget:20"))
    assert int(np.sum(errors > np.float32(chosen.value))) == 1
    errors = np.array([5, 5, 5, 1, 1, 1, 1, 1, 1, 1], np.float32)
    chosen = calibrate(errors, None, ThresholdPolicy.parse("budget:20"))
    assert int(np.sum(errors > np.float32(chosen.value))) == 3


def test_threshold_is_strictly_below_adjacent_float32_errors() -> None:
    a = np.float32(0.1)
    b = np.nextafter(a, np.float32(1.0))  # adjacent float32 values: no room for a midpoint
    errors = np.array([b, a, a / 2], np.float32)
    labels = np.array([1, 0, 0])
    chosen = calibrate(errors, labels, ThresholdPolicy.parse("best-f1"))
    assert list(errors > np.float32(chosen.value)) == [True, False, False]


def test_auto_policy_and_label_requirements() -> None:
    assert ThresholdPolicy.parse("auto").resolve(True) == ThresholdPolicy("best-f1")
    assert ThresholdPolicy.parse("auto").resolve(False) == ThresholdPolicy("budget", 0.2)
    with pytest.raises(PolicyError, match="budget:Q"):
        ThresholdPolicy.parse("precision:0.9").resolve(False)


@pytest.mark.parametrize("text", ["f1", "precision", "precision:abc", "precision:1.5", "budget:0", "best-f1:3"])
def test_malformed_policies(text: str) -> None:
    with pytest.raises(PolicyError, match="threshold policy"):
        ThresholdPolicy.parse(text)
