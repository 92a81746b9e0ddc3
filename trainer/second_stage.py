"""The supervised second stage: a classifier on analysts' labels, chosen by time-ordered CV, exported beside the
autoencoder.

Input: ONE float32 tensor [n, 2F+1] = concat(raw features in card order, the autoencoder's per-feature errors,
its reconstruction error); output [n, 1], the probability that the row is a fraud. Whatever family is chosen,
the model is a Keras model of plain TF ops TFLite converts, so the serving signature and the LiteRT fast path
carry it unchanged.

Families (:data:`FAMILIES`, simplest first):

- ``error``: logistic regression on log(reconstruction error) alone: the autoencoder's ranking, calibrated to
  a probability (what the labels are worth when they cannot beat the unsupervised score).
- ``logistic`` and ``hidden8``: logistic regression, or one elu layer of 8 units, on every input after
  ``Prepare``: raw -> sign(x) * log1p(|x|); errors -> log(max(e, 0) + floor), floor = 1e-3 x the column's
  median training error; then a weighted z-score (``Normalization`` fixed at fit time). L2 on every kernel.
  The logistic layer is solved exactly (L-BFGS, scikit-learn); the hidden layer by full-batch Adam for a fixed
  number of epochs, deterministic for a seed.
- ``gbdt-raw`` and ``gbdt``: scikit-learn's ``HistGradientBoostingClassifier`` on the raw features alone, or on
  every input (trees need no transform), expressed in builtin TF ops by :mod:`trainer.trees` (exactly the
  fitted ensemble: same splits, same leaves). Unlike the others they are not continuous in the errors: a row
  whose error lies within float rounding of a split threshold can reach another leaf in LiteRT than in
  TensorFlow, whose errors differ by ~1e-6 relative (measured: 2 rows in 4,000).

Selection (:func:`select`): time-ordered cross-validation on the labelled rows only. Per class, the rows in time
order are cut into ``CV_FOLDS + 1`` equal chunks; fold k fits on chunks 0..k-1 of both classes and scores
chunk k (every fold validates on later rows than it fits on, and on frauds it has not seen). A family's score
is its mean (sample-weighted) average precision over the folds, to 3 decimals; equal scores (a fold of a few
frauds all ranked first is common: 1.000) are told apart by the folds' mean class-balanced log-loss, then by
simplicity. The chosen family is then refitted on all the rows given. Nothing but the labelled rows (and their
time order) enters the choice.

Class imbalance (tens of frauds against thousands of legit rows): each row carries its sample weight (the
inverse of its selection probability: 1 for an analyst-labelled alert, 1/rate for a row of the durable sample
of unflagged traffic). For the Keras families the fraud rows' weights are then multiplied by c = (total legit
weight) / (total fraud weight), so both classes pull equally during the fit, and the output's log-odds are
lowered by log(c) afterwards (the prior correction for case-weighted models); the trees fit the rows' own
weights. Either way ``fraud_probability`` estimates P(fraud | row) in the weighted population.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trainer.config import TrainError

MIN_FRAUDS = 5  # below this the classifier memorises a handful of rows; refuse rather than ship it
HIDDEN_ACTIVATION = "elu"
L2 = 1e-3
EPOCHS = 300
LEARNING_RATE = 0.03
OUTPUT_LAYER = "fraud_probability"
ERROR_FLOOR = 1e-3  # of the column's median training error: smaller errors all look alike
MIN_ERROR_FLOOR = 1e-12
CV_FOLDS = 3
CV_MIN_FIT_FRAUDS = 2  # a fold whose fit part holds fewer frauds is skipped
# Mean fold average precision is compared at this many decimals; equal ones (often 1.000: a few frauds in a
# fold, all ranked first) are told apart by the folds' balanced log-loss, then by simplicity.
AP_DECIMALS = 3


class SecondStageError(TrainError):
    """The labels cannot train a second stage (no frauds, too few, no legit rows, bad arrays, no signal)."""


class ErrorScores(Protocol):
    """What the second stage reads of the autoencoder's outputs (``fraudscore.artifact.Scores`` has both)."""

    @property
    def feature_errors(self) -> np.ndarray: ...

    @property
    def reconstruction_error(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Errors:
    """The autoencoder's outputs as plain arrays (an :class:`ErrorScores`)."""

    feature_errors: np.ndarray
    reconstruction_error: np.ndarray


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "keras" or "trees"
    inputs: str  # "error" (the reconstruction error), "raw" or "all"
    hidden: int = 0
    trees: dict[str, Any] = field(default_factory=dict)  # HistGradientBoostingClassifier parameters

    def describe(self) -> str:
        """What the classifier is (GetModelInfo's line adds :meth:`on`)."""
        if self.kind == "trees":
            return "gradient-boosted trees (scikit-learn HistGradientBoostingClassifier)"
        return f"one hidden layer of {self.hidden} {HIDDEN_ACTIVATION} units" if self.hidden else "logistic regression"

    def on(self) -> str:
        """What it reads."""
        return {
            "error": "log(reconstruction error) alone",
            "raw": "raw features",
            "all": "raw features + feature errors + reconstruction error",
        }[self.inputs]


# Small trees for tens of frauds: scikit-learn's defaults (31 leaves of >= 20 rows, 100 trees at 0.1) cannot
# isolate 10 frauds and ranked the shipped sample's test split at PR-AUC 0.01-0.13 with 10-20 labelled frauds
# (bench/results/label-curve.json, "gbdt" column); 4 leaves of >= 10 rows, 200 trees at 0.05, L2 1.
GBDT = {
    "early_stopping": False,
    "max_leaf_nodes": 4,
    "min_samples_leaf": 10,
    "max_iter": 200,
    "learning_rate": 0.05,
    "l2_regularization": 1.0,
}
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("error", "keras", "error"),
        Family("logistic", "keras", "all"),
        Family("hidden8", "keras", "all", hidden=8),
        Family("gbdt-raw", "trees", "raw", trees=GBDT),
        Family("gbdt", "trees", "all", trees=GBDT),
    )
}


