"""Occlusion explanations (fraudscore.model.occlude / contributions): pure numpy, no model needed."""

from __future__ import annotations

import numpy as np

from fraudscore.model import contributions, occlude, top_k


def test_occlude_sets_one_feature_per_copy_to_the_baseline() -> None:
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = np.array([-1, -2, -3], np.float32)
    out = occlude(rows, base)
    assert out.shape == (6, 3)
    for i in range(2):
        for j in range(3):
            want = rows[i].copy()
            want[j] = base[j]
            np.testing.assert_array_equal(out[i * 3 + j], want)


def test_contributions_name_the_features_that_make_the_score() -> None:
    # A score that only depends on features 0 and 2 (quadratic in their distance from the median 0).
    weights = np.array([4.0, 0.0, 1.0], np.float32)

    def score(x: np.ndarray) -> np.ndarray:
        return (weights * x**2).sum(axis=1).astype(np.float32)

    rows = np.array([[1.0, 9.0, 3.0], [2.0, 9.0, 0.0]], np.float32)
    medians = np.zeros(3, np.float32)
    c = contributions(score(rows), score(occlude(rows, medians)))
    np.testing.assert_allclose(c, [[4.0, 0.0, 9.0], [16.0, 0.0, 0.0]])
    order, shares, has = top_k(c, 2)
    assert order.tolist() == [[2, 0], [0, 1]]  # row-specific: not the same top feature for every row
    np.testing.assert_allclose(shares[0], [9 / 13, 4 / 13])
    assert has.all()


def test_a_feature_that_lowers_the_score_contributes_nothing() -> None:
    errors = np.array([1.0], np.float32)
    occluded = np.array([0.5, 2.0, 1.0], np.float32)  # setting feature 1 to normal would raise the score
    np.testing.assert_allclose(contributions(errors, occluded), [[0.5, 0.0, 0.0]])
