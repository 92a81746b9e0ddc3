"""The Keras dense autoencoder and its training loop.

Shape in the seed's style (F-24-16-8-16-24-F by default; the seed's own
F-20-10-7-10-20-F scored lower on validation, see ``trainer.config``); tanh
hidden layers; inputs are min-max scaled to [0, 1], so the output layer is a
sigmoid. The loss is the mean squared error, and a
row's reconstruction error is exactly that: the mean over features of the
squared error (``feature_errors`` keeps the per-feature terms). Training
stops early on the validation normals' reconstruction loss and keeps the best
weights; a seed makes a run repeatable (Keras seeds + TF op determinism).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MIN_DELTA = 1e-7


def set_determinism(seed: int) -> None:
    """Same seed, same data -> same weights (op determinism is process-wide in TF)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def scalar_logger(log_dir: Path) -> Any:
    """A callback writing per-epoch losses as TensorBoard scalars (``train/`` and ``validation/`` runs).

    Keras' own TensorBoard callback needs the ``tensorboard`` package for ``tf.summary.scalar``; it is not a
    dependency here, so this writes the same event records with TF core's ``tf.summary.write`` and the scalar
    plugin's metadata. ``tensorboard --logdir <dir>`` (installed separately) shows them.
    """
    import keras
    import tensorflow as tf
    from tensorflow.core.framework.summary_pb2 import SummaryMetadata

    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))

    class ScalarLogger(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.writers = {
                "train": tf.summary.create_file_writer(str(log_dir / "train")),
                "validation": tf.summary.create_file_writer(str(log_dir / "validation")),
            }

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            for key, value in (logs or {}).items():
                run, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                with self.writers[run].as_default():
                    tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch, metadata=metadata)

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            for writer in self.writers.values():
                writer.close()

    return ScalarLogger()


def build(n_features: int, hidden: Sequence[int], activation: str, learning_rate: float) -> Any:
    import keras

    inputs = keras.Input(shape=(n_features,), name="scaled")
    h = inputs
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation=activation, name=f"dense_{i}_{units}")(h)
    outputs = keras.layers.Dense(n_features, activation="sigmoid", name="reconstruction")(h)
    model = keras.Model(inputs, outputs, name="autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


def fit(
    model: Any,
    x_train: np.ndarray,
    x_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    log_dir: Path | None,
    verbose: bool,
) -> dict[str, Any]:
    """Trains in place; returns the history and the epoch whose weights were kept."""
    import keras

    callbacks: list[Any] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, min_delta=MIN_DELTA, restore_best_weights=True
        )
    ]
    if log_dir is not None:
        callbacks.append(scalar_logger(log_dir))
    history = model.fit(
        x_train,
        x_train,
        validation_data=(x_val, x_val),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=1 if verbose else 0,
    )
    losses = [float(v) for v in history.history["loss"]]
    val_losses = [float(v) for v in history.history["val_loss"]]
    best = int(np.argmin(val_losses))
    return {
        "epochs_run": len(losses),
        "best_epoch": best + 1,
        "best_val_loss": val_losses[best],
        "loss": losses,
        "val_loss": val_losses,
    }


def errors(model: Any, x: np.ndarray, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(reconstruction error [n], squared error per feature [n, F]) of scaled rows ``x``."""
    if len(x) == 0:
        return np.zeros(0, np.float32), np.zeros((0, x.shape[1]), np.float32)
    reconstructed = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
    squared = np.square(reconstructed - x)
    return squared.mean(axis=1), squared
