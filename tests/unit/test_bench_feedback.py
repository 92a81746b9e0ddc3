"""bench.feedback's simulation mechanics, without TensorFlow: days in time order, what analysts label, and
that no fit ever sees a row of the day it ranks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bench import feedback
from bench.feedback import DayLabels, Ranker, Stream


def stream(n: int = 400, seed: int = 0) -> Stream:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.05).astype(np.int8)
    return Stream(
        raw=rng.normal(size=(n, 3)).astype(np.float32),
        feature_errors=rng.random((n, 3)).astype(np.float32),
        reconstruction_error=(rng.random(n) + labels * rng.random(n)).astype(np.float32),
        labels=labels,
    )


def test_days_are_contiguous_equal_chunks_in_time_order() -> None:
    plan = feedback.plan_days(1003, 8)
    assert [len(d) for d in plan] == [126, 126, 126, 125, 125, 125, 125, 125]
    np.testing.assert_array_equal(np.concatenate(plan), np.arange(1003))
    with pytest.raises(ValueError, match="cannot cut 5 rows into 8 days"):
        feedback.plan_days(5, 8)


def test_analysts_label_the_alerts_and_the_sample_is_taken_as_legit_with_its_weight() -> None:
    s = stream()
    rows = np.arange(100, 200)
    alerted = feedback.top_k(rows, s.reconstruction_error[rows], 5)
    got = feedback.day_labels(s, 1, rows, alerted, 0.1, np.random.default_rng(0))
    np.testing.assert_array_equal(got.rows[:5], alerted)
    np.testing.assert_array_equal(got.labels[:5], s.labels[alerted])  # the true class, fraud or not
    sampled = got.rows[5:]
    assert len(sampled) > 0 and np.isin(sampled, rows).all() and not np.isin(sampled, alerted).any()
    assert (got.labels[5:] == 0).all() and (got.weights[5:] == 10).all() and (got.weights[:5] == 1).all()


class Recorder:
    """A fitter that remembers the rows of every fit and the rows each of its rankers was asked to score."""

    def __init__(self, s: Stream) -> None:
        self.s = s
        self.fits: list[set[int]] = []
        self.scored: list[tuple[int, set[int]]] = []  # (fit number, rows scored)

    def __call__(self, s: Stream, known: Sequence[DayLabels]) -> Ranker | None:
        self.fits.append({int(r) for k in known for r in k.rows})
        fit_no = len(self.fits) - 1

        def rank(rows: np.ndarray) -> np.ndarray:
            self.scored.append((fit_no, {int(r) for r in rows}))
            return -s.reconstruction_error[rows]  # a different ranking than the autoencoder's

        return rank


def test_the_loop_never_ranks_a_day_with_a_fit_that_saw_it_or_a_later_day() -> None:
    s = stream()
    plan = feedback.plan_days(len(s.labels), 5)
    recorder = Recorder(s)
    days = feedback.run_loop(
        s, plan, recorder, threshold=0.5, budget_percent=5, sample_rate=0.2, rng=np.random.default_rng(0)
    )
    assert len(recorder.fits) == 5  # one after each day
    day_of = {int(r): d for d, rows in enumerate(plan) for r in rows}
    ranked_days = [(fit, {day_of[r] for r in rows}) for fit, rows in recorder.scored]
    # Rankings of a whole day (the threshold recalibration rescores days already seen, which is allowed).
    for fit_no, seen in enumerate(recorder.fits):
        last_fitted_day = max(day_of[r] for r in seen)
        assert last_fitted_day == fit_no
        later = [d for f, ds in ranked_days if f == fit_no for d in ds if d > fit_no]
        assert later in ([], [fit_no + 1])  # the next day only, never one the fit saw
    assert days[0]["ranked_by"] == "reconstruction_error"
    assert all(d["ranked_by"] == "fraud_probability" for d in days[1:])
    assert [d["alerts"] for d in days] == [4] * 5


def test_the_unsupervised_arm_alerts_the_top_k_of_the_reconstruction_error() -> None:
    s = stream()
    plan = feedback.plan_days(len(s.labels), 4)
    days = feedback.run_loop(
        s, plan, None, threshold=0.9, budget_percent=2, sample_rate=0.01, rng=np.random.default_rng(0)
    )
    for d, rows in zip(days, plan, strict=True):
        top = rows[np.argsort(-s.reconstruction_error[rows])[:2]]
        assert d["caught"] == int(s.labels[top].sum()) and d["alerts"] == 2
        assert d["deployed"]["alerts"] == int(np.sum(s.reconstruction_error[rows] > d["deployed"]["threshold"]))


def test_leave_one_day_out_fits_without_the_day_it_ranks() -> None:
    s = stream()
    plan = feedback.plan_days(len(s.labels), 4)
    rng = np.random.default_rng(0)
    labelled = [
        feedback.day_labels(s, d, rows, feedback.top_k(rows, s.reconstruction_error[rows], 3), 0.1, rng)
        for d, rows in enumerate(plan)
    ]
    recorder = Recorder(s)
    feedback.leave_one_day_out(s, plan, labelled, recorder, budget_percent=3)
    for day, (seen, rows) in enumerate(zip(recorder.fits, plan, strict=True)):
        assert seen and not seen & set(rows.tolist()), f"day {day + 1}"


def test_the_label_curve_points_stop_at_the_frauds_the_split_has() -> None:
    from bench import label_curve

    assert label_curve.points(22) == [5, 10, 20, 22]  # 50 and "all" are both the 22 there are
    assert label_curve.points(60) == [5, 10, 20, 50, 60]
    assert label_curve.points(7) == [5, 7]


def test_the_label_curve_summary_compares_the_stage_with_the_better_other_ranker() -> None:
    from bench import label_curve

    def seed(stage: float, ae: float, gbdt: float) -> dict[str, object]:
        point = {"labelled_frauds": 5, "pr_auc": {"second_stage": stage, "autoencoder": ae, "gbdt": gbdt}}
        return {"points": [{**point, "chosen": "error"}]}

    (row,) = label_curve.summarise([seed(0.9, 0.8, 0.85), seed(0.8, 0.8, 0.95)])
    assert row["pr_auc"]["second_stage"]["mean"] == pytest.approx(0.85)
    assert row["stage_minus_best_other"] == pytest.approx(0.85 - 0.9)
    assert row["chosen"] == ["error", "error"]
