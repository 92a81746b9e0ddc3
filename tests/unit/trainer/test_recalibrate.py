"""trainer.precision (Wilson interval, proposed thresholds) and trainer.recalibrate.calibrate with a fake model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fraudscore.artifact import Scores
from fraudscore.labels import LabelSet
from trainer.config import TrainError
from trainer.precision import threshold_for_budget, threshold_for_precision, wilson
from trainer.recalibrate import MIN_SAMPLE_ALERTS, Settings, _budget, calibrate, format_report

FEATURES = ("score",)


def test_wilson_matches_published_values() -> None:
    # Brown, Cai & DasGupta (2001), and any table of the Wilson interval: 8/10 at 95% -> [0.490, 0.943].
    low, high = wilson(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(80, 100, 0.99)[0] < wilson(80, 100, 0.95)[0]


def test_threshold_for_precision_is_the_lowest_reaching_the_bound() -> None:
    # 60 labelled rows above 1.0: the lowest-scoring 20 are legit, the top 40 fraud.
    scores = np.linspace(1.01, 2.0, 60)
    labels = (np.arange(60) >= 20).astype(np.int64)
    found = threshold_for_precision(scores, labels, 1.0, 0.8, 0.95, 30)
    assert found is not None
    threshold, estimate = found
    assert estimate.low >= 0.8 and threshold > 1.0
    below = scores[scores < threshold].max()  # one step lower does not reach the bound
    assert wilson(int(labels[scores > below].sum()), int((scores > below).sum()))[0] < 0.8
    assert threshold_for_precision(scores, labels, 1.0, 0.999, 0.95, 30) is None


def test_threshold_for_budget_puts_the_share_above() -> None:
    sample = np.arange(1000, dtype=np.float32)
    t = threshold_for_budget(sample, 0.01)
    assert (sample > t).sum() == 10


class FakeModel:
    """Scores = the single raw feature."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.version = 4
        self.features = FEATURES
        self.card = SimpleNamespace(name="m", threshold_score="reconstruction_error")

    def score(self, raw: np.ndarray) -> Scores:
        s = raw[:, 0].astype(np.float32)
        return Scores(s, raw, s > self.threshold, np.zeros(len(s), np.int32))


def labelset(scores: list[float], labels: list[int], reasons: tuple[str, ...] = ("TX_ANOMALY",)) -> LabelSet:
    n = len(scores)
    return LabelSet(
        tuple(f"t{i}" for i in range(n)), FEATURES, np.asarray(scores, np.float32).reshape(n, 1),
        np.asarray(labels, np.int8), np.arange(n, dtype=np.int64), (reasons,) * n,
    )  # fmt: skip


NO_SAMPLE = (np.zeros((0, 1), np.float32), 0.0)


def test_report_rescored_precision_overall_and_per_reason() -> None:
    model: Any = FakeModel(1.0)
    labels = labelset([0.5, 1.5, 1.6, 1.7], [0, 1, 1, 0])  # 0.5: below this version's threshold now
    result = calibrate(model, labels, NO_SAMPLE, Settings())
    rows = {r["group"]: r for r in result.report["precision"]}
    assert rows["score > threshold 1"]["n"] == 3 and rows["score > threshold 1"]["successes"] == 2
    assert rows["reason TX_ANOMALY"]["n"] == 4 and rows["all labelled cases"]["successes"] == 2
    assert result.report["below_current_threshold"] == 1
    assert result.threshold is None and result.refusal is None


def test_target_precision_proposes_and_records_the_estimate() -> None:
    model: Any = FakeModel(1.0)
    scores = np.linspace(1.01, 2.0, 60).tolist()
    labels = labelset(scores, [int(i >= 20) for i in range(60)])
    result = calibrate(model, labels, NO_SAMPLE, Settings(target_precision=0.8))
    assert result.refusal is None and result.threshold is not None and result.threshold > 1.0
    card = result.card
    assert card["policy"] == "target_precision" and card["labels"]["count"] == 60
    assert card["precision"]["low"] >= 0.8 and card["source_version"] == 4
    assert card["labels"]["fingerprint"] == labels.fingerprint()