@dataclass(frozen=True)
class Library:
    """The library's own fitted model behind a tree family, to check the TF ops against (not exported)."""

    classifier: Any  # HistGradientBoostingClassifier, fitted on the input columns ``columns``
    columns: np.ndarray
    offset: float  # added to its log-odds (the prior correction)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """float64 [n]: the library's probability for [n, 2F+1] inputs, with the prior correction."""
        with one_thread():
            logit = self.classifier.decision_function(np.asarray(x, np.float64)[:, self.columns]) + self.offset
        return np.asarray(1.0 / (1.0 + np.exp(-logit)), np.float64)


@dataclass
class SecondStage:
    model: Any  # keras.Model: [n, 2F+1] float32 -> [n, 1] probability
    info: dict[str, Any]
    library: Library | None = None  # the tree family's fitted library model (None for Keras families)


@functools.cache
def prepare_class() -> Any:
    """The ``Prepare`` layer class (built on first use: importing this module must not import Keras)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="fraudscore")
    class Prepare(keras.layers.Layer):
        """raw ++ errors (++ total error) -> signed log1p(raw) ++ log(errors + floor), or a part of it.

        ``with_total`` False is the [n, 2F] input of stages written before the reconstruction error was an input.
        """

        def __init__(
            self, n_features: int, inputs: str, floors: list[float], with_total: bool = False, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.n_features = n_features
            self.inputs = inputs
            self.floors = [float(f) for f in floors]
            self.with_total = bool(with_total)

        def call(self, x: Any) -> Any:
            raw, err = x[:, : self.n_features], x[:, self.n_features :]
            err = ops.log(ops.maximum(err, 0.0) + ops.convert_to_tensor(np.asarray(self.floors, np.float32)))
            if self.inputs == "error":
                return err[:, -1:]
            if self.inputs == "errors":
                return err
            return ops.concatenate([ops.sign(raw) * ops.log1p(ops.abs(raw)), err], axis=1)

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            return {
                **config,
                "n_features": self.n_features,
                "inputs": self.inputs,
                "floors": self.floors,
                "with_total": self.with_total,
            }

    return Prepare


def stage_input(raw: np.ndarray, scores: ErrorScores) -> np.ndarray:
    """The [n, 2F+1] float32 input, or SecondStageError naming the array and the reason."""
    raw = np.asarray(raw)
    feature_errors = np.asarray(scores.feature_errors)
    total = np.asarray(scores.reconstruction_error)
    if raw.ndim != 2 or feature_errors.ndim != 2 or raw.shape != feature_errors.shape:
        raise SecondStageError(
            f"shape mismatch: raw {raw.shape} and feature_errors {feature_errors.shape} must both be [rows, features]"
        )
    if total.shape != (raw.shape[0],):
        raise SecondStageError(f"shape mismatch: reconstruction_error {total.shape}, expected ({raw.shape[0]},)")
    for name, a in (("raw", raw), ("feature_errors", feature_errors), ("reconstruction_error", total[:, None])):
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():
            raise SecondStageError(
                f"non-finite values in {name}: {int(bad.sum())} rows (first row {int(bad.argmax())})"
            )
    return np.concatenate([raw, feature_errors, total[:, None]], axis=1).astype(np.float32)


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


def _balance(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """(fit weights with both classes weighing the same, mean 1; the fraud multiplier c)."""
    balance = float(w[y == 0].sum()) / float(w[y == 1].sum())
    fit_w = np.where(y == 1, w * balance, w)
    return (fit_w / fit_w.mean()).astype(np.float32), balance


def build(n_features: int, floors: list[float], mean: np.ndarray, variance: np.ndarray, family: Family) -> Any:
    """The untrained Keras model of a Keras family (prepare -> fixed normalization -> [hidden elu] -> sigmoid)."""
    import keras

    x_in = keras.Input((2 * n_features + 1,), dtype="float32", name="raw_errors_and_error")
    x = prepare_class()(n_features, _prepared(family), floors, with_total=True, name="prepare")(x_in)
    x = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(x)
    reg = keras.regularizers.L2(L2)
    if family.hidden:
        x = keras.layers.Dense(family.hidden, activation=HIDDEN_ACTIVATION, kernel_regularizer=reg, name="hidden")(x)
    out = keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=reg, name=OUTPUT_LAYER)(x)
    return keras.Model(x_in, out, name="second_stage")


def _prepared(family: Family) -> str:
    return "error" if family.inputs == "error" else "raw+errors"


def _fit_keras(x: np.ndarray, y: np.ndarray, w: np.ndarray, family: Family, seed: int) -> Any:
    import keras
    import tensorflow as tf

    from trainer.autoencoder import set_determinism

    n_features = (x.shape[1] - 1) // 2
    fit_w, balance = _balance(y, w)
    set_determinism(seed)
    floors = [max(ERROR_FLOOR * float(m), MIN_ERROR_FLOOR) for m in np.median(x[:, n_features:], axis=0)]
    prepared = np.asarray(prepare_class()(n_features, _prepared(family), floors, with_total=True)(x), np.float64)
    mean = np.average(prepared, axis=0, weights=w)
    variance = np.average((prepared - mean) ** 2, axis=0, weights=w)
    model = build(n_features, floors, mean, variance, family)
    out = model.get_layer(OUTPUT_LAYER)
    if family.hidden:
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="binary_crossentropy")
        # EPOCHS full-batch steps as one Keras epoch: Keras' per-epoch overhead would be most of the time.
        steps = tf.data.Dataset.from_tensors((x, y.astype(np.float32), fit_w)).repeat(EPOCHS)
        model.fit(steps, epochs=1, verbose=0, shuffle=False)
        kernel, bias = out.get_weights()
    else:
        kernel, bias = _logistic(model, x, y, fit_w)
    out.set_weights([kernel, bias - np.float32(math.log(balance))])
    return model


def _logistic(model: Any, x: np.ndarray, y: np.ndarray, fit_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The logistic output layer's (kernel, bias) at the optimum of the Keras loss (mean weighted log-loss +
    ``L2`` x |kernel|^2), solved by scikit-learn's L-BFGS: its C x sum(w log-loss) + |kernel|^2 / 2 has the same
    minimum at C = 1 / (2 L2 n), weights of mean 1. Tens of milliseconds instead of Adam's 300 Keras steps,
    which the selection's folds would repeat."""
    import keras
    from sklearn.linear_model import LogisticRegression

    z = np.asarray(keras.Model(model.input, model.get_layer("normalize").output)(x), np.float64)
    clf = LogisticRegression(C=1.0 / (2 * L2 * len(y)), max_iter=1000, tol=1e-8)
    with one_thread():
        clf.fit(z, y, sample_weight=fit_w.astype(np.float64))
    return clf.coef_.T.astype(np.float32), clf.intercept_.astype(np.float32)


