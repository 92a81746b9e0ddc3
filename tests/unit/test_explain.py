"""Occlusion explanations (fraudscore.model.occlude / contributions): pure numpy, and explaining only the
flagged rows with the quickly trained model."""

from __future__ import annotations

import numpy as np

from fraudscore.model import LoadedModel, contributions, occlude, top_features, top_k


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


def test_only_flagged_explains_the_flagged_rows_as_explaining_every_row_does(trained_model: LoadedModel) -> None:
    """Bulk calls explain only the rows is_anomaly flags: the same contributions (and top features) for those,
    all 0 (no top features) for the others."""
    rng = np.random.default_rng(0)
    medians = trained_model.medians
    assert medians is not None
    rows = np.tile(medians, (40, 1)) + rng.normal(0, 0.3, (40, len(medians))).astype(np.float32)
    far = [3, 17, 31]
    rows[far] *= 20  # beyond the envelope: flagged whatever the score
    every = trained_model.score(rows, explain=True)
    only = trained_model.score(rows, explain=True, only_flagged=True)
    assert every.contributions is not None and only.contributions is not None
    flagged = every.is_anomaly
    assert flagged[far].all() and 0 < flagged.sum() < len(rows)
    np.testing.assert_array_equal(only.reconstruction_error, every.reconstruction_error)
    np.testing.assert_allclose(only.contributions[flagged], every.contributions[flagged], rtol=1e-6, atol=1e-9)
    assert (only.contributions[~flagged] == 0).all() and (every.contributions[~flagged] > 0).any()
    want, got = top_features(every, 3), top_features(only, 3)
    np.testing.assert_array_equal(got[0][flagged], want[0][flagged])
    assert not got[2][~flagged].any()  # no top features for a row not flagged
    none = trained_model.score(rows[~flagged], explain=True, only_flagged=True)  # nothing flagged: no extra call
    assert none.contributions is not None and not none.contributions.any()
