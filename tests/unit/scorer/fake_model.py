"""A tiny SavedModel that honours the model contract of fraudscore/model.py.

Unit tests of the scorer use it so they do not depend on a trained model: a
min-max scaling plus a fixed low-rank linear "autoencoder", exported with the
same signature (raw ``[None]`` float inputs named by the card's features) and
the same outputs as the trainer's artifact. Integration tests use the real one.
``second_stage=True`` adds the optional ``fraud_probability`` output (a fixed logistic function of the raw
features and the errors) and its card entry; ``threshold_score`` says which score ``is_anomaly`` thresholds.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fraudscore import features
from fraudscore.model import SIGNATURE, ModelCard

RANK = 4


def build_fake_model(
    base: Path,
    version: int = 1,
    *,
    names: Sequence[str] = features.MODEL_FEATURES,
    threshold: float = 0.05,
    seed: int = 0,
    second_stage: bool = False,
    threshold_score: str = "reconstruction_error",
) -> Path:
    """Writes ``base/<version>/`` (SavedModel + model card) and returns that directory."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    n = len(names)
    low = np.full(n, -5.0, np.float32)
    high = np.full(n, 5.0, np.float32)
    if features.AMOUNT in names:
        i = list(names).index(features.AMOUNT)
        low[i], high[i] = 0.0, 500.0
    basis, _ = np.linalg.qr(rng.normal(size=(n, RANK)))
    projection = (basis @ basis.T).astype(np.float32)
    stage_weights = rng.normal(size=2 * n).astype(np.float32)

    class Fake(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.low = tf.constant(low)
            self.span = tf.constant(high - low)
            self.projection = tf.constant(projection)
            self.stage_weights = tf.constant(stage_weights)

        @tf.function(input_signature=[{name: tf.TensorSpec([None], tf.float32, name=name) for name in names}])
        def serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            x = tf.stack([inputs[name] for name in names], axis=1)
            scaled = (x - self.low) / self.span
            out_of_range = tf.reduce_sum(tf.cast((scaled < 0.0) | (scaled > 1.0), tf.int32), axis=1)
            clipped = tf.clip_by_value(scaled, 0.0, 1.0)
            errors = tf.square(clipped - tf.matmul(clipped, self.projection))
            error = tf.reduce_mean(errors, axis=1)
            out = {"reconstruction_error": error, "feature_errors": errors, "out_of_range_count": out_of_range}
            if second_stage:
                logits = tf.reduce_sum(tf.concat([clipped, errors * 50.0], axis=1) * self.stage_weights, axis=1)
                out["fraud_probability"] = tf.sigmoid(logits)
            out["is_anomaly"] = out[threshold_score] > threshold
            return out

    module = Fake()
    target = base / str(version)
    tmp = base / f".tmp-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: module.serve})
    ModelCard(
        name=base.name,
        version=version,
        features=tuple(names),
        threshold=threshold,
        threshold_policy="fake: fixed for tests",
        metrics={"roc_auc": 0.5, "pr_auc": 0.1},
        threshold_score=threshold_score,
        second_stage={"kind": "fake logistic", "rows": 100, "frauds": 10} if second_stage else None,
    ).write(tmp)
    tmp.rename(target)
    return target
