"""The tf.Transform preprocessing: raw features in, the autoencoder's input out.

Every statistic is a full pass over the training normals (tf.Transform
analyzers on Beam). Heavy-tailed features (Amount by default) first go
through a signed ``log1p``. Then each feature is scaled one of two ways:

- ``minmax``: ``(x - min) / (max - min)``, the seed's scaling, in [0, 1] on training rows;
- ``zscore``: ``(x - mean) / sd``.

Which one is better changed from one real sample to the next, so it is a
choice of the model search (``trainer.search``), not a constant.

``clip`` decides what happens to a value outside the training range at
serving time: clipped to the range before scaling (the seed's behaviour), or
passed through. On real rows clipping flattens exactly the extreme values
frauds have (the same network lost 0.76 -> 0.60 validation PR-AUC with it on
the shipped sample), so the search decides. Either way the value is counted:
``out_of_range_count`` is the training/serving skew signal the dashboard plots,
and ``unscaled`` (the value before clipping, in the scaled space's units) is
what ``trainer.envelope`` measures the distance outside the training range on.
A feature that was constant in training (zero range, zero sd) is scaled to 0
instead of dividing by zero; any other value of it counts as out of range.

The statistics are also outputs (``stat_*``, broadcast per row) so they can
be read back from the transform graph itself and written into the model
card; the export does not serve them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fraudscore import features

SCALED = "scaled"  # float32 [None, F]: the autoencoder's input
UNSCALED = "unscaled"  # float32 [None, F]: after the log, before clipping and scaling (the envelope's space)
OUT_OF_RANGE = "out_of_range_count"  # int64 [None]
STAT_MIN = "stat_min"  # float32 [None, F]: the analyzer's minimum, in the (log-)space that is scaled
STAT_MAX = "stat_max"
STAT_CENTER = "stat_center"  # what is subtracted before dividing: min (minmax) or mean (zscore)
STAT_SCALE = "stat_scale"  # what is divided by: max - min (minmax) or the standard deviation (zscore)
DEFAULT_LOG_FEATURES: tuple[str, ...] = (features.AMOUNT,)
SCALINGS = ("minmax", "zscore")

Tensors = dict[str, Any]


def raw_feature_spec(names: Sequence[str]) -> dict[str, Any]:
    import tensorflow as tf

    return {name: tf.io.FixedLenFeature([], tf.float32) for name in names}


def signed_log1p(x: Any) -> Any:
    """``sign(x) * log1p(|x|)``: log1p for amounts, still monotonic (and out of range) for a negative value."""
    import tensorflow as tf

    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def make_preprocessing_fn(
    names: Sequence[str] = features.MODEL_FEATURES,
    log_features: Sequence[str] = DEFAULT_LOG_FEATURES,
    scaling: str = "minmax",
    clip: bool = True,
) -> Callable[[Tensors], Tensors]:
    """A ``preprocessing_fn`` for the given feature order, log-scaled features, scaling and clipping."""
    names = tuple(names)
    logged = frozenset(log_features)
    unknown = logged - set(names)
    if unknown:
        raise ValueError(f"log features not among the model features: {sorted(unknown)}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling {scaling!r}: expected one of {', '.join(SCALINGS)}")

    def preprocessing_fn(inputs: Tensors) -> Tensors:
        import tensorflow as tf
        import tensorflow_transform as tft

        x = tf.stack([signed_log1p(inputs[n]) if n in logged else inputs[n] for n in names], axis=1)
        lo = tft.min(x, reduce_instance_dims=False)
        hi = tft.max(x, reduce_instance_dims=False)
        if scaling == "minmax":
            center, scale = lo, hi - lo
        else:
            center = tft.mean(x, reduce_instance_dims=False)
            scale = tf.sqrt(tft.var(x, reduce_instance_dims=False))
        outside = tf.logical_or(x < lo, x > hi)
        unscaled = x
        if clip:
            x = tf.clip_by_value(x, lo, hi)
        has_range = scale > 0
        safe_scale = tf.where(has_range, scale, tf.ones_like(scale))
        scaled = tf.where(has_range, (x - center) / safe_scale, tf.zeros_like(x))
        return {
            SCALED: scaled,
            UNSCALED: unscaled,
            OUT_OF_RANGE: tf.reduce_sum(tf.cast(outside, tf.int64), axis=1),
            STAT_MIN: tf.zeros_like(x) + lo,
            STAT_MAX: tf.zeros_like(x) + hi,
            STAT_CENTER: tf.zeros_like(x) + center,
            STAT_SCALE: tf.zeros_like(x) + scale,
        }

    return preprocessing_fn


# The default preprocessing: the model features in order, Amount log-scaled, the seed's clipped min-max.
preprocessing_fn = make_preprocessing_fn()
