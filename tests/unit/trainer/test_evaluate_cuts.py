"""The oracle cut behind the report's seed table and bench.quality's "caught at k FP" columns."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality import caught_at_fp
from trainer.evaluate import cut_under_fp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cut_allows_exactly_max_fp_false_positives(dtype: type) -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], dtype=dtype)
    labels = np.array([1, 0, 1, 0, 1, 0])
    for max_fp, caught in [(0, 1), (1, 2), (2, 3)]:
        cut = cut_under_fp(scores, labels, max_fp)
        flagged = scores > cut
        assert int(np.sum(flagged & (labels == 0))) == max_fp
        assert caught_at_fp(scores, labels, max_fp) == caught


def test_cut_keeps_float64_precision() -> None:
    # Two scores equal in float32 but not in float64: a float32 cut would merge the fraud into the normal.
    normal, fraud = 1.0, 1.0 + 1e-12
    scores = np.array([fraud, normal, 0.5])
    labels = np.array([1, 0, 0])
    assert caught_at_fp(scores, labels, 0) == 1


def test_cut_below_every_score_when_normals_are_few() -> None:
    scores = np.array([-3.0, -2.0, -1.0])  # negative scores (Isolation Forest's) as well
    labels = np.array([1, 0, 1])
    assert caught_at_fp(scores, labels, 5) == 2
    assert np.all(scores > cut_under_fp(scores, labels, 5))