def _columns(family: Family, width: int) -> np.ndarray:
    n_features = (width - 1) // 2
    return np.arange(n_features) if family.inputs == "raw" else np.arange(width)


def _fit_trees(x: np.ndarray, y: np.ndarray, w: np.ndarray, family: Family, seed: int) -> tuple[Any, Library]:
    import keras
    from sklearn.ensemble import HistGradientBoostingClassifier

    from trainer import trees

    cols = _columns(family, x.shape[1])
    clf = HistGradientBoostingClassifier(random_state=seed, **family.trees)
    # The rows' own weights, frauds not up-weighted: the log-loss of a tree ensemble needs no balancing to rank,
    # the probability is the weighted population's without a prior correction, and equal weights are passed as
    # none (scikit-learn's weighted binning takes ~0.5 s per column).
    weights = None if np.all(w == w[0]) else w
    with one_thread():
        clf.fit(x[:, cols].astype(np.float64), y, sample_weight=weights)
    try:
        tab = trees.tables(clf)
    except trees.TreeExportError as exc:
        raise SecondStageError(f"the fitted trees cannot be exported: {exc}") from exc
    tab = trees.Tables(
        cols[tab.feature].astype(np.int32), tab.threshold, tab.missing_left, tab.paths, tab.depth, tab.value, tab.bias
    )
    x_in = keras.Input((x.shape[1],), dtype="float32", name="raw_errors_and_error")
    logit = trees.tree_layer(tab, name="trees")(x_in)
    out = keras.layers.Activation("sigmoid", name=OUTPUT_LAYER)(logit)
    model = keras.Model(x_in, out, name="second_stage")
    return model, Library(clf, cols, 0.0)


