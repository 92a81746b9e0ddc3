"""Training: tf.Transform statistics + Keras autoencoder -> one versioned SavedModel with a card and a report.

Public API (importing it stays light; TensorFlow loads when a run starts)::

    from trainer import TrainConfig, train
    result = train(TrainConfig(data=Path("creditcard.csv"), model_base=Path("models/creditcard")))
    result.version_dir, result.card, result.report
"""

from __future__ import annotations

from trainer.config import (
    DataError,
    PolicyError,
    QualityGateError,
    ThresholdPolicy,
    TrainConfig,
    TrainError,
    TrainResult,
)

__all__ = [
    "DataError",
    "PolicyError",
    "QualityGateError",
    "ThresholdPolicy",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "train",
]


def train(config: TrainConfig) -> TrainResult:
    """Runs one training (see :mod:`trainer.pipeline`)."""
    from trainer.pipeline import run

    return run(config)
