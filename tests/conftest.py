"""Shared fixtures: generated data and one quickly trained model for the whole session.

Stable names other test modules rely on (all session-scoped, built on first use):

- ``train_csv``           Path of a generated CSV (20,000 rows, 1 % frauds, seed 0) in the Kaggle schema
                          plus card_id / merchant_id
- ``train_result``        the :class:`trainer.TrainResult` of a quick train on ``train_csv`` (a few epochs,
                          seconds); ``.autoencoder`` is the in-memory Keras model, ``.transform_dir`` the kept
                          tf.Transform output
- ``trained_model_base``  Path of the model base (``.../models/creditcard``) holding version 1 of that train
- ``trained_model``       ``fraudscore.model.LoadedModel`` of that version

Treat the model base as read-only: copy it (``shutil.copytree``) to add versions or break things.
The trainer's own reference errors for "scores agree" tests: ``trainer.evaluate.offline_errors(frame,
version_dir)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fraudscore.dev.generate import generate_frame, write_csv
from trainer.config import TrainConfig, TrainResult

if TYPE_CHECKING:
    from fraudscore.model import LoadedModel

TRAIN_ROWS = 20_000
TRAIN_FRAUD_RATE = 0.01
QUICK_EPOCHS = 8


def quick_config(data: Path, model_base: Path, **overrides: object) -> TrainConfig:
    """A training config that runs in seconds: few epochs, big batches, no progress output."""
    settings: dict[str, object] = {
        "data": data,
        "model_base": model_base,
        "epochs": QUICK_EPOCHS,
        "batch_size": 512,
        "patience": 3,
        "seed": 7,
        "verbose": False,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def train_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.csv"
    write_csv(generate_frame(TRAIN_ROWS, fraud_rate=TRAIN_FRAUD_RATE, seed=0), path)
    return path


@pytest.fixture(scope="session")
def train_result(train_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    from trainer import train

    root = tmp_path_factory.mktemp("trained")
    config = quick_config(train_csv, root / "models" / "creditcard", work_dir=str(root / "work"), keep_work_dir=True)
    return train(config)


@pytest.fixture(scope="session")
def trained_model_base(train_result: TrainResult) -> Path:
    return train_result.version_dir.parent


@pytest.fixture(scope="session")
def trained_model(trained_model_base: Path) -> LoadedModel:
    from fraudscore.model import load

    return load(trained_model_base, 1)
