"""The supervised second stage: a tiny classifier on analysts' labels, exported beside the autoencoder.

Input: ONE float32 tensor [n, 2F] = concat(raw features in card order, the autoencoder's per-feature
errors); output [n, 1], the probability that the row is a fraud. Everything the classifier needs is a
layer inside the Keras model, made of plain TF ops TFLite converts (sign, abs, log1p, max, sub, div,
matmul, sigmoid), so the serving signature and the LiteRT fast path carry it unchanged:

1. ``Prepare``: raw features -> sign(x) * log1p(|x|) (Amount is heavy-tailed and so are the V columns'
   extremes); feature errors -> log(max(e, 0) + floor), floor = 1e-3 x the feature's median training error
   (errors span 1e-6..1e4, and their scale depends on the autoencoder's error weighting: log1p would leave
   errors of 1e-4 unchanged, and after normalization float32's log(1 + e) in TFLite would differ from
   TensorFlow's log1p by a large share of such a column's spread); ``inputs="errors"`` drops the raw half.
2. ``Normalization`` with the (weighted) mean and variance of the prepared training rows, fixed at fit time.
3. ``hidden=0``: logistic regression; ``hidden=h``: one elu layer of h units. L2 on every kernel.

Class imbalance (tens of frauds against thousands of legit rows): each row carries its sample weight
(the inverse of its selection probability: 1 for an analyst-labelled alert, 1/rate for a row of the
durable sample of unflagged traffic); the fraud rows' weights are then multiplied by c = (total legit
weight) / (total fraud weight), so both classes pull equally during the fit. The output bias is lowered
by log(c) afterwards (the prior correction for case-weighted logistic models), so ``fraud_probability``
estimates P(fraud | row) in the weighted population, not in a balanced one; the ranking is unchanged by
the correction.

Training is full-batch Adam for a fixed number of epochs (no validation split: there are too few frauds
to spare any), deterministic for a seed (Keras seeds + TF op determinism, as the autoencoder).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trainer.config import TrainError

MIN_FRAUDS = 5  # below this the classifier memorises a handful of rows; refuse rather than ship it
DEFAULT_HIDDEN = 0  # logistic regression (chosen by python -m bench.feedback, see bench/results/feedback.json)
HIDDEN_ACTIVATION = "elu"
Inputs = Literal["raw+errors", "errors"]
DEFAULT_INPUTS: Inputs = "raw+errors"
L2 = 1e-3
EPOCHS = 300
LEARNING_RATE = 0.03
OUTPUT_LAYER = "fraud_probability"
ERROR_FLOOR = 1e-3  # of the feature's median training error: smaller errors all look alike
MIN_ERROR_FLOOR = 1e-12


class SecondStageError(TrainError):
    """The labels cannot train a second stage (no frauds, too few, no legit rows, bad arrays)."""


@dataclass
class SecondStage:
    model: Any  # keras.Model: [n, 2F] float32 -> [n, 1] probability
    info: dict[str, Any]


@functools.cache
def prepare_class() -> Any:
    """The ``Prepare`` layer class (built on first use: importing this module must not import Keras)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="fraudscore")
    class Prepare(keras.layers.Layer):
        """[n, 2F] raw+errors -> signed log1p(raw) ++ log(errors + floor) (or the errors' half only)."""

        def __init__(self, n_features: int, inputs: str, floors: list[float], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.n_features = n_features
            self.inputs = inputs
            self.floors = [float(f) for f in floors]

        def call(self, x: Any) -> Any:
            raw, err = x[:, : self.n_features], x[:, self.n_features :]
            err = ops.log(ops.maximum(err, 0.0) + ops.convert_to_tensor(np.asarray(self.floors, np.float32)))
            if self.inputs == "errors":
                return err
            return ops.concatenate([ops.sign(raw) * ops.log1p(ops.abs(raw)), err], axis=1)

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            return {**config, "n_features": self.n_features, "inputs": self.inputs, "floors": self.floors}

    return Prepare


def _check(raw: np.ndarray, feature_errors: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """The [n, 2F] float32 input, or SecondStageError naming the array and the reason."""
    raw, feature_errors = np.asarray(raw), np.asarray(feature_errors)
    if raw.ndim != 2 or feature_errors.ndim != 2 or raw.shape != feature_errors.shape:
        raise SecondStageError(
            f"shape mismatch: raw {raw.shape} and feature_errors {feature_errors.shape} must both be [rows, features]"
        )
    if labels is not None and labels.shape != (raw.shape[0],):
        raise SecondStageError(f"shape mismatch: labels {labels.shape}, expected ({raw.shape[0]},)")
    for name, a in (("raw", raw), ("feature_errors", feature_errors)):
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():
            raise SecondStageError(
                f"non-finite values in {name}: {int(bad.sum())} rows (first row {int(bad.argmax())})"
            )
    return np.concatenate([raw, feature_errors], axis=1).astype(np.float32)


def _weights(labels: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    n = labels.shape[0]
    if sample_weight is None:
        return np.ones(n, np.float64)
    w = np.asarray(sample_weight, np.float64)
    if w.shape != (n,):
        raise SecondStageError(f"shape mismatch: sample_weight {w.shape}, expected ({n},)")
    if not np.isfinite(w).all() or (w <= 0).any():
        raise SecondStageError("sample_weight: every weight must be finite and > 0")
    return w


def _check_labels(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise SecondStageError(f"shape mismatch: labels must be one-dimensional, got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise SecondStageError("labels: every label must be 0 (legit) or 1 (fraud)")
    y = y.astype(np.int8)
    frauds, legit = int(y.sum()), int((y == 0).sum())
    if frauds == 0:
        raise SecondStageError("no frauds among the labels: a second stage needs confirmed frauds to learn from")
    if frauds < MIN_FRAUDS:
        raise SecondStageError(f"too few frauds: {frauds} labelled, at least {MIN_FRAUDS} needed")
    if legit == 0:
        raise SecondStageError("no legit rows among the labels: a second stage needs legit rows to learn from")
    return y


def build(
    n_features: int, floors: list[float], mean: np.ndarray, variance: np.ndarray, hidden: int, inputs: Inputs
) -> Any:
    """The untrained Keras model (prepare -> fixed normalization -> [hidden elu] -> sigmoid)."""
    import keras

    x_in = keras.Input((2 * n_features,), dtype="float32", name="raw_and_feature_errors")
    x = prepare_class()(n_features, inputs, floors, name="prepare")(x_in)
    x = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(x)
    reg = keras.regularizers.L2(L2)
    if hidden:
        x = keras.layers.Dense(hidden, activation=HIDDEN_ACTIVATION, kernel_regularizer=reg, name="hidden")(x)
    out = keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=reg, name=OUTPUT_LAYER)(x)
    return keras.Model(x_in, out, name="second_stage")


def fit(
    raw: np.ndarray,
    feature_errors: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
    hidden: int = DEFAULT_HIDDEN,
    inputs: Inputs = DEFAULT_INPUTS,
) -> SecondStage:
    """Fits the second stage on labelled rows (1 fraud, 0 legit); see the module docstring."""
    import keras
    import tensorflow as tf

    from trainer.autoencoder import set_determinism
    from trainer.evaluate import ranking

    y = _check_labels(labels)
    x = _check(raw, feature_errors, y)
    w = _weights(y, sample_weight)
    n_features = x.shape[1] // 2
    fraud_w, legit_w = float(w[y == 1].sum()), float(w[y == 0].sum())
    balance = legit_w / fraud_w
    fit_w = np.where(y == 1, w * balance, w)
    fit_w = (fit_w / fit_w.mean()).astype(np.float32)

    set_determinism(seed)
    floors = [max(ERROR_FLOOR * float(m), MIN_ERROR_FLOOR) for m in np.median(x[:, n_features:], axis=0)]
    prepared = np.asarray(prepare_class()(n_features, inputs, floors)(x), np.float64)
    mean = np.average(prepared, axis=0, weights=w)
    variance = np.average((prepared - mean) ** 2, axis=0, weights=w)
    model = build(n_features, floors, mean, variance, hidden, inputs)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="binary_crossentropy")
    # EPOCHS full-batch steps as one Keras epoch: Keras' per-epoch overhead would be most of the time.
    steps = tf.data.Dataset.from_tensors((x, y.astype(np.float32), fit_w)).repeat(EPOCHS)
    model.fit(steps, epochs=1, verbose=0, shuffle=False)
    out = model.get_layer(OUTPUT_LAYER)
    kernel, bias = out.get_weights()
    out.set_weights([kernel, bias - np.float32(math.log(balance))])

    stage = SecondStage(model=model, info={})
    p = predict(stage, x[:, :n_features], x[:, n_features:])
    stage.info = {
        "design": {
            "classifier": f"one hidden layer of {hidden} {HIDDEN_ACTIVATION} units"
            if hidden
            else "logistic regression",
            "hidden": hidden,
            "inputs": inputs,
            "transform": "raw: sign(x)*log1p(|x|); feature errors: log(max(e, 0) + floor), floor 1e-3 x the "
            "median training error; then weighted z-score",
            "l2": L2,
            "epochs": EPOCHS,
            "optimizer": f"full-batch Adam, learning rate {LEARNING_RATE}",
            "seed": seed,
        },
        "rows": len(y),
        "frauds": int(y.sum()),
        "legit": int((y == 0).sum()),
        "sample_weighting": {
            "given": sample_weight is not None,
            "weighted_frauds": fraud_w,
            "weighted_legit": legit_w,
            "fraud_weight_multiplier": balance,
            "how": "rows weighted by the inverse of their selection probability; frauds up-weighted so both "
            "classes weigh the same in the fit; output bias lowered by log(multiplier) afterwards (prior "
            "correction), so the probability refers to the weighted population",
        },
        "fit_metrics_in_sample_unweighted": {
            **ranking(p, y),
        },
    }
    return stage


def predict(stage: SecondStage, raw: np.ndarray, feature_errors: np.ndarray) -> np.ndarray:
    """fraud_probability, float32 [n]."""
    x = _check(raw, feature_errors)
    if len(x) == 0:
        return np.zeros(0, np.float32)
    return np.asarray(stage.model(x, training=False), np.float32).reshape(-1)


def load_model(path: str | Path) -> Any:
    """A second stage's Keras model saved with ``model.save(path)`` (``.keras``): its ``Prepare`` layer is
    registered first, which plain ``keras.models.load_model`` in a fresh process would not find."""
    import keras

    prepare_class()
    return keras.models.load_model(path)
