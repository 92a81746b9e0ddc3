"""top_k: the same features in the same order whichever way it computes them, ties in feature order."""

from __future__ import annotations

import numpy as np
import pytest

from fraudscore.model import SORT_ROWS, _top_across_rows, sorted_top, top_contributions, top_k


def _errors(rows: int, features: int = 29, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    errors = (rng.random((rows, features), dtype=np.float32) ** 3).round(2)  # rounding makes many ties
    errors[::7] = 0.0  # perfect reconstructions: no contributors
    if features > 8:
        errors[1::5, 3:9] = errors[1::5, [8]]  # a tie across six features, sometimes at the top
    return errors


@pytest.mark.parametrize("rows", [SORT_ROWS + 1, 1000, 4096])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_across_rows_equals_the_stable_sort(rows: int, k: int) -> None:
    errors = _errors(rows, seed=rows + k)
    order = _top_across_rows(errors, k)
    assert order.shape == (rows, k)
    np.testing.assert_array_equal(order, sorted_top(errors, k))
    # and top_k gives each row exactly what it gives the row alone (the sort path)
    got_order, got_shares, got_has = top_k(errors, k)
    for i in range(0, rows, 97):
        want_order, want_shares, want_has = top_k(errors[i : i + 1], k)
        np.testing.assert_array_equal(got_order[i], want_order[0])
        assert got_has[i] == want_has[0]
        np.testing.assert_array_equal(got_shares[i], want_shares[0])


def test_equal_errors_come_in_feature_order() -> None:
    row = np.array([[0.0, 5.0, 5.0, 1.0, 5.0, 0.0]], dtype=np.float32)
    many = np.repeat(row, SORT_ROWS + 1, axis=0)  # the across-rows path
    for errors in (row, many):
        order, shares, has_error = top_k(errors, 4)
        np.testing.assert_array_equal(order[0], [1, 2, 4, 3])
        np.testing.assert_allclose(shares[0], [5 / 16, 5 / 16, 5 / 16, 1 / 16])
        assert has_error.all()


def test_a_row_without_error_has_no_contributors() -> None:
    errors = np.zeros((SORT_ROWS + 3, 29), dtype=np.float32)
    errors[1, 4] = 2.0
    order, shares, has_error = top_k(errors, 3)
    assert has_error.tolist() == [i == 1 for i in range(len(errors))]
    assert order[1, 0] == 4 and shares[1, 0] == 1.0
    assert top_contributions(errors[0], [f"f{i}" for i in range(29)]) == []


def test_a_nan_error_falls_back_to_sorting() -> None:
    errors = _errors(SORT_ROWS + 10)
    errors[5, 2] = np.nan
    order, _, _ = top_k(errors, 3)
    np.testing.assert_array_equal(order, sorted_top(errors, 3))


def test_k_larger_than_the_features_is_all_of_them() -> None:
    errors = _errors(SORT_ROWS + 1, features=4)
    order, shares, _ = top_k(errors, 10)
    assert order.shape == shares.shape == (SORT_ROWS + 1, 4)
    np.testing.assert_array_equal(np.sort(order, axis=1), np.tile(np.arange(4), (SORT_ROWS + 1, 1)))
