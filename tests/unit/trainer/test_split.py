"""Time-ordered split: normals 60/20/20, frauds 50/50 into validation/test, none in training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudscore import features
from trainer.config import DataError
from trainer.split import split


def frame(normals: int, frauds: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = normals + frauds
    return pd.DataFrame(
        {
            features.TIME: rng.permutation(n).astype(float),  # shuffled: the split must sort
            "V1": rng.normal(size=n),
            features.LABEL: np.r_[np.zeros(normals, int), np.ones(frauds, int)],
        }
    ).sample(frac=1.0, random_state=1)


def test_shares_order_and_no_fraud_in_training() -> None:
    parts = split(frame(1000, 40), has_labels=True)
    assert parts.sizes(True) == {
        "train": {"rows": 600, "frauds": 0, "normals": 600},
        "validation": {"rows": 220, "frauds": 20, "normals": 200},
        "test": {"rows": 220, "frauds": 20, "normals": 200},
    }
    t = features.TIME
    # Normals: train before validation before test.
    val_normals = parts.validation.loc[parts.validation[features.LABEL] == 0, t]
    test_normals = parts.test.loc[parts.test[features.LABEL] == 0, t]
    assert parts.train[t].max() < val_normals.min() and val_normals.max() < test_normals.min()
    # Frauds: the earlier half validates, the later half tests.
    assert parts.validation.loc[parts.validation[features.LABEL] == 1, t].max() < (
        parts.test.loc[parts.test[features.LABEL] == 1, t].min()
    )
    for part in (parts.train, parts.validation, parts.test):
        assert part[t].is_monotonic_increasing


def test_label_free_split_uses_every_row() -> None:
    df = frame(500, 0).drop(columns=[features.LABEL])
    parts = split(df, has_labels=False)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (300, 100, 100)


def test_too_few_rows() -> None:
    with pytest.raises(DataError, match="too few normal transactions"):
        split(frame(50, 5), has_labels=True)