def one_thread() -> Any:
    """scikit-learn's OpenMP on one thread: its threads spin-wait, and on a shared 2-core machine two of them
    beside TensorFlow's made a 1 s fit take 40 s (measured)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


def _fit_family(x: np.ndarray, y: np.ndarray, w: np.ndarray, family: Family, seed: int) -> tuple[Any, Library | None]:
    if family.kind == "trees":
        return _fit_trees(x, y, w, family, seed)
    return _fit_keras(x, y, w, family, seed), None


def _probabilities(model: Any, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0, np.float32)
    return np.asarray(model(x, training=False), np.float32).reshape(-1)


def time_folds(y: np.ndarray, order: np.ndarray, folds: int = CV_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, validation rows) per fold: per class in time order, ``folds + 1`` chunks; fold k fits on the
    chunks before k and validates on chunk k. Folds fitting on fewer than ``CV_MIN_FIT_FRAUDS`` frauds or
    validating on none are left out."""
    chunks: list[list[np.ndarray]] = []
    for cls in (1, 0):
        idx = np.flatnonzero(y == cls)
        idx = idx[np.argsort(order[idx], kind="stable")]
        chunks.append(np.array_split(idx, folds + 1))
    out = []
    for k in range(1, folds + 1):
        fit = np.sort(np.concatenate([c for part in chunks for c in part[:k]]))
        val = np.sort(np.concatenate([part[k] for part in chunks]))
        if int(y[fit].sum()) >= CV_MIN_FIT_FRAUDS and y[val].any() and (y[fit] == 0).any():
            out.append((fit, val))
    return out


def select(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    order: np.ndarray,
    *,
    seed: int = 0,
    families: Sequence[str] = tuple(FAMILIES),
) -> tuple[str, dict[str, Any]]:
    """The family with the best mean time-ordered CV average precision (see the module docstring), and the
    report of the choice. Reads nothing but these labelled rows."""
    from sklearn.metrics import average_precision_score

    folds = time_folds(y, order)
    report: dict[str, Any] = {
        "by": f"time-ordered cross-validation on the labelled rows: per class, {CV_FOLDS + 1} chunks in time "
        "order; fold k fits on the chunks before k, scores chunk k; mean sample-weighted average precision "
        f"over the folds ({AP_DECIMALS} decimals), then mean class-balanced log-loss, then the simpler family",
        "folds": [
            {"fit_rows": len(f), "fit_frauds": int(y[f].sum()), "rows": len(v), "frauds": int(y[v].sum())}
            for f, v in folds
        ],
        "families": {},
    }
    if not folds:
        chosen = families[0]
        report.update(chosen=chosen, reason="no usable fold (too few frauds to cut in time order)")
        return chosen, report
    keys: dict[str, tuple[float, float]] = {}
    for name in families:
        family = FAMILIES[name]
        start = time.perf_counter()
        aps, losses = [], []
        for fit_rows, val_rows in folds:
            model, _ = _fit_family(x[fit_rows], y[fit_rows], w[fit_rows], family, seed)
            p = _probabilities(model, x[val_rows])
            aps.append(float(average_precision_score(y[val_rows], p, sample_weight=w[val_rows])))
            losses.append(_balanced_log_loss(y[val_rows], p, w[val_rows]))
        keys[name] = (round(float(np.mean(aps)), AP_DECIMALS), -float(np.mean(losses)))
        report["families"][name] = {
            "design": f"{family.describe()} on {family.on()}",
            "fold_average_precision": aps,
            "mean_average_precision": float(np.mean(aps)),
            "fold_balanced_log_loss": losses,
            "mean_balanced_log_loss": float(np.mean(losses)),
            "seconds": time.perf_counter() - start,
        }
    chosen = max(families, key=lambda k: keys[k])  # max keeps the first (simplest) of equal keys
    report["chosen"] = chosen
    return chosen, report


