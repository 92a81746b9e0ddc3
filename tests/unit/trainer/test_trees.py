"""trainer.trees: a fitted HistGradientBoostingClassifier as gather/compare/matmul ops gives the library's own
predictions: the same leaf for every row (values on split thresholds, NaN), the same probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import trees
from trainer.second_stage import one_thread


def fitted(seed: int = 0, nan: bool = True) -> tuple[object, np.ndarray]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, 7)).astype(np.float32)
    x[:, 3] = np.round(x[:, 3], 1)  # few distinct values: thresholds between them, rows sitting on bins' edges
    y = ((x[:, 0] + x[:, 1] ** 2 + rng.normal(size=len(x))) > 2.0).astype(np.int8)
    if nan:
        x[rng.random(x.shape) < 0.03] = np.nan  # missing values: each split learns where they go
    clf = HistGradientBoostingClassifier(random_state=seed, max_iter=60, early_stopping=False)
    with one_thread():
        clf.fit(x.astype(np.float64), y)
    return clf, x


def probes(x: np.ndarray, tab: trees.Tables, seed: int = 1) -> np.ndarray:
    """Training rows, new rows, and rows whose values are every split threshold and its float32 neighbours."""
    rng = np.random.default_rng(seed)
    new = rng.normal(size=(1000, x.shape[1])).astype(np.float32) * 2
    new[rng.random(new.shape) < 0.03] = np.nan
    edges = np.tile(np.nanmedian(x, axis=0), (3 * tab.feature.size, 1)).astype(np.float32)
    for j, (f, t) in enumerate(zip(tab.feature.reshape(-1), tab.threshold.reshape(-1), strict=True)):
        for d, v in enumerate((t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf)))):
            edges[3 * j + d, f] = v
    return np.concatenate([x, new, edges]).astype(np.float32)


def leaf_sum64(tab: trees.Tables, x: np.ndarray) -> np.ndarray:
    """The layer's arithmetic with float64 leaf sums."""
    t, i, _ = tab.shape
    v = x[:, tab.feature.reshape(-1)].reshape(len(x), t, i)
    left = (v <= tab.threshold) | (np.isnan(v) & (tab.missing_left > 0))
    s = np.einsum("nti,til->ntl", np.where(left, 1.0, -1.0), tab.paths.astype(np.float64))
    return ((s == tab.depth) * tab.value.astype(np.float64)).sum(axis=(1, 2)) + tab.bias


@pytest.mark.parametrize("seed", [0, 1])
def test_every_row_reaches_the_librarys_leaf(seed: int) -> None:
    clf, x = fitted(seed)
    tab = trees.tables(clf)
    rows = probes(x, tab)
    with one_thread():
        want = clf.decision_function(rows.astype(np.float64))  # type: ignore[attr-defined]
    # Summed in float64, only the float32 rounding of each leaf value remains (~1e-8 each): one other leaf
    # anywhere would differ by about a leaf value (>1e-3).
    np.testing.assert_allclose(leaf_sum64(tab, rows), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(trees.logits(tab, rows), want, rtol=0, atol=2e-5)


def test_thresholds_round_down_to_float32() -> None:
    t = np.array([0.1, -0.1, 1.0, np.inf, 1e-40], np.float64)
    down = trees._down(t)
    assert down.dtype == np.float32 and (down.astype(np.float64) <= t).all()
    assert (np.nextafter(down[:3], np.float32(np.inf)).astype(np.float64) > t[:3]).all()


def test_the_keras_layer_computes_the_tables_logits_and_the_offset_shifts_them() -> None:
    clf, x = fitted(2)
    tab = trees.tables(clf, offset=-1.5)
    rows = probes(x, tab)
    got = np.asarray(trees.tree_layer(tab)(rows)).reshape(-1)
    np.testing.assert_allclose(got, trees.logits(tab, rows), rtol=0, atol=1e-5)
    with one_thread():
        want = clf.decision_function(rows.astype(np.float64)) - 1.5  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_what_cannot_be_expressed_is_refused() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 3)), rng.integers(0, 3, 300)
    with one_thread():
        three = HistGradientBoostingClassifier(max_iter=5).fit(x, y)
    with pytest.raises(trees.TreeExportError, match="binary"):
        trees.tables(three)
    with pytest.raises(trees.TreeExportError, match="not a fitted"):
        trees.tables(HistGradientBoostingClassifier())
