"""trainer.supervise without training: the label checks (one line each) and the time-ordered held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fraudscore.labels import LabelSet
from trainer.config import TrainConfig
from trainer.supervise import LabelsRefused, TrainingLabels, _check, _fit_order, _split

F = ("V1", "Amount")


def found(labels: list[int], *, skipped: dict[str, int] | None = None, sample_rows: int = 0) -> TrainingLabels:
    n = len(labels)
    label_set = LabelSet(
        transaction_ids=tuple(f"t{i}" for i in range(n)),
        features=F,
        raw=np.zeros((n, len(F)), np.float32),
        labels=np.asarray(labels, np.int8),
        labelled_at=np.arange(n, dtype=np.int64),
        reasons=((),) * n,
        skipped=skipped or {},
    )
    sample = np.zeros((sample_rows, len(F)), np.float32)
    return TrainingLabels(
        label_set, np.arange(n, dtype=np.float64), sample, 0.1 if sample_rows else 0.0, {"from": "cases"}
    )


CASES = TrainConfig(data=Path("x.csv"), labels_from_cases=True)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (found([1] * 6 + [0] * 4, skipped={"no case record": 2}), r"cannot be used \(2 no case record\)"),
        (found([0] * 10), r"the label set has no frauds \(10 legit\)"),
        (found([1, 1, 0, 0]), "only 2 frauds labelled, at least 5 needed"),
        (found([1] * 6), "no legit rows"),
        (found([]), "no labelled transactions"),
    ],
)
def test_unusable_label_sets_are_refused_in_one_line(given: TrainingLabels, message: str) -> None:
    with pytest.raises(LabelsRefused, match=message) as caught:
        _check(given, CASES)
    assert str(caught.value).startswith("--labels-from-cases: ") and "\n" not in str(caught.value)


def test_frauds_only_with_a_traffic_sample_is_enough_legit() -> None:
    _check(found([1] * 6, sample_rows=50), CASES)


def test_a_probability_threshold_needs_frauds_to_fit_and_to_hold_out() -> None:
    staged = TrainConfig(data=Path("x.csv"), labels_from_cases=True, threshold_score="fraud_probability")
    _check(found([1] * 6 + [0] * 20), CASES)  # enough for the fit alone
    with pytest.raises(LabelsRefused, match="holds out the later 30%"):
        _check(found([1] * 6 + [0] * 20), staged)
    _check(found([1] * 8 + [0] * 20), staged)


def test_the_held_out_part_is_the_later_labels_of_each_class() -> None:
    given = found([1, 0] * 10)  # order = row index: later rows are later labels
    fit, held = _split(given)
    y = given.labels.labels
    assert sorted([*fit, *held]) == list(range(20))
    assert int(y[held].sum()) == 3 and int((y[held] == 0).sum()) == 3
    for cls in (0, 1):
        assert max(i for i in fit if y[i] == cls) < min(i for i in held if y[i] == cls)


def test_the_traffic_sample_rows_are_spread_over_the_labels_time_range_for_the_folds() -> None:
    order = _fit_order(np.array([30.0, 10.0, 20.0]), 5)
    np.testing.assert_array_equal(order[:3], [30.0, 10.0, 20.0])  # the labelled rows keep their own times
    np.testing.assert_array_equal(order[3:], [10.0, 15.0, 20.0, 25.0, 30.0])
    np.testing.assert_array_equal(_fit_order(np.array([3.0, 1.0]), 0), [3.0, 1.0])