def _balanced_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Mean log-loss of the frauds and of the legit rows (each class's weighted mean), so that both count."""
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    fraud = float(np.average(-np.log(q[y == 1]), weights=w[y == 1]))
    legit = float(np.average(-np.log(1 - q[y == 0]), weights=w[y == 0]))
    return (fraud + legit) / 2


def fit(
    raw: np.ndarray,
    scores: ErrorScores,
    labels: np.ndarray,
    *,
    order: np.ndarray | None = None,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
    family: str | None = None,
    families: Sequence[str] = tuple(FAMILIES),
) -> SecondStage:
    """Fits the second stage on labelled rows (1 fraud, 0 legit); see the module docstring.

    ``order``: each row's time key (default: row order) for the selection's time-ordered folds. ``family``:
    fit that family without selecting (None: :func:`select` among ``families``).
    """
    from trainer.evaluate import ranking

    y = _check_labels(labels)
    x = stage_input(raw, scores)
    if y.shape != (len(x),):
        raise SecondStageError(f"shape mismatch: labels {y.shape}, expected ({len(x)},)")
    w = _weights(y, sample_weight)
    order = np.arange(len(y), dtype=np.float64) if order is None else np.asarray(order, np.float64)
    if order.shape != y.shape:
        raise SecondStageError(f"shape mismatch: order {order.shape}, expected {y.shape}")
    unknown = [f for f in (family, *families) if f is not None and f not in FAMILIES]
    if unknown:
        raise SecondStageError(f"unknown second-stage family {unknown[0]!r}; one of {', '.join(FAMILIES)}")
    if family is None:
        family, selection = select(x, y, w, order, seed=seed, families=families)
    else:
        selection = {"chosen": family, "by": "given"}
    chosen = FAMILIES[family]
    model, library = _fit_family(x, y, w, chosen, seed)
    p = _probabilities(model, x)
    if np.ptp(p) == 0:
        raise SecondStageError(
            f"the fitted second stage ({family}) gives every labelled row the same probability {float(p[0]):.3g}: "
            "the inputs do not separate frauds from legit rows (all-equal scores?)"
        )
    _, balance = _balance(y, w)
    stage = SecondStage(model=model, info={}, library=library)
    stage.info = {
        "design": {
            "family": family,
            "classifier": chosen.describe(),
            "input_summary": chosen.on(),
            **(
                {"trees": {**chosen.trees, "library": _sklearn_version()}}
                if chosen.kind == "trees"
                else {
                    "transform": "raw: sign(x)*log1p(|x|); errors: log(max(e, 0) + floor), floor 1e-3 x the median "
                    "training error; then weighted z-score",
                    "l2": L2,
                    "epochs": EPOCHS,
                    "optimizer": f"full-batch Adam, learning rate {LEARNING_RATE}",
                }
            ),
            "seed": seed,
        },
        "selection": selection,
        "rows": len(y),
        "frauds": int(y.sum()),
        "legit": int((y == 0).sum()),
        "sample_weighting": {
            "given": sample_weight is not None,
            "weighted_frauds": float(w[y == 1].sum()),
            "weighted_legit": float(w[y == 0].sum()),
            "fraud_weight_multiplier": 1.0 if chosen.kind == "trees" else balance,
            "how": "rows weighted by the inverse of their selection probability; trees fit those weights; "
            "the Keras families up-weight frauds so both classes weigh the same in the fit and lower the "
            "log-odds by log(multiplier) afterwards (prior correction): the probability refers to the "
            "weighted population",
        },
        "fit_metrics_in_sample_unweighted": {**ranking(p, y)},
    }
    return stage


def _sklearn_version() -> str:
    import sklearn

    return f"scikit-learn {sklearn.__version__}"


def predict(stage: SecondStage, raw: np.ndarray, scores: ErrorScores) -> np.ndarray:
    """fraud_probability, float32 [n]."""
    return _probabilities(stage.model, stage_input(raw, scores))


def load_model(path: str | Path) -> Any:
    """A second stage's Keras model saved with ``model.save(path)`` (``.keras``): its custom layers are
    registered first, which plain ``keras.models.load_model`` in a fresh process would not find."""
    import keras

    from trainer.trees import tree_layer_class

    prepare_class()
    tree_layer_class()
    return keras.models.load_model(path)
