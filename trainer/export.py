"""Exporting one self-contained, versioned SavedModel, atomically.

The exported ``tf.Module`` holds the Keras autoencoder and the tf.Transform
layer (``transform_features_layer()``), so the transform graph and its
statistics are saved inside the model: deleting the tf.Transform output
directory afterwards breaks nothing. The serving signature takes one raw
float32 ``[None]`` tensor per feature and returns what ``fraudscore.model``
documents.

Atomicity: everything (SavedModel, model card, report, the Keras model and a
copy of the transform for offline evaluation under ``assets.extra/``) is
written into a hidden temp dir beside the target, checked by reloading it,
then renamed to ``<base>/<next integer version>``. A directory named by an
integer is therefore always complete; if another trainer takes the version
first, the rename fails and the next number is tried.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fraudscore.artifact import ENVELOPE_DISTANCE
from fraudscore.model import OUTPUTS, SIGNATURE, ModelCard
from trainer.autoencoder import residual
from trainer.config import TrainError
from trainer.envelope import Envelope, distance_tf
from trainer.preprocessing import OUT_OF_RANGE, SCALED, UNSCALED

log = logging.getLogger(__name__)

EXTRA_DIR = "assets.extra"  # TF Serving's place for files it does not load
KERAS_FILE = "autoencoder.keras"
TRANSFORM_COPY = "transform_fn"
# Relative, as in the scores-agree contract: standardized errors of frauds reach 1e4, where float32
# arithmetic in another order differs by far more than an absolute 1e-5.
CHECK_RTOL = 1e-5
CHECK_ATOL = 1e-7
MAX_RENAME_ATTEMPTS = 20


class ExportError(TrainError):
    """The exported model could not be written or does not score like the trained one."""


def build_module(
    autoencoder: Any,
    transform_dir: str,
    names: Sequence[str],
    threshold: float,
    weights: np.ndarray | None = None,
    envelope: Envelope | None = None,
) -> Any:
    """The servable: raw features -> tf.Transform layer -> autoencoder -> errors and flags.

    ``weights`` (standardized errors) divide each feature's squared error, as ``trainer.autoencoder.errors`` does.
    ``envelope`` adds ``envelope_distance`` and flags a row beyond its limit whatever its error
    (:mod:`trainer.envelope`).
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    names = tuple(names)

    class ServingModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="fraudscore")
            self.autoencoder = autoencoder
            self.transform_layer = tft.TFTransformOutput(transform_dir).transform_features_layer()
            self.threshold = tf.Variable(threshold, dtype=tf.float32, trainable=False, name="threshold")
            divisors = np.ones(len(names), np.float32) if weights is None else np.asarray(weights, np.float32)
            self.error_divisors = tf.Variable(divisors, trainable=False, name="error_divisors")
            if envelope is not None:
                self.envelope_lo = tf.constant(envelope.lo)
                self.envelope_hi = tf.constant(envelope.hi)
                self.envelope_width = tf.constant(envelope.width)
                self.envelope_limit = tf.Variable(envelope.limit, dtype=tf.float32, trainable=False, name="envelope")

        @tf.function(input_signature=[{n: tf.TensorSpec([None], tf.float32, name=n) for n in names}])
        def serve(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            transformed = self.transform_layer(raw)
            scaled = transformed[SCALED]
            terms = tf.square(residual(self.autoencoder, scaled)) / self.error_divisors
            error = tf.reduce_mean(terms, axis=1)
            out = {
                "reconstruction_error": error,
                "feature_errors": terms,
                "is_anomaly": error > self.threshold,
                "out_of_range_count": tf.cast(transformed[OUT_OF_RANGE], tf.int32),
            }
            if envelope is not None:
                distance = distance_tf(transformed[UNSCALED], self.envelope_lo, self.envelope_hi, self.envelope_width)
                out[ENVELOPE_DISTANCE] = distance
                out["is_anomaly"] = tf.logical_or(out["is_anomaly"], distance > self.envelope_limit)
            return out

    return ServingModule()


def _copy_tree(src: str, dst: Path) -> None:
    """Copies a directory that may live on any TF filesystem (local, gs://) to a local path."""
    import tensorflow as tf

    for root, _dirs, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(root, src)
        target = dst / rel if rel != "." else dst
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), str(target / name), overwrite=True)