@pytest.mark.parametrize(
    ("scores", "flags", "settings", "message"),
    [
        ([], [], Settings(target_precision=0.8), "no usable labelled cases"),
        ([1.5] * 40, [0] * 40, Settings(target_precision=0.8), "the label set has no frauds (40 legit)"),
        ([1.5] * 10, [1] * 10, Settings(target_precision=0.8), "too few labels: 10 labelled case(s)"),
        ([1.5] * 40, [1, 0] * 20, Settings(target_precision=0.9), "no threshold at or above the current one"),
        (
            [1.5] * 12,
            [1] * 11 + [0],
            Settings(target_precision=0.5, min_labels=5, max_interval_width=0.2),
            "--max-interval-width 0.2",
        ),
        ([1.5] * 40, [1] * 40, Settings(budget=0.01), "no traffic sample"),
    ],
)
def test_refusals(scores: list[float], flags: list[int], settings: Settings, message: str) -> None:
    result = calibrate(FakeModel(1.0), labelset(scores, flags), NO_SAMPLE, settings)  # type: ignore[arg-type]
    assert result.threshold is None and result.refusal is not None and message in result.refusal


def test_budget_from_the_sample_with_its_interval() -> None:
    sample = (np.arange(2000, dtype=np.float32).reshape(-1, 1) / 1000, 0.01)
    result = calibrate(FakeModel(1.0), labelset([], []), sample, Settings(budget=0.01))  # type: ignore[arg-type]
    assert result.refusal is None and result.threshold is not None
    assert result.card["alert_rate"]["successes"] == 20 and result.card["sampling_rate"] == 0.01
    assert result.threshold > 1.0 and result.card["precision"] is None  # no labels above it
    below = calibrate(FakeModel(1.9), labelset([1.95], [1]), sample, Settings(budget=0.2))  # type: ignore[arg-type]
    assert below.threshold is not None and below.threshold < 1.9 and below.card["precision"] is None
    assert "not assessable" in format_report(below)
    small = (sample[0][: MIN_SAMPLE_ALERTS * 50], 0.01)
    refused = calibrate(FakeModel(1.0), labelset([], []), small, Settings(budget=0.01))  # type: ignore[arg-type]
    assert refused.refusal is not None and "needs at least 1000" in refused.refusal


def test_settings_and_budget_parsing() -> None:
    assert _budget("0.5%") == pytest.approx(0.005) and _budget("2") == pytest.approx(0.02)
    with pytest.raises(TrainError, match=r"--target-precision 1\.5"):
        Settings(target_precision=1.5)
    with pytest.raises(TrainError, match="--budget"):
        Settings(budget=0.0)


class ProbabilityModel(FakeModel):
    """A version whose threshold applies to the second stage's fraud_probability (= the raw feature here)."""

    def __init__(self, threshold: float) -> None:
        super().__init__(threshold)
        self.card = SimpleNamespace(name="m", threshold_score="fraud_probability")

    def score(self, raw: np.ndarray) -> Scores:
        p = raw[:, 0].astype(np.float32)
        return Scores(np.full(len(p), 99.0, np.float32), raw, p > self.threshold, np.zeros(len(p), np.int32), p)


def test_the_thresholded_score_is_the_cards() -> None:
    probabilities = np.linspace(0.51, 0.99, 60).tolist()
    labels = labelset(probabilities, [int(i >= 20) for i in range(60)])
    result = calibrate(ProbabilityModel(0.5), labels, NO_SAMPLE, Settings(target_precision=0.8))  # type: ignore[arg-type]
    assert result.threshold is not None and 0.5 < result.threshold < 1.0  # on the probability, not the error (99)
    assert (
        result.report["threshold_score"] == "fraud_probability"
        and result.card["threshold_score"] == "fraud_probability"
    )
