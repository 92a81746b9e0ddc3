"""The tf.Transform preprocessing: raw features in, the autoencoder's input out.

Each feature is min-max scaled with full-pass statistics (``tft.min`` /
``tft.max`` over the training normals), as in the seed. Heavy-tailed
features (Amount by default) first go through a signed ``log1p``: the choice
and its validation PR-AUC both ways are in the trainer's report.

At serving time a value outside the training range is clipped to [0, 1] and
counted: ``out_of_range_count`` is the training/serving skew signal the
dashboard plots. A feature that was constant in training (zero range) is
scaled to 0 instead of dividing by zero; any other value of it counts as out
of range.

The per-feature statistics are also outputs (``stat_min``/``stat_max``,
broadcast per row) so they can be read back from the transform graph itself
and written into the model card; the export does not serve them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fraudscore import features

SCALED = "scaled"  # float32 [None, F], in [0, 1]
OUT_OF_RANGE = "out_of_range_count"  # int64 [None]
STAT_MIN = "stat_min"  # float32 [None, F]: the analyzer's minimum, in the (log-)space that is scaled
STAT_MAX = "stat_max"
DEFAULT_LOG_FEATURES: tuple[str, ...] = (features.AMOUNT,)

Tensors = dict[str, Any]


def raw_feature_spec(names: Sequence[str]) -> dict[str, Any]:
    import tensorflow as tf

    return {name: tf.io.FixedLenFeature([], tf.float32) for name in names}


def signed_log1p(x: Any) -> Any:
    """``sign(x) * log1p(|x|)``: log1p for amounts, still monotonic (and out of range) for a negative value."""
    import tensorflow as tf

    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def make_preprocessing_fn(
    names: Sequence[str] = features.MODEL_FEATURES, log_features: Sequence[str] = DEFAULT_LOG_FEATURES
) -> Callable[[Tensors], Tensors]:
    """A ``preprocessing_fn`` for the given feature order and log-scaled features."""
    names = tuple(names)
    logged = frozenset(log_features)
    unknown = logged - set(names)
    if unknown:
        raise ValueError(f"log features not among the model features: {sorted(unknown)}")

    def preprocessing_fn(inputs: Tensors) -> Tensors:
        import tensorflow as tf
        import tensorflow_transform as tft

        x = tf.stack([signed_log1p(inputs[n]) if n in logged else inputs[n] for n in names], axis=1)
        lo = tft.min(x, reduce_instance_dims=False)
        hi = tft.max(x, reduce_instance_dims=False)
        span = hi - lo
        has_range = span > 0
        scaled = tf.where(has_range, (x - lo) / tf.where(has_range, span, tf.ones_like(span)), tf.zeros_like(x))
        outside = tf.logical_or(x < lo, x > hi)
        return {
            SCALED: tf.clip_by_value(scaled, 0.0, 1.0),
            OUT_OF_RANGE: tf.reduce_sum(tf.cast(outside, tf.int64), axis=1),
            STAT_MIN: tf.zeros_like(x) + lo,
            STAT_MAX: tf.zeros_like(x) + hi,
        }

    return preprocessing_fn


# The default preprocessing: the model features in order, Amount log-scaled.
preprocessing_fn = make_preprocessing_fn()
