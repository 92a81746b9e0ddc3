"""bench.explain_cost without TensorFlow: which rows each call holds, and that every mode is measured."""

from __future__ import annotations

import numpy as np

from bench import explain_cost
from fraudscore.artifact import Scores


class Model:
    """Flags rows whose first value is above 1; records each call's (rows, explain, only_flagged)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool, bool]] = []

    def score(self, rows: np.ndarray, *, explain: bool = False, only_flagged: bool = False) -> Scores:
        self.calls.append((len(rows), explain, only_flagged))
        n = len(rows)
        return Scores(rows[:, 0], np.zeros_like(rows), rows[:, 0] > 1, np.zeros(n, np.int32))


def test_calls_hold_a_normal_row_a_flagged_row_and_draws_of_100_and_10000() -> None:
    rows = np.arange(40, dtype=np.float32).reshape(20, 2) / 10
    flagged = rows[:, 0] > 1
    calls = explain_cost.call_sets(rows, flagged, np.random.default_rng(0))
    assert list(calls) == list(explain_cost.SIZES)
    assert calls["1 normal row"][0, 0] <= 1
    assert calls["1 flagged row"][0, 0] > 1
    assert [len(c) for c in calls.values()] == [1, 1, 100, 10_000]


def test_measure_times_every_mode_per_call_and_reports_the_flagged_share() -> None:
    model = Model()
    calls = {"two rows": np.array([[0.0, 0.0], [2.0, 0.0]], np.float32)}
    got = explain_cost.measure(model, calls, seconds=0.001, rounds=2)
    assert set(got["two rows"]) == {*explain_cost.MODES, "flagged_share"}
    assert got["two rows"]["flagged_share"] == 0.5
    assert all(got["two rows"][m] > 0 for m in explain_cost.MODES)
    assert {(e, f) for _, e, f in model.calls} == {(False, False), (True, False), (True, True)}
    assert "two rows | 50.0%" in explain_cost.table({"calls": got})
