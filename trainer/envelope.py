"""The training normals' envelope: how far a transaction lies outside everything the model was trained on.

A reconstruction score alone has blind spots: clipped to the training range,
a value 10 ranges beyond the maximum looks like one at the maximum, and a
residual on a few minor axes cannot see a transaction that is large along the
major ones (normal rows x20 were flagged 14% of the time). So the SavedModel
also measures, per row, the **envelope distance**: for each feature, how far
its value lies outside the training normals' [min, max], in units of that
feature's p1–p99 width on the same rows (a robust spread: the min-max range of
heavy-tailed features is set by a handful of outliers), summed over features.
Inside the range it is 0, so it never changes how the rows the model knows are
ranked; beyond it, it grows linearly in any direction. The sum, not the
largest excess: a normal row drifting past the range does so in one feature,
a transaction unlike anything seen (e.g. every V scaled x5) in several at once
(on the shipped sample, at the same flag rate on validation normals, x5 rows
flagged 93% by the sum, 77% by the largest).

``is_anomaly`` is then ``score > threshold OR envelope_distance > limit``. The
limit is chosen on the validation normals like the threshold: the distance
that at most ``budget`` percent of them exceed (default 0.1 %, at least
``MIN_LIMIT`` widths; a budget of 0 puts it at their largest distance, so the
rule flags none of them), or given in widths (``--envelope-widths``).

The budget is a trade-off, not a free choice: a normal transaction can lie far
outside the training range in many features at once (the shipped sample's
validation normals hold one 16.5 widths out in 10 features), so a rule that
flags no validation normal also misses most normals x5 (bench.quality's
envelope budget table: x5 91% flagged at 0.1%, 2% at 0).

Everything is in the transform's space (after the signed log of Amount,
before clipping and scaling: ``trainer.preprocessing.UNSCALED``), fitted on the
training normals only, and saved inside the SavedModel as constants.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

DEFAULT_LIMIT_WIDTHS = 1.0
DEFAULT_BUDGET_PERCENT = 0.1  # of validation normals the envelope rule may flag, when the limit is chosen
MIN_LIMIT = 0.5  # widths: below this the rule would flag ordinary drift of one feature past its training range
LOW_PCT, HIGH_PCT = 1.0, 99.0


@dataclass(frozen=True)
class Envelope:
    lo: np.ndarray  # [F] the training normals' minimum (transform space)
    hi: np.ndarray  # [F] maximum
    width: np.ndarray  # [F] p99 - p1, floored so a constant feature does not divide by zero
    limit: float  # widths beyond the range that flag a row

    @classmethod
    def fit(cls, unscaled_train: np.ndarray, limit: float = DEFAULT_LIMIT_WIDTHS) -> Envelope:
        x = np.asarray(unscaled_train, np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"envelope: expected training rows [n, F], got shape {list(x.shape)}")
        if not limit > 0:
            raise ValueError(f"envelope: the limit must be a positive number of widths, got {limit}")
        lo, hi = x.min(axis=0), x.max(axis=0)
        width = np.percentile(x, HIGH_PCT, axis=0) - np.percentile(x, LOW_PCT, axis=0)
        # A feature whose p1-p99 is empty (nearly constant) falls back to its full range, then to 1.
        width = np.where(width > 0, width, hi - lo)
        width = np.where(width > 0, width, 1.0)
        return cls(lo.astype(np.float32), hi.astype(np.float32), width.astype(np.float32), float(limit))

    def distance(self, unscaled: np.ndarray) -> np.ndarray:
        """Per row, the excess over features summed, in widths (numpy, float32 like the SavedModel)."""
        x = np.asarray(unscaled, np.float32)
        excess = np.maximum(np.maximum(x - self.hi, self.lo - x), np.float32(0)) / self.width
        return excess.sum(axis=1, dtype=np.float32)

    def with_limit_for(self, validation_normals: np.ndarray, budget_percent: float) -> Envelope:
        """This envelope with the limit at most ``budget_percent`` of ``validation_normals`` exceed."""
        return replace(self, limit=limit_for(self.distance(validation_normals), budget_percent))

    def flags(self, unscaled: np.ndarray) -> np.ndarray:
        return self.distance(unscaled) > np.float32(self.limit)

    def to_card(self, validation_unscaled: np.ndarray | None = None, how: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {
            "limit_widths": self.limit,
            "limit_how": how,
            "distance": "sum over features of the excess outside the training normals' [min, max], in widths",
            "width": f"p{LOW_PCT:g}-p{HIGH_PCT:g} of the training normals, in the transform's space",
            "rule": "is_anomaly also when envelope_distance > limit_widths",
        }
        if validation_unscaled is not None and len(validation_unscaled):
            out["validation_flag_rate"] = float(np.mean(self.flags(validation_unscaled)))
        return out


def limit_for(distances: np.ndarray, budget_percent: float) -> float:
    """The envelope distance at most ``budget_percent`` of the validation normals' ``distances`` exceed (0: none
    of them, their largest), at least MIN_LIMIT."""
    if not 0 <= budget_percent < 100:
        raise ValueError(f"envelope: the budget is a percentage in [0, 100), got {budget_percent}")
    if len(distances) == 0:
        raise ValueError("envelope: no validation normals to choose the limit on")
    limit = float(np.quantile(np.asarray(distances, np.float64), 1 - budget_percent / 100, method="higher"))
    return max(limit, MIN_LIMIT)


def distance_tf(unscaled: Any, lo: Any, hi: Any, width: Any) -> Any:
    """:meth:`Envelope.distance` in TensorFlow ops LiteRT converts (max, sub, div, reduce_sum)."""
    import tensorflow as tf

    excess = tf.maximum(tf.maximum(unscaled - hi, lo - unscaled), 0.0) / width
    return tf.reduce_sum(excess, axis=1)
