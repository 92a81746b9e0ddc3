"""A fitted gradient-boosted tree ensemble as builtin TensorFlow ops, so it lives inside the SavedModel and LiteRT.

scikit-learn's ``HistGradientBoostingClassifier`` fits the trees; :func:`tables` reads its fitted predictors
into fixed arrays and :func:`tree_layer_class` evaluates them with gather, compare, batched matmul and sum (all
TFLite builtins; no custom op, nothing to import at load time, unlike ``ydf``'s TF export):

1. Every split of every tree at once: ``go_left[n, T, I] = x[:, feature] <= threshold`` (a NaN goes where the
   split sends missing values), as ``c = +1`` (left) or ``-1`` (right).
2. Per tree a leaf-path matrix ``P[T, I, L]``: ``+1`` if leaf ``l`` lies under node ``i``'s left child, ``-1``
   under its right child, else 0. ``s = c @ P`` counts, per leaf, the conditions on its path that hold minus
   those that do not, so the row reaches leaf ``l`` iff ``s == depth(l)`` (exact: small integers in float32).
3. ``logit = bias + sum over trees of the reached leaf's value``; the layer returns the logit.

Exactness: scikit-learn compares ``float64(x) <= num_threshold`` (float64). The inputs here are float32, and for
a float32 ``x``, ``x <= t64`` iff ``x <= t32`` where ``t32`` is the largest float32 not above ``t64``; so
:func:`tables` rounds every threshold down to float32 and the comparisons are exactly scikit-learn's. Leaf
values are summed in float32 (scikit-learn: float64): logits agree to ~1e-6.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np


class TreeExportError(ValueError):
    """A fitted ensemble this module cannot express (categorical splits, multi-class, unknown internals)."""


@dataclass(frozen=True)
class Tables:
    """The ensemble as arrays: T trees, I internal nodes and L leaves per tree (padded)."""

    feature: np.ndarray  # int32 [T, I]
    threshold: np.ndarray  # float32 [T, I], rounded down to float32
    missing_left: np.ndarray  # float32 [T, I]: 1 where a NaN goes left
    paths: np.ndarray  # float32 [T, I, L]: +1 / -1 / 0
    depth: np.ndarray  # float32 [T, L]: path length of each leaf (-1 for padding: never reached)
    value: np.ndarray  # float32 [T, L]
    bias: float  # the baseline (log-odds of the prior) plus any offset

    @property
    def shape(self) -> tuple[int, int, int]:
        t, i, leaves = self.paths.shape
        return t, i, leaves


def _down(t: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 threshold (inf stays inf)."""
    t32 = t.astype(np.float32)
    above = t32.astype(np.float64) > t
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def tables(classifier: Any, offset: float = 0.0) -> Tables:
    """The arrays of a fitted binary ``HistGradientBoostingClassifier``; ``offset`` is added to the bias."""
    predictors = getattr(classifier, "_predictors", None)
    baseline = getattr(classifier, "_baseline_prediction", None)
    if predictors is None or baseline is None:
        raise TreeExportError("not a fitted HistGradientBoostingClassifier (no _predictors/_baseline_prediction)")
    if any(len(p) != 1 for p in predictors) or np.asarray(baseline).size != 1:
        raise TreeExportError("only binary classifiers (one tree per iteration) are supported")
    trees = [p[0].nodes for p in predictors]
    for nodes in trees:
        missing = {"feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf", "value"}
        if not missing <= set(nodes.dtype.names or ()):
            raise TreeExportError(f"unknown predictor layout {nodes.dtype.names}")
        if "is_categorical" in nodes.dtype.names and nodes["is_categorical"].any():
            raise TreeExportError("categorical splits are not supported")
    n_trees = max(len(trees), 1)
    n_inner = max([int((nodes["is_leaf"] == 0).sum()) for nodes in trees] + [1])
    n_leaves = max([int(nodes["is_leaf"].sum()) for nodes in trees] + [1])
    feature = np.zeros((n_trees, n_inner), np.int32)
    threshold = np.zeros((n_trees, n_inner), np.float32)
    missing_left = np.zeros((n_trees, n_inner), np.float32)
    paths = np.zeros((n_trees, n_inner, n_leaves), np.float32)
    depth = np.full((n_trees, n_leaves), -1.0, np.float32)
    value = np.zeros((n_trees, n_leaves), np.float32)
    for t, nodes in enumerate(trees):
        inner: dict[int, int] = {}
        leaf_count = 0
        # (node, path so far as [(inner slot, +1 left / -1 right)]) depth-first from the root
        stack: list[tuple[int, list[tuple[int, float]]]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            rec = nodes[node]
            if rec["is_leaf"]:
                for slot, sign in path:
                    paths[t, slot, leaf_count] = sign
                depth[t, leaf_count] = len(path)
                value[t, leaf_count] = rec["value"]
                leaf_count += 1
                continue
            slot = inner.setdefault(node, len(inner))
            feature[t, slot] = rec["feature_idx"]
            threshold[t, slot] = _down(np.asarray([rec["num_threshold"]], np.float64))[0]
            missing_left[t, slot] = float(rec["missing_go_to_left"])
            stack.append((int(rec["right"]), [*path, (slot, -1.0)]))
            stack.append((int(rec["left"]), [*path, (slot, 1.0)]))
    bias = float(np.asarray(baseline, np.float64).reshape(-1)[0]) + float(offset)
    return Tables(feature, threshold, missing_left, paths, depth, value, bias)


def logits(tab: Tables, x: np.ndarray) -> np.ndarray:
    """The ensemble's logit in numpy, the same arithmetic as the layer (for tests and offline use)."""
    x = np.asarray(x, np.float32)
    t, i, _ = tab.shape
    v = x[:, tab.feature.reshape(-1)].reshape(len(x), t, i)
    left = (v <= tab.threshold) | (np.isnan(v) & (tab.missing_left > 0))
    c = np.where(left, np.float32(1), np.float32(-1))
    s = np.einsum("nti,til->ntl", c, tab.paths)
    reached = (s == tab.depth).astype(np.float32)
    return (reached * tab.value).sum(axis=(1, 2), dtype=np.float32) + np.float32(tab.bias)


@functools.cache
def tree_layer_class() -> Any:
    """The ``TreeEnsemble`` Keras layer class (built on first use: importing this module must not import Keras)."""
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="fraudscore")
    class TreeEnsemble(keras.layers.Layer):
        """[n, D] float32 -> [n, 1] logit of the tree ensemble; its tables are non-trainable weights."""

        def __init__(self, trees: int, inner: int, leaves: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.trees, self.inner, self.leaves = int(trees), int(inner), int(leaves)
            shape_i, shape_l = (self.trees, self.inner), (self.trees, self.leaves)

            def weight(name: str, shape: tuple[int, ...], dtype: str = "float32") -> Any:
                return self.add_weight(name=name, shape=shape, dtype=dtype, initializer="zeros", trainable=False)

            self.feature = weight("feature", (self.trees * self.inner,), "int32")
            self.threshold = weight("threshold", shape_i)
            self.missing_left = weight("missing_left", shape_i)
            self.paths = weight("paths", (self.trees, self.inner, self.leaves))
            self.depth = weight("depth", shape_l)
            self.value = weight("value", shape_l)
            self.bias = weight("bias", ())

        def set_tables(self, tab: Tables) -> None:
            self.feature.assign(tab.feature.reshape(-1))
            self.threshold.assign(tab.threshold)
            self.missing_left.assign(tab.missing_left)
            self.paths.assign(tab.paths)
            self.depth.assign(tab.depth)
            self.value.assign(tab.value)
            self.bias.assign(np.float32(tab.bias))

        def call(self, x: Any) -> Any:
            x = tf.convert_to_tensor(x, tf.float32)
            v = tf.reshape(tf.gather(x, self.feature, axis=1), [-1, self.trees, self.inner])
            nan = tf.not_equal(v, v)  # is_nan without an op LiteRT lacks
            left = tf.logical_or(tf.less_equal(v, self.threshold), tf.logical_and(nan, self.missing_left > 0.5))
            c = tf.cast(left, tf.float32) * 2.0 - 1.0
            s = tf.matmul(tf.transpose(c, [1, 0, 2]), self.paths)  # [T, n, L]
            reached = tf.cast(tf.equal(s, self.depth[:, None, :]), tf.float32)
            total = tf.reduce_sum(reached * self.value[:, None, :], axis=[0, 2])
            return (total + self.bias)[:, None]

        def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
            return (input_shape[0], 1)

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            return {**config, "trees": self.trees, "inner": self.inner, "leaves": self.leaves}

    return TreeEnsemble


def tree_layer(tab: Tables, name: str = "trees") -> Any:
    """A built ``TreeEnsemble`` layer holding ``tab``."""
    t, i, leaves = tab.shape
    layer = tree_layer_class()(t, i, leaves, name=name)
    layer.set_tables(tab)
    return layer
