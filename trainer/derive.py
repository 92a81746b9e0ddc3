"""Deriving a new model version from an existing one: a new threshold, and optionally a second stage.

A derived version has the source version's weights and tf.Transform graph unchanged: its SavedModel is a
small ``tf.Module`` that keeps the *loaded* source module (its variables and the transform's assets come
along when it is saved again) and a new ``serve`` that calls the source's. So ``reconstruction_error``,
``feature_errors`` and ``out_of_range_count`` are the source's, computed by the same graph. What changes:

- ``is_anomaly`` = the thresholded score > the threshold variable, recomputed in the new signature. There
  is one threshold variable (the source's own ``threshold``, assigned the new value), and the card's
  ``threshold.value`` is written from it, so the signature and the card cannot disagree.
- with a :class:`trainer.second_stage.SecondStage`, an extra output ``fraud_probability`` =
  ``classifier(concat(raw features stacked in card order, feature_errors, reconstruction_error))[:, 0]``. A
  version derived from one with a second stage keeps it unless a new one is given (a stage written before the
  reconstruction error was an input keeps its [n, 2F] input).

Deriving from a derived version unwraps it first (its ``core`` is the trainer's export), so chains of
``calibrate --apply`` do not nest. The new version is written like ``trainer.export``'s: into a hidden temp
dir, checked by reloading it (source and derived score the same check rows: reconstruction errors equal to
rtol 1e-5, ``is_anomaly`` exactly the new threshold's, ``fraud_probability`` the classifier's and, for trees,
the fitting library's own prediction), then
renamed into ``<base>/<next version>`` by :func:`trainer.export.publish`.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudscore import fastpath
from fraudscore.artifact import (
    CARD_FILE,
    ENVELOPE_DISTANCE,
    OPTIONAL_OUTPUTS,
    OUTPUTS,
    SAVED_MODEL_FILE,
    SIGNATURE,
    THRESHOLD_SCORES,
)
from fraudscore.model import ModelCard, ModelError
from fraudscore.versions import latest_version
from trainer.config import TrainError
from trainer.export import CHECK_ATOL, CHECK_RTOL, EXTRA_DIR, publish, staging_dir

if TYPE_CHECKING:
    from trainer.second_stage import SecondStage

log = logging.getLogger(__name__)

FRAUD_PROBABILITY = OPTIONAL_OUTPUTS[0]
SECOND_STAGE_KERAS = "second_stage.keras"  # under assets.extra/, for offline use (the signature has its own copy)
# What the SavedModel writes; everything else in the source's directory (assets.extra/, report/) is copied.
_SAVED_MODEL_PARTS = frozenset((SAVED_MODEL_FILE, "variables", "assets", "fingerprint.pb", CARD_FILE))
# Metrics measured at the source's threshold; stale once the threshold or its score changes.
_AT_THRESHOLD = frozenset(("tp", "fp", "fn", "tn", "precision", "recall", "f1", "alert_rate"))


class DeriveError(TrainError):
    """A derived version that cannot be written: a bad request, or a written model that does not check out."""


def derive_version(
    base: Path,
    source_version: int | None = None,
    *,
    threshold: float | None = None,
    threshold_score: str | None = None,
    second_stage: SecondStage | None = None,
    card_updates: Mapping[str, Any] | None = None,
) -> int:
    """Writes a new complete version under ``base`` from ``source_version`` (default: the newest); returns it.

    ``threshold`` (default: the source's) applies to ``threshold_score`` (default: the source's).
    ``card_updates`` are merged into the card (a key whose old and new values are both objects is merged
    one level down, so ``{"threshold": {"policy": ...}}`` or ``{"derived_from": {"reason": ...}}`` refine
    what this function writes).
    """
    base = Path(base)
    source = latest_version(base) if source_version is None else source_version
    if source is None:
        raise DeriveError(f"no model versions under {base} to derive from")
    version, _dir, _card = derive(
        base / str(source),
        base,
        threshold=threshold,
        threshold_score=threshold_score,
        second_stage=second_stage,
        card_updates=card_updates,
    )
    return version


def derive(
    source_dir: Path,
    base: Path,
    *,
    threshold: float | None = None,
    threshold_score: str | None = None,
    second_stage: SecondStage | None = None,
    card_updates: Mapping[str, Any] | None = None,
    record_source: bool = True,
) -> tuple[int, Path, dict[str, Any]]:
    """:func:`derive_version` from any version directory (the trainer's unpublished export too) into ``base``;
    returns (version, its dir, the card written). ``record_source=False`` leaves ``derived_from`` out of the
    card (a training run whose export was never published is not derived from anything anyone saw).
    """
    source_dir = Path(source_dir)
    source = int(source_dir.name) if source_dir.name.isdigit() else 0
    try:
        card = ModelCard.read(source_dir)
    except ModelError as exc:
        raise DeriveError(f"source version {source}: {exc}") from exc
    score = threshold_score or card.threshold_score
    if score not in THRESHOLD_SCORES:
        raise DeriveError(f"threshold_score must be one of {', '.join(THRESHOLD_SCORES)}, got {score!r}")
    has_stage = second_stage is not None or card.second_stage is not None
    if score == FRAUD_PROBABILITY and not has_stage:
        raise DeriveError(
            f"threshold_score fraud_probability needs a second stage; version {source} has none and none was given"
        )
    if threshold is None:
        if score != card.threshold_score:
            raise DeriveError(f"changing the thresholded score to {score} needs a threshold on that score")
        threshold = card.threshold
    threshold = _valid_threshold(threshold, score)

    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(source_dir))
    except Exception as exc:  # TF raises many types for a broken SavedModel
        raise DeriveError(f"source version {source}: cannot load SavedModel: {exc}") from exc
    if not hasattr(getattr(loaded, "core", loaded), "threshold"):
        raise DeriveError(f"source version {source}: its SavedModel has no threshold variable (not a trainer export)")
    module = _derived_module(loaded, card.features, threshold, score, second_stage)
    with staging_dir(base) as tmp:
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: module.serve.get_concrete_function()})
        _copy_extras(source_dir, tmp)
        if second_stage is not None:
            (tmp / EXTRA_DIR).mkdir(exist_ok=True)
            second_stage.model.save(tmp / EXTRA_DIR / SECOND_STAGE_KERAS)
        written = float(module.threshold.numpy())  # the card's value is the variable's (float32) value
        rows = fastpath.check_rows(card.features, card.raw.get("statistics"))
        _check(tmp, loaded, card.features, rows, written, score, second_stage)
        content = _card_content(card, source, written, score, second_stage, card_updates or {})
        if not record_source:
            del content["derived_from"]

        def write_card(_tmp: Path, version: int) -> ModelCard:
            return ModelCard.from_dict(
                {**content, "version": version}, source=f"model card of {card.name} version {version}"
            )

        version, target, written_card = publish(tmp, base, write_card)
    log.info("derived %s version %d from %s (%s > %.6g)", card.name, version, source_dir, score, written)
    return version, target, written_card.to_dict()


def offline_fraud_probability(raw: np.ndarray, version_dir: Path) -> np.ndarray | None:
    """The second stage's probability as the trainer computes it outside the SavedModel (its Keras copy under
    assets.extra/ on the trainer's offline feature errors); None for a version without one."""
    from trainer.evaluate import offline_scores
    from trainer.second_stage import load_model

    path = Path(version_dir) / EXTRA_DIR / SECOND_STAGE_KERAS
    if not path.is_file():
        return None
    model = load_model(path)  # registers the classifier's custom layers first
    raw = np.asarray(raw, np.float32)
    scores = offline_scores(raw, version_dir)
    x = np.concatenate([raw, scores.feature_errors, scores.reconstruction_error[:, None]], axis=1)
    return np.asarray(model(x[:, : model.input_shape[1]], training=False), np.float32)[:, 0]


def _valid_threshold(value: float, score: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise DeriveError(f"threshold must be a number, got {value!r}") from exc
    if not math.isfinite(value):
        raise DeriveError(f"threshold must be finite, got {value}")
    if score == FRAUD_PROBABILITY and not 0.0 <= value < 1.0:
        raise DeriveError(f"a fraud_probability threshold must be in [0, 1), got {value:g}")
    return value


def _derived_module(loaded: Any, names: Sequence[str], threshold: float, score: str, stage: SecondStage | None) -> Any:
    """The servable: the source's core (its own ``serve``) plus the threshold and an optional classifier."""
    import tensorflow as tf

    names = tuple(names)
    # A derived source is unwrapped: its core is the trainer's export, its stage the classifier it carries.
    core = getattr(loaded, "core", loaded)
    carried = getattr(loaded, "stage", None)

    class Classifier(tf.Module):
        def __init__(self, model: Any) -> None:
            super().__init__(name="second_stage")
            self.model = model
            width = 2 * len(names) + 1
            self.classify = tf.function(
                self._classify, input_signature=[tf.TensorSpec([None, width], tf.float32, name="stage_input")]
            )

        def _classify(self, x: tf.Tensor) -> tf.Tensor:
            return tf.cast(self.model(x, training=False), tf.float32)[:, 0]

    class DerivedModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="fraudscore_derived")
            self.core = core
            self.stage = Classifier(stage.model) if stage is not None else carried
            self.stage_width = _stage_width(self.stage) if self.stage is not None else 0
            # One threshold variable, the core's: assigned, not duplicated, so no stale copy is saved.
            self.threshold = core.threshold
            self.threshold.assign(threshold)

        @tf.function(input_signature=[{n: tf.TensorSpec([None], tf.float32, name=n) for n in names}])
        def serve(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            out = self.core.serve(raw)
            result = {k: out[k] for k in OUTPUTS if k != "is_anomaly"}
            if ENVELOPE_DISTANCE in out:  # the source's envelope rule stays: beyond it, flagged whatever the score
                result[ENVELOPE_DISTANCE] = out[ENVELOPE_DISTANCE]
            if self.stage is not None:
                stacked = tf.stack([raw[n] for n in names], axis=1)
                total = out["reconstruction_error"][:, None]
                features = tf.concat([stacked, out["feature_errors"], total], axis=1)[:, : self.stage_width]
                result[FRAUD_PROBABILITY] = self.stage.classify(features)
            result["is_anomaly"] = result[score] > self.threshold
            if ENVELOPE_DISTANCE in out:
                outside = out[ENVELOPE_DISTANCE] > self.core.envelope_limit
                result["is_anomaly"] = tf.logical_or(result["is_anomaly"], outside)
            return result

    return DerivedModule()


def _stage_width(stage: Any) -> int:
    """The classifier's input width: 2F+1 (raw, feature errors, reconstruction error), or 2F for a stage carried
    from a version written before the reconstruction error was an input (read from its restored signature)."""
    fn = stage.classify
    spec = fn.input_signature[0] if getattr(fn, "input_signature", None) else None
    if spec is None:  # a restored function: its one traced signature
        spec = fn.concrete_functions[0].structured_input_signature[0][0]
    return int(spec.shape[1])


def _copy_extras(source_dir: Path, tmp: Path) -> None:
    """The source's files beside its SavedModel (assets.extra/: Keras model and transform copy; report/)."""
    for entry in source_dir.iterdir():
        if entry.name in _SAVED_MODEL_PARTS:
            continue
        if entry.is_dir():
            shutil.copytree(entry, tmp / entry.name, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, tmp / entry.name)


def _check(
    tmp: Path,
    source: Any,
    names: Sequence[str],
    rows: np.ndarray,
    threshold: float,
    score: str,
    stage: SecondStage | None,
) -> None:
    """Reloads the written SavedModel and proves it scores like its source with the new threshold."""
    import tensorflow as tf

    def call(fn: Any) -> dict[str, np.ndarray]:
        out = fn(**{n: tf.constant(rows[:, i], tf.float32) for i, n in enumerate(names)})
        return {k: v.numpy() for k, v in out.items()}

    derived = tf.saved_model.load(str(tmp))
    got, want = call(derived.signatures[SIGNATURE]), call(source.signatures[SIGNATURE])
    expected = (*OUTPUTS, FRAUD_PROBABILITY) if stage is not None or FRAUD_PROBABILITY in want else OUTPUTS
    missing = [k for k in expected if k not in got]
    if missing:
        raise DeriveError(f"derived signature lacks outputs {missing}")
    for name in ("reconstruction_error", "feature_errors"):
        if not np.allclose(got[name], want[name], rtol=CHECK_RTOL, atol=CHECK_ATOL):
            raise DeriveError(f"derived model's {name} differs from its source's")
    if not np.array_equal(got["out_of_range_count"], want["out_of_range_count"]):
        raise DeriveError("derived model's out_of_range_count differs from its source's")
    if stage is not None:
        stacked = np.concatenate([rows, got["feature_errors"], got["reconstruction_error"][:, None]], axis=1)
        expected_p = np.asarray(stage.model(stacked, training=False), np.float32)[:, 0]
        if not np.allclose(got[FRAUD_PROBABILITY], expected_p, rtol=CHECK_RTOL, atol=1e-6):
            raise DeriveError("derived model's fraud_probability differs from the second stage's own prediction")
        if stage.library is not None:
            library_p = stage.library.probability(stacked)
            if not np.allclose(got[FRAUD_PROBABILITY], library_p, rtol=CHECK_RTOL, atol=1e-6):
                gap = float(np.max(np.abs(got[FRAUD_PROBABILITY] - library_p)))
                raise DeriveError(
                    f"derived model's fraud_probability differs from the fitted trees' by up to {gap:.3g}"
                )
    elif FRAUD_PROBABILITY in want and not np.allclose(got[FRAUD_PROBABILITY], want[FRAUD_PROBABILITY], atol=1e-6):
        raise DeriveError("derived model's fraud_probability differs from its source's")
    stored = float(derived.threshold.numpy())
    if stored != threshold:
        raise DeriveError(f"derived model's threshold variable is {stored!r}, the card says {threshold!r}")
    flagged = got[score] > np.float32(threshold)
    if ENVELOPE_DISTANCE in want:  # the source's envelope rule, kept: the same distance, the same limit
        if not np.allclose(got[ENVELOPE_DISTANCE], want[ENVELOPE_DISTANCE], rtol=CHECK_RTOL, atol=CHECK_ATOL):
            raise DeriveError("derived model's envelope_distance differs from its source's")
        flagged |= got[ENVELOPE_DISTANCE] > np.float32(derived.core.envelope_limit.numpy())
    if not np.array_equal(got["is_anomaly"], flagged):
        raise DeriveError(f"derived model's is_anomaly is not {score} > {threshold:g} (or beyond the envelope)")


def _card_content(
    card: ModelCard,
    source: int,
    threshold: float,
    score: str,
    stage: SecondStage | None,
    updates: Mapping[str, Any],
) -> dict[str, Any]:
    data = dict(card.raw)
    changes = []
    same_threshold = threshold == float(np.float32(card.threshold)) and score == card.threshold_score
    if not same_threshold:
        changes.append(f"threshold {card.threshold_score} > {card.threshold:.6g} -> {score} > {threshold:.6g}")
        old = dict(data.get("threshold") or {})
        data["threshold"] = {
            "value": threshold,
            "policy": "given",  # the caller's card_updates say which policy chose it
            "score": score,
            "rule": f"is_anomaly = {score} > value",
            "previous": {k: old[k] for k in ("value", "policy", "score") if k in old},
        }
        metrics = data.get("metrics") or {}
        data["metrics"] = {k: v for k, v in metrics.items() if k not in _AT_THRESHOLD}
    else:
        data["threshold"] = {**dict(data.get("threshold") or {}), "value": threshold, "score": score}
    if stage is not None:
        changes.append("second stage " + ("replaced" if card.second_stage is not None else "added"))
        data["second_stage"] = {
            **dict(stage.info),
            "input": "raw features in card order, then feature_errors, then reconstruction_error",
        }
    if stage is not None or card.second_stage is not None:
        signature = dict(data.get("signature") or {})
        signature["outputs"] = [*OUTPUTS, FRAUD_PROBABILITY]
        data["signature"] = signature
    data["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    data["derived_from"] = {"version": source, "reason": "; ".join(changes) or "copy"}
    for key, value in updates.items():
        old_value = data.get(key)
        if isinstance(old_value, Mapping) and isinstance(value, Mapping):
            data[key] = {**old_value, **value}
        else:
            data[key] = value
    return data
