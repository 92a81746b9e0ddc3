"""bench.quality's probes and explanation measures, without TensorFlow: synthetic rows and fake scorers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench import quality
from bench.quality import (
    best_deletion_sets,
    deletion_drops,
    deletion_ratios,
    envelope_budgets,
    explanation_quality,
    mean_sd,
    thresholded,
    with_medians,
)
from fraudscore.artifact import Scores
from trainer.calibrate import calibrate, confusion
from trainer.config import ThresholdPolicy
from trainer.probes import blind_spots, flag_shares, out_of_range_probes

F = 8
V = [0, 1, 2, 3, 4, 5, 6]  # the last column plays Amount


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, F)).astype(np.float32)


def linear_scorer(medians: np.ndarray, weights: np.ndarray) -> quality.Scorer:
    """score = sum_j w_j |x_j - m_j|: setting a feature to its median removes exactly its term."""

    def score(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = (np.abs(x - medians) * weights).sum(axis=1).astype(np.float64)
        return s, s > 1.0

    return score


def test_probes_scale_the_v_features_only_and_leave_the_input_alone() -> None:
    normals, train = rows(50), rows(200, seed=1)
    before = normals.copy()
    probes = out_of_range_probes(normals, train, V, np.random.default_rng(0))
    assert set(probes) == {"normals", "x5", "x20", "x100"} | {
        f"{s}_{k}" for s in ("above", "below") for k in (1, 3, 10)
    }
    np.testing.assert_array_equal(normals, before)
    np.testing.assert_array_equal(probes["normals"], normals)
    for factor in (5, 20, 100):
        p = probes[f"x{factor}"]
        np.testing.assert_allclose(p[:, V], normals[:, V] * factor, rtol=1e-6)
        np.testing.assert_array_equal(p[:, F - 1], normals[:, F - 1])  # Amount unchanged


def test_one_feature_per_row_moves_k_training_ranges_out_the_same_feature_in_every_probe() -> None:
    normals, train = rows(400), rows(300, seed=2)
    lo, hi = train.min(axis=0).astype(np.float64), train.max(axis=0).astype(np.float64)
    probes = out_of_range_probes(normals, train, V, np.random.default_rng(7))
    picked = None
    for side in ("above", "below"):
        for k in (1, 3, 10):
            p = probes[f"{side}_{k}"]
            changed = p != normals
            assert (changed.sum(axis=1) == 1).all()  # exactly one feature per row
            col = changed.argmax(axis=1)
            assert set(col.tolist()) <= set(V) and len(set(col.tolist())) == len(V)  # V only, all of them drawn
            picked = col if picked is None else picked
            np.testing.assert_array_equal(col, picked)
            want = hi + k * (hi - lo) if side == "above" else lo - k * (hi - lo)
            np.testing.assert_allclose(p[np.arange(len(p)), col], want[col].astype(np.float32), rtol=1e-6)
    # seeded: the same draw again, another seed another draw
    again = out_of_range_probes(normals, train, V, np.random.default_rng(7))
    np.testing.assert_array_equal(again["above_3"], probes["above_3"])
    other = out_of_range_probes(normals, train, V, np.random.default_rng(8))
    assert not np.array_equal(other["above_3"], probes["above_3"])


def test_flag_shares_are_the_flagged_fraction_of_each_probe() -> None:
    def score(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x[:, 0], x[:, 0] > 0

    probes = {"a": np.array([[1.0], [2.0], [-1.0], [-2.0]]), "b": np.array([[1.0], [-1.0], [-1.0], [-1.0]])}
    assert flag_shares(score, probes) == {"a": 0.5, "b": 0.25}


def test_thresholded_flags_as_calibrate_cuts() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(500) < 0.1).astype(int)
    errors = rng.random(500) + labels * rng.random(500)  # float64, as PCA's errors are
    t = calibrate(errors, labels, ThresholdPolicy.parse("best-f1"))
    got, flags = thresholded(lambda x: x, t.value)(errors)
    np.testing.assert_array_equal(got, errors)
    c = confusion(errors, labels, t.value)
    assert int(np.sum(flags & (labels == 1))) == c.tp == t.validation["tp"]
    assert int(np.sum(flags & (labels == 0))) == c.fp == t.validation["fp"]
    # strictly greater, compared in float32: an error that rounds onto the threshold is not flagged
    _, edge = thresholded(lambda x: x, 1.0)(np.array([1.0, 1.0 + 1e-9, 1.01]))
    assert edge.tolist() == [False, False, True]


def test_with_medians_replaces_each_rows_own_columns() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    medians = np.array([-1, -2, -3, -4], np.float32)
    got = with_medians(x, np.array([[0, 1], [2, 3], [1, 3]]), medians)
    want = np.array([[-1, -2, 2, 3], [4, 5, -3, -4], [8, -2, 10, -4]], np.float32)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x, np.arange(12, dtype=np.float32).reshape(3, 4))  # a copy


def test_deletion_drops_remove_the_top_terms_and_on_average_k_of_f_at_random() -> None:
    x = np.abs(rows(30)) + 0.1
    medians, weights = np.zeros(F, np.float32), np.ones(F, np.float32)
    terms = np.abs(x).astype(np.float64)
    top = np.argsort(-terms, axis=1)[:, :3]
    top_drop, random_drop = deletion_drops(
        x, top, medians, linear_scorer(medians, weights), np.random.default_rng(0), 4000
    )
    want_top = np.take_along_axis(terms, top, axis=1).sum(axis=1) / terms.sum(axis=1)
    np.testing.assert_allclose(top_drop, want_top, rtol=1e-5)
    # 3 distinct random features of F: each row loses 3/F of its score on average
    np.testing.assert_allclose(random_drop, 3 / F, atol=0.02)


def test_deletion_ratios_capped_and_zero_when_the_top_features_remove_nothing() -> None:
    top = np.array([0.6, 0.6, 0.6, 0.0, -0.1, 0.5])
    rnd = np.array([0.1, 0.0, -0.1, 0.1, 0.2, 1e-9])
    got = deletion_ratios(top, rnd)
    np.testing.assert_allclose(got, [6.0, quality.RATIO_CAP, quality.RATIO_CAP, 0.0, 0.0, quality.RATIO_CAP])


def test_faithful_row_specific_attributions_beat_one_pattern_for_every_row() -> None:
    n = 200
    rng = np.random.default_rng(5)
    medians = np.zeros(F, np.float32)
    x = (rng.normal(size=(n, F)) * 0.1).astype(np.float32)
    hot = rng.integers(0, F, size=(n, 2))
    x[np.arange(n), hot[:, 0]] += 5.0  # each row far out on one or two features of its own
    x[np.arange(n), hot[:, 1]] += 3.0
    score = linear_scorer(medians, np.ones(F, np.float32))
    faithful = np.abs(x)
    good = explanation_quality(x, faithful, medians, score, np.random.default_rng(0))
    assert good["rows"] == n
    shares = faithful / faithful.sum(axis=1, keepdims=True)
    assert good["top1_share_median"] == pytest.approx(float(np.median(shares.max(axis=1))))
    assert good["deletion_ratio_median"] > 2.0  # the top 3 carry most of the score, 3 random ones 3/8 of it
    # the same attribution for every row (as clipped per-feature errors were): one top-3 set, an unfaithful test
    flat = np.tile(np.arange(F, 0, -1, dtype=np.float32), (n, 1))
    bad = explanation_quality(x, flat, medians, score, np.random.default_rng(0))
    assert bad["distinct_top3_sets"] == 1 and bad["distinct_top3_share"] == 1 / n
    assert bad["top1_share_median"] == pytest.approx(F / (F * (F + 1) / 2))
    assert bad["deletion_ratio_median"] < 1.5 < good["deletion_ratio_median"]
    assert good["distinct_top3_sets"] > 20


def test_distinct_top3_sets_ignore_the_order_within_a_set() -> None:
    x = np.ones((3, F), np.float32)
    attributions = np.zeros((3, F), np.float32)
    attributions[0, [0, 1, 2]] = [3, 2, 1]
    attributions[1, [0, 1, 2]] = [1, 2, 3]  # the same set in another order
    attributions[2, [0, 1, 3]] = [3, 2, 1]
    got = explanation_quality(
        x, attributions, np.zeros(F, np.float32), linear_scorer(np.zeros(F), np.ones(F)), np.random.default_rng(0), 2
    )
    assert got["distinct_top3_sets"] == 2
    assert got["top1_share_median"] == pytest.approx(0.5)
    assert explanation_quality(
        x[:0], attributions[:0], np.zeros(F), linear_scorer(np.zeros(F), np.ones(F)), np.random.default_rng(0)
    ) == {"rows": 0}


def test_mean_sd_summarises_nested_numbers_over_seeds() -> None:
    runs: list[dict[str, Any]] = [
        {"pr_auc": 0.5, "seconds": 3.0, "design": "a", "ok": True, "probes": {"x5": 0.8, "x20": 1.0}},
        {"pr_auc": 0.7, "seconds": 9.0, "design": "a", "ok": False, "probes": {"x5": 1.0, "x20": 1.0}},
    ]
    got = mean_sd(runs)
    assert set(got) == {"pr_auc", "probes"}
    assert got["pr_auc"]["mean"] == pytest.approx(0.6) and got["pr_auc"]["sd"] == pytest.approx(np.sqrt(0.02))
    assert got["probes"]["x5"] == {"mean": pytest.approx(0.9), "sd": pytest.approx(np.sqrt(0.02))}
    assert got["probes"]["x20"] == {"mean": 1.0, "sd": 0.0}
    assert mean_sd(runs[:1])["pr_auc"] == {"mean": 0.5, "sd": 0.0}


def _summary(probes: dict[str, float], previous_normals: float, explained: dict[str, float]) -> dict[str, Any]:
    def ms(d: dict[str, float]) -> dict[str, Any]:
        return {k: {"mean": v, "sd": 0.0} for k, v in d.items()}

    return {
        "default": {
            "probes": ms(probes),
            "probes_previous_rule": ms({"normals": previous_normals}),
            "explanations": {"occlusion": ms(explained)},
        }
    }


GOOD_PROBES = {"normals": 0.001, "x5": 0.95, "x20": 1.0, "x100": 1.0, "above_10": 0.995, "below_10": 1.0}
GOOD_EXPLAINED = {"top1_share_median": 0.3, "deletion_ratio_median": 6.0, "distinct_top3_share": 0.2}


def test_probe_verdict_needs_every_goal_and_no_more_normals_flagged_than_the_previous_rule() -> None:
    assert quality.probe_verdict(_summary(GOOD_PROBES, 0.001, GOOD_EXPLAINED))["all_met"]
    v = quality.probe_verdict(_summary({**GOOD_PROBES, "x5": 0.89}, 0.001, GOOD_EXPLAINED))
    assert not v["x5"]["met"] and v["x20"]["met"] and not v["all_met"]
    v = quality.probe_verdict(_summary(GOOD_PROBES, 0.0005, GOOD_EXPLAINED))
    assert not v["normals_flag_rate"]["met"] and not v["all_met"]
    v = quality.probe_verdict(_summary({**GOOD_PROBES, "below_10": 0.98}, 0.001, GOOD_EXPLAINED))
    assert not v["below_10"]["met"] and not v["all_met"]


@pytest.mark.parametrize("key", sorted(GOOD_EXPLAINED))
def test_explanation_verdict_fails_on_any_goal_missed(key: str) -> None:
    assert quality.explanation_verdict(_summary(GOOD_PROBES, 0.001, GOOD_EXPLAINED))["all_met"]
    missed = {**GOOD_EXPLAINED, key: quality.EXPLANATION_GOALS[key] * 0.99}
    v = quality.explanation_verdict(_summary(GOOD_PROBES, 0.001, missed))
    assert not v[key]["met"] and not v["all_met"]


def test_blind_spots_name_the_hard_goals_missed() -> None:
    assert blind_spots({"x5": 0.1, "x20": 1.0, "x100": 1.0, "above_10": 0.995, "below_10": 1.0}) == []
    assert blind_spots({"x20": 0.41, "x100": 1.0, "above_10": 0.5}) == [
        "x20 flagged 41% (goal 99%)",
        "above_10 flagged 50% (goal 99%)",
    ]


def test_best_deletion_sets_find_the_set_single_resets_miss() -> None:
    """Features that interact: with x0 = x1 = 5 under max(|x0|, |x1|), resetting either alone removes nothing,
    so one-at-a-time occlusion ranks x2 first; the best 2-set is {x0, x1} (removes 5, x2 and x0 remove 4.4)."""

    def errors(x: np.ndarray) -> np.ndarray:
        return np.maximum(np.abs(x[:, 0]), np.abs(x[:, 1])) + 0.9 * np.abs(x[:, 2])

    row = np.array([[5.0, 5.0, 4.9, 0.0]], np.float32)
    medians = np.zeros(4, np.float32)
    assert set(best_deletion_sets(row, medians, errors, 2)[0].tolist()) == {0, 1}
    # without interactions (one term per feature) the best set is the largest terms
    x = np.abs(rows(5)) + 0.1
    got = best_deletion_sets(x, np.zeros(F, np.float32), lambda r: np.abs(r).sum(axis=1), 3)
    want = np.argsort(-x, axis=1)[:, :3]
    assert [set(g) for g in got.tolist()] == [set(w) for w in want.tolist()]


def _scores(error: np.ndarray, distance: np.ndarray) -> Scores:
    n = len(error)
    return Scores(
        reconstruction_error=error.astype(np.float32),
        feature_errors=np.zeros((n, 1), np.float32),
        is_anomaly=np.zeros(n, bool),
        out_of_range_count=np.zeros(n, np.int32),
        envelope_distance=distance.astype(np.float32),
    )


def test_envelope_budgets_choose_each_limit_on_validation_and_budget_zero_adds_no_validation_flag() -> None:
    """Per budget, the rule flags at most that share of validation normals beyond the score's own flags (0: none
    beyond), and the probes are flagged by score > threshold or distance > that limit."""
    rng = np.random.default_rng(0)
    n = 2_000
    distance = np.where(rng.random(n) < 0.01, rng.exponential(2.0, n), 0.0)
    distance[:2] = [30.0, 12.0]  # two far-out validation normals
    error = rng.random(n)
    error[5] = 2.0  # one normal the score flags (threshold 1)
    validation = _scores(error, distance)

    def score(x: np.ndarray) -> Scores:  # column 0 is the error, column 1 the distance
        return _scores(x[:, 0], x[:, 1])

    probes = {"normals": np.zeros((10, 2)), "far": np.array([[0.0, 20.0]] * 9 + [[0.0, 40.0]])}
    got = envelope_budgets(validation, 1.0, score, probes)
    assert list(got) == [f"budget_{b:g}" for b in quality.ENVELOPE_BUDGETS] + ["score_alone"]
    assert got["score_alone"]["validation_normals_flagged"] == 1 and "limit_widths" not in got["score_alone"]
    assert got["budget_0"]["limit_widths"] == pytest.approx(30.0)
    assert got["budget_0"]["validation_normals_flagged"] == 1  # the score's own, nothing added
    assert got["budget_0"]["far"] == pytest.approx(0.1)
    assert got["budget_0.1"]["validation_normals_flagged"] <= 1 + 0.001 * n
    assert got["budget_0.1"]["far"] == 1.0 and got["budget_0.1"]["normals"] == 0.0
    assert got["budget_0.1"]["validation_normals"] == n
