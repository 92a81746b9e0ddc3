"""The Keras dense autoencoder and its training loop.

Shape, activation and scaling come from the config (the defaults are the
model search's winner on real rows, see ``trainer.config`` and
``trainer.search``). The output layer is a sigmoid when the input is
bounded to [0, 1] (clipped min-max), linear otherwise. The loss is the mean
squared error; a row's reconstruction error is the mean over features of the
squared error, each divided by that feature's mean squared error on the
training normals when the error is ``standardized`` (``feature_errors``
keeps the per-feature terms). Training stops early on the validation
normals' reconstruction loss and keeps the best weights; a seed makes a run
repeatable (Keras seeds + TF op determinism).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MIN_DELTA = 1e-7
RESIDUAL = "residual"  # name of the output layer of a model that outputs x - reconstruction
# Smallest divisor of a feature's squared error, relative to the largest feature's (standardized errors).
WEIGHT_FLOOR = 1e-6


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


def outputs_residual(model: Any) -> bool:
    """Whether ``model`` outputs the residual (PCA-coded) rather than the reconstruction (dense)."""
    return bool(model.layers[-1].name == RESIDUAL)


def residual(model: Any, x: Any, training: bool = False) -> Any:
    """``x - reconstruction`` as a tensor, for either kind of model (used by the export's serving function)."""
    out = model(x, training=training)
    return out if outputs_residual(model) else x - out


def pca_basis(x_train: np.ndarray, components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [F], principal axes [k, F]) of the scaled training normals, to start a linear path from."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(components, x_train.shape[1] - 1), random_state=seed).fit(x_train)
    return pca.mean_.astype(np.float32), pca.components_.astype(np.float32)


def build(
    n_features: int,
    hidden: Sequence[int],
    activation: str,
    learning_rate: float,
    output_activation: str = "sigmoid",
    pca: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """A dense autoencoder (outputs the reconstruction); with ``pca`` (mean, axes), a PCA-coded one.

    The PCA-coded autoencoder's encoder is fixed to the training normals' ``k`` principal axes; its decoder
    is PCA's linear reconstruction plus a nonlinear correction from the code (``hidden`` layers, started at
    zero, the only trained part), which fits what PCA misses. Plain SGD does not find the minor principal
    directions on real card rows (their variance is tiny next to the rest), and those directions are where
    frauds stand out. It outputs the *residual* ``x - reconstruction``, computed as the projection of the
    centred input on the minor axes minus the correction: reconstructing ``x`` (about 0.5) and subtracting
    would leave residuals of 1e-4 with float32 rounding in their third digit, so two runtimes (TensorFlow,
    LiteRT) would disagree on the score.
    """
    import keras

    inputs = keras.Input(shape=(n_features,), name="scaled")
    if pca is None:
        h = inputs
        for i, units in enumerate(hidden):
            h = keras.layers.Dense(units, activation=activation, name=f"dense_{i}_{units}")(h)
        outputs = keras.layers.Dense(n_features, activation=output_activation, name="reconstruction")(h)
    else:
        mean, axes = pca
        axes64 = axes.astype(np.float64)
        centre = keras.layers.Dense(n_features, trainable=False, name="centre")
        encoder = keras.layers.Dense(len(axes), use_bias=False, trainable=False, name=f"pca_encoder_{len(axes)}")
        minor = keras.layers.Dense(n_features, use_bias=False, trainable=False, name="minor_axes_projection")
        centred = centre(inputs)
        code = encoder(centred)
        linear_residual = minor(centred)
        h = code
        for i, units in enumerate(hidden):
            h = keras.layers.Dense(units, activation=activation, name=f"correction_{i}_{units}")(h)
        correction = keras.layers.Dense(
            n_features, kernel_initializer="zeros", bias_initializer="zeros", name="correction"
        )(h)
        outputs = keras.layers.Subtract(name=RESIDUAL)([linear_residual, correction])
        centre.set_weights([np.eye(n_features, dtype=np.float32), -mean])
        encoder.set_weights([axes.T])
        minor.set_weights([(np.eye(n_features) - axes64.T @ axes64).astype(np.float32)])
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
    if verbose:
        callbacks.append(epoch_reporter(epochs))

    def target(x: np.ndarray) -> np.ndarray:  # the reconstruction should be x; a residual should be 0
        return np.zeros_like(x) if outputs_residual(model) else x

    history = model.fit(
        x_train,
        target(x_train),
        validation_data=(x_val, target(x_val)),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,  # Keras' step bars become hundreds of lines in a log file: epoch_reporter instead
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


def squared_errors(model: Any, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Squared error per feature ``[n, F]`` of scaled rows ``x``, unweighted."""
    if len(x) == 0:
        return np.zeros((0, x.shape[1]), np.float32)
    out = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
    return np.square(out if outputs_residual(model) else out - x)


def error_weights(model: Any, x_train: np.ndarray, weighting: str) -> np.ndarray | None:
    """Per-feature divisors of the squared error: the training normals' mean squared error, or None."""
    if weighting == "none":
        return None
    mean_squared = squared_errors(model, x_train).mean(axis=0).astype(np.float64)
    # A feature reconstructed perfectly (e.g. constant in training) must not divide by zero.
    floor = max(float(mean_squared.max()) * WEIGHT_FLOOR, float(np.finfo(np.float32).tiny))
    return np.maximum(mean_squared, floor).astype(np.float32)


def errors(
    model: Any, x: np.ndarray, weights: np.ndarray | None = None, batch_size: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """(reconstruction error [n], error term per feature [n, F]) of scaled rows ``x``."""
    terms = squared_errors(model, x, batch_size)
    if weights is not None:
        terms = terms / weights
    return terms.mean(axis=1) if len(terms) else np.zeros(0, np.float32), terms


def epoch_reporter(epochs: int) -> Any:
    """One line per epoch on a log file, one live bar on a terminal (tqdm), instead of Keras' step bars."""
    import keras
    from tqdm import tqdm

    class EpochReporter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.tty = sys.stderr.isatty()
            self.bar = tqdm(total=epochs, unit="epoch", desc="[train] fit", file=sys.stderr) if self.tty else None

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            loss, val = logs.get("loss", float("nan")), logs.get("val_loss", float("nan"))
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.4g}", val_loss=f"{val:.4g}", refresh=False)
                self.bar.update(1)
            else:
                print(
                    f"[train] epoch {epoch + 1}/{epochs} loss {loss:.5g} val_loss {val:.5g}",
                    file=sys.stderr,
                    flush=True,
                )

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            if self.bar is not None:
                self.bar.close()

    return EpochReporter()