def next_version(base: Path) -> int:
    """One more than the highest integer-named entry (complete or not), so no number is ever reused."""
    taken = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(taken, default=0) + 1


def _check(tmp: Path, names: Sequence[str], raw_rows: np.ndarray, expected_errors: np.ndarray) -> float:
    """Reloads the written SavedModel and compares its errors with the in-memory model's."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp))
    fn = loaded.signatures[SIGNATURE]
    out = fn(**{n: tf.constant(raw_rows[:, i], tf.float32) for i, n in enumerate(names)})
    missing = [k for k in OUTPUTS if k not in out]
    if missing:
        raise ExportError(f"exported signature lacks outputs {missing}")
    got = out["reconstruction_error"].numpy()
    relative = np.abs(got - expected_errors) / np.maximum(np.abs(expected_errors), CHECK_ATOL)
    if not np.allclose(got, expected_errors, rtol=CHECK_RTOL, atol=CHECK_ATOL):
        raise ExportError(
            f"exported model disagrees with the trained one: max relative error difference "
            f"{float(relative.max()):.3g} (tolerance {CHECK_RTOL:g})"
        )
    return float(relative.max(initial=0.0))


def export(
    *,
    base: Path,
    autoencoder: Any,
    transform_dir: str,
    names: Sequence[str],
    threshold: float,
    weights: np.ndarray | None,
    check_rows: np.ndarray,
    check_errors: np.ndarray,
    write_extras: Callable[[Path, int], ModelCard],
    envelope: Envelope | None = None,
) -> tuple[int, Path, dict[str, Any]]:
    """Writes a new version under ``base``; returns (version, its dir, the card written, as its JSON object).

    ``write_extras(tmp_dir, version)`` writes the report into the temp dir and returns the model card;
    it is called again if the version number has to change.
    """
    import tensorflow as tf

    with staging_dir(base) as tmp:
        module = build_module(autoencoder, transform_dir, names, threshold, weights, envelope)
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: module.serve.get_concrete_function()})
        extra = tmp / EXTRA_DIR
        extra.mkdir(exist_ok=True)
        autoencoder.save(extra / KERAS_FILE)
        _copy_tree(transform_dir, extra / TRANSFORM_COPY)
        diff = _check(tmp, names, check_rows, check_errors)
        log.info("export check: reloaded SavedModel agrees with the trained model (max relative diff %.2g)", diff)
        version, target, card = publish(tmp, base, write_extras)
        return version, target, card.to_dict()


@contextmanager
def staging_dir(base: Path) -> Iterator[Path]:
    """A hidden temp dir beside the versions (same filesystem, so the rename is atomic); removed unless published."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{uuid.uuid4().hex[:12]}"
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, base: Path, write_extras: Callable[[Path, int], ModelCard]) -> tuple[int, Path, ModelCard]:
    """Renames a complete temp dir to ``<base>/<next version>``; returns (version, its dir, the card written).

    ``write_extras(tmp, version)`` writes whatever names the version and returns the card, written here; it is
    called again if another writer takes the number first.
    """
    for _ in range(MAX_RENAME_ATTEMPTS):
        version = next_version(base)
        card = write_extras(tmp, version)
        card.write(tmp)
        target = base / str(version)
        try:
            os.rename(tmp, target)  # atomic on one filesystem; fails if target exists and is not empty
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                continue  # another writer took this number: try the next one
            raise
        return version, target, card
    raise ExportError(f"could not claim a version number under {base} in {MAX_RENAME_ATTEMPTS} attempts")
