"""Train / validation / test split in time order, without the seed's leaks.

Rows are ordered by Time, so the model is always evaluated on transactions
that come after the ones it learned from. Normal transactions go 60/20/20
into train/validation/test; frauds go 50/50 into validation/test (earlier
half to validation) and never into training: the autoencoder learns what
normal looks like, and labels are used only to calibrate and evaluate.
Without labels every row is treated as normal (60/20/20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fraudscore import features
from trainer.config import DataError

if TYPE_CHECKING:
    import pandas as pd

TRAIN_SHARE = 0.6
VALIDATION_SHARE = 0.2
FRAUD_VALIDATION_SHARE = 0.5
MIN_TRAIN_ROWS = 100


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame  # normals only
    validation: pd.DataFrame
    test: pd.DataFrame

    def sizes(self, has_labels: bool) -> dict[str, dict[str, int]]:
        out = {}
        for name, part in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            frauds = int(part[features.LABEL].sum()) if has_labels else 0
            out[name] = {"rows": len(part), "frauds": frauds, "normals": len(part) - frauds}
        return out


def split(frame: pd.DataFrame, has_labels: bool) -> Splits:
    """Splits ``frame`` (any row order) as the module docstring says."""
    import pandas as pd

    ordered = frame.sort_values(features.TIME, kind="mergesort").reset_index(drop=True)
    if has_labels:
        is_fraud = ordered[features.LABEL].to_numpy() == 1
        normals, frauds = ordered.loc[~is_fraud], ordered.loc[is_fraud]
    else:
        normals, frauds = ordered, ordered.iloc[:0]
    n = len(normals)
    a, b = round(n * TRAIN_SHARE), round(n * (TRAIN_SHARE + VALIDATION_SHARE))
    f = round(len(frauds) * FRAUD_VALIDATION_SHARE)
    if a < MIN_TRAIN_ROWS or b - a < 1 or n - b < 1:
        raise DataError(f"too few normal transactions to train: {n} (need at least {MIN_TRAIN_ROWS / TRAIN_SHARE:.0f})")

    def joined(*parts: pd.DataFrame) -> pd.DataFrame:
        return pd.concat(parts).sort_values(features.TIME, kind="mergesort").reset_index(drop=True)

    return Splits(
        train=normals.iloc[:a].reset_index(drop=True),
        validation=joined(normals.iloc[a:b], frauds.iloc[:f]),
        test=joined(normals.iloc[b:], frauds.iloc[f:]),
    )


def labels(part: pd.DataFrame, has_labels: bool) -> np.ndarray | None:
    return part[features.LABEL].to_numpy().astype(np.int8) if has_labels else None
