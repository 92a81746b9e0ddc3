"""The model artifact: finding, loading and calling a trained fraud model.

Layout (TensorFlow Serving's): ``<model base>/<integer version>/`` holds one
SavedModel plus ``model_card.json``; the trainer writes a version into a temp
directory and renames it into place, so a directory named by an integer is
complete (``fraudscore.versions`` says which directories are versions and
states the one policy for loading them). :class:`ModelCard` is the card's only
reader and writer: :data:`REQUIRED` names the keys every card has, and the
trainer and the test fakes write it through :meth:`ModelCard.write`.

The serving signature ``serving_default`` takes one float32 ``[None]`` tensor
per raw feature (names from the card's ``features``; the tf.Transform graph is
inside) and returns:

- ``reconstruction_error``  float32 ``[None]``     the fraud score
- ``feature_errors``        float32 ``[None, F]``  squared error per feature
- ``is_anomaly``            bool    ``[None]``     error > calibrated threshold
- ``out_of_range_count``    int32   ``[None]``     features clipped to the training range
- ``envelope_distance``     float32 ``[None]``     how far outside the training normals' range, in p1-p99 widths
  (``trainer.envelope``; versions trained before it lack it); ``is_anomaly`` is also true beyond the card's
  ``envelope.limit_widths``
- ``fraud_probability``     float32 ``[None]``     only when the card has a ``second_stage``: a supervised
  classifier's probability of fraud from the raw features and ``feature_errors`` (``trainer.derive``)

``is_anomaly`` is the card's ``threshold.score`` (``reconstruction_error`` unless it says
``fraud_probability``) > ``threshold.value``, computed inside the signature.

The scorer and the stream read the feature list and threshold from here and
keep no copies of their own. Both score through :meth:`LoadedModel.score`,
which uses the LiteRT fast path compiled from this same SavedModel at load time
(``fraudscore.fastpath``) when it agrees with TensorFlow, and TensorFlow
otherwise.

Explanations: ``score(rows, explain=True)`` adds ``contributions``, per feature the drop of the row's
reconstruction error when that feature alone is set to the training normals' median (occlusion; the
medians are the card's ``statistics``). It is one more call of the same compiled function on ``F`` copies
of each row, so every path (gRPC, stream, offline) gets the same answer for a row in any batch. A row's
top features are its largest contributions, each shown as its share of the row's error
(:func:`top_features`). ``only_flagged=True`` (bulk ScoreColumns calls) explains only the rows
``is_anomaly`` flags, with the same answer for them.

Why one feature at a time and not a search over sets: on the shipped real sample, for every flagged fraud
(37 per seed), the three features whose joint reset removes the most of the score (all 3,654 sets tried,
``bench.quality``'s ``best_3_set``) are the occlusion top 3 in 110 of 111 cases, and greedy sequential
occlusion picks them too: a search would cost F-fold more rows and explain no better.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudscore.artifact import CARD_FILE, ENVELOPE_DISTANCE, OUTPUTS, SIGNATURE, THRESHOLD_SCORES, Scores
from fraudscore.versions import latest_version

if TYPE_CHECKING:
    from fraudscore.fastpath import Compiler

# The keys every model card has ("a.b": key b of the object under key a); any others are the writer's own.
REQUIRED = ("name", "version", "features", "threshold.value", "threshold.policy")


class ModelError(RuntimeError):
    """A model version that cannot be found, loaded or called."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: int
    features: tuple[str, ...]
    threshold: float
    threshold_policy: str
    metrics: dict[str, float] = field(default_factory=dict)
    # The output ``is_anomaly`` thresholds (card key ``threshold.score``): one of THRESHOLD_SCORES.
    threshold_score: str = THRESHOLD_SCORES[0]
    # The supervised second stage inside the signature (card key ``second_stage``), None without one.
    second_stage: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = CARD_FILE) -> ModelCard:
        """The card of a card's JSON object; a missing required key or a wrong type is a :class:`ModelError`."""
        if not isinstance(data, Mapping):
            raise ModelError(f"{source}: malformed model card: a JSON object expected, got {type(data).__name__}")
        missing = [key for key in REQUIRED if not _has(data, key)]
        if missing:
            raise ModelError(
                f"{source}: malformed model card: missing required key(s) {', '.join(missing)} "
                f"(required: {', '.join(REQUIRED)})"
            )
        try:
            threshold = data["threshold"]
            features = data["features"]
            if isinstance(features, str) or not all(isinstance(f, str) for f in features):
                raise TypeError(f"features must be a list of names, got {features!r}")
            score = str(threshold.get("score", THRESHOLD_SCORES[0]))
            if score not in THRESHOLD_SCORES:
                raise ValueError(f"threshold.score must be one of {', '.join(THRESHOLD_SCORES)}, got {score!r}")
            second_stage = data.get("second_stage")
            if second_stage is not None and not isinstance(second_stage, Mapping):
                raise TypeError(f"second_stage must be an object, got {type(second_stage).__name__}")
            if score == "fraud_probability" and second_stage is None:
                raise ValueError("threshold.score is fraud_probability but the card has no second_stage")
            return cls(
                name=str(data["name"]),
                version=int(data["version"]),
                features=tuple(features),
                threshold=float(threshold["value"]),
                threshold_policy=str(threshold["policy"]),
                metrics={k: float(v) for k, v in (data.get("metrics") or {}).items() if isinstance(v, (int, float))},
                threshold_score=score,
                second_stage=None if second_stage is None else dict(second_stage),
                raw=dict(data),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{source}: malformed model card: {exc!r}") from exc

    def normal_ranges(self) -> dict[str, tuple[float, float, float]]:
        """Per feature, the training normals' (p1, median, p99) in raw units (the card's ``statistics``);
        empty for a version without them. What GetModelInfo serves and the console shows beside a value."""
        stats = self.raw.get("statistics") or {}
        try:
            return {n: tuple(float(stats[n][k]) for k in ("p01", "median", "p99")) for n in self.features}  # type: ignore[misc]
        except (KeyError, TypeError, ValueError):
            return {}

    @classmethod
    def read(cls, version_dir: Path) -> ModelCard:
        path = version_dir / CARD_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read model card: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON object: ``raw`` (the writer's other keys, in its order) with the typed fields set."""
        data = dict(self.raw)
        data.update(name=self.name, version=self.version, features=list(self.features))
        threshold = dict(data.get("threshold") or {})
        if threshold.get("value") != self.threshold:
            threshold["value"] = self.threshold
        threshold["policy"] = self.threshold_policy
        if "score" in threshold or self.threshold_score != THRESHOLD_SCORES[0]:
            threshold["score"] = self.threshold_score
        data["threshold"] = threshold
        if self.second_stage is not None:
            data["second_stage"] = self.second_stage
        else:
            data.pop("second_stage", None)
        metrics = dict(data.get("metrics") or {})
        metrics.update({k: v for k, v in self.metrics.items() if metrics.get(k) != v})
        data["metrics"] = metrics
        return data

    def second_stage_line(self) -> str:
        """One line describing the second stage (for GetModelInfo and logs); empty without one."""
        stage = self.second_stage
        if stage is None:
            return ""
        design = stage.get("design")
        if not isinstance(design, Mapping):
            design = {}
        what = str(design.get("classifier") or stage.get("kind") or "classifier")
        parts = [f"{what} on {design.get('input_summary') or 'raw features + feature errors'}"]
        if "rows" in stage:
            parts.append(
                f"{stage['rows']} labelled rows ({stage.get('frauds', '?')} frauds, {stage.get('legit', '?')} legit)"
            )
        labels = stage.get("labels")
        if isinstance(labels, Mapping) and labels.get("fingerprint"):
            parts.append(f"label set {str(labels['fingerprint'])[:12]}")
        return "; ".join(parts)

    def write(self, version_dir: Path) -> Path:
        """Writes ``model_card.json`` into a version directory (a temp dir, before its rename into place)."""
        path = version_dir / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_plain) + "\n")
        return path


def _has(data: Mapping[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays that slip into a card."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class LoadedModel:
    """One loaded version; ``score`` is thread-safe.

    ``fast_path`` says what scores: LiteRT compiled from the SavedModel, or TensorFlow when the
    fast path is off, failed to compile or disagreed with TensorFlow on the load-time check.
    ``compiler`` builds the fast path (tests inject failing or wrong ones).
    """

    def __init__(self, version_dir: Path, *, compiler: Compiler | None = None) -> None:
        import tensorflow as tf  # heavy: imported only where a model is loaded

        from fraudscore import fastpath

        self.path = version_dir
        self.card = ModelCard.read(version_dir)
        try:
            self._module = tf.saved_model.load(str(version_dir))
            self._fn = self._module.signatures[SIGNATURE]
        except Exception as exc:  # TF raises many types for a broken SavedModel
            raise ModelError(f"{version_dir}: cannot load SavedModel: {exc}") from exc
        self._outputs = fastpath.output_names(self._fn)
        has_probability = "fraud_probability" in self._outputs
        if has_probability != (self.card.second_stage is not None):
            raise ModelError(
                f"{version_dir}: the card {'has' if self.card.second_stage is not None else 'has no'} second_stage "
                f"but the signature {'has' if has_probability else 'lacks'} the fraud_probability output"
            )
        self._tf = tf
        self._fast, self.fast_path = fastpath.prepare(
            self._module,
            self._fn,
            self.card.features,
            threshold=self.card.threshold,
            threshold_score=self.card.threshold_score,
            statistics=self.card.raw.get("statistics"),
            reference=self._score_tf,
            compiler=compiler or fastpath.compile_litert,
            label=f"model {self.card.name} version {self.card.version}",
        )

    @property
    def version(self) -> int:
        return self.card.version

    @property
    def features(self) -> tuple[str, ...]:
        return self.card.features

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def threshold_score(self) -> str:
        """The output ``is_anomaly`` thresholds: ``reconstruction_error`` or ``fraud_probability``."""
        return self.card.threshold_score

    @property
    def has_fraud_probability(self) -> bool:
        return self.card.second_stage is not None

    @functools.cached_property
    def normal_ranges(self) -> dict[str, tuple[float, float, float]]:
        """Per feature, the training normals' (p1, median, p99) in raw units; empty for a version without them."""
        return self.card.normal_ranges()

    @functools.cached_property
    def medians(self) -> np.ndarray | None:
        """The training normals' median per feature (raw units, card order): the occlusion baseline; None for a
        version without them (older than explanations)."""
        ranges = self.normal_ranges
        return np.array([ranges[n][1] for n in self.features], dtype=np.float32) if ranges else None

    @property
    def envelope_limit(self) -> float | None:
        """The envelope rule's limit in widths; None for a version older than the rule."""
        envelope = self.card.raw.get("envelope")
        return float(envelope["limit_widths"]) if isinstance(envelope, Mapping) else None

    def outside_envelope(self, scores: Scores) -> np.ndarray:
        """bool [n]: the rows ``is_anomaly`` flags for lying beyond the envelope (all False in an older version)."""
        limit = self.envelope_limit
        if scores.envelope_distance is None or limit is None:
            return np.zeros(len(scores), dtype=bool)
        return np.asarray(scores.envelope_distance) > np.float32(limit)

    def score(self, rows: np.ndarray, *, explain: bool = False, only_flagged: bool = False) -> Scores:
        """Scores raw feature rows ``[n, F]`` in ``features`` order; ``explain`` adds ``contributions``, for every
        row, or with ``only_flagged`` for the rows ``is_anomaly`` flags (the others' are all 0, so they have no
        top features): a bulk call then pays the F occluded copies only for its few flagged rows. A flagged
        row's contributions are the same either way (the same compiled call on the same copies)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != len(self.features):
            raise ModelError(f"expected rows of shape [n, {len(self.features)}], got {list(rows.shape)}")
        call = self._fast if self._fast is not None else self._score_tf
        scores = _scores(call(rows))
        if explain and self.medians is not None and len(rows):
            errors = scores.reconstruction_error
            if not only_flagged or scores.is_anomaly.all():
                found = contributions(errors, call(occlude(rows, self.medians))["reconstruction_error"])
            else:
                found = np.zeros(rows.shape, dtype=np.float32)
                flagged = np.flatnonzero(scores.is_anomaly)
                if len(flagged):
                    occluded = call(occlude(rows[flagged], self.medians))["reconstruction_error"]
                    found[flagged] = contributions(errors[flagged], occluded)
            scores = dataclasses.replace(scores, contributions=found)
        return scores

    def score_tensorflow(self, rows: np.ndarray) -> Scores:
        """Scores with the SavedModel's signature in TensorFlow, never the fast path (for checks)."""
        return _scores(self._score_tf(np.ascontiguousarray(rows, dtype=np.float32)))

    def _score_tf(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        inputs = {name: self._tf.constant(rows[:, i]) for i, name in enumerate(self.features)}
        out = self._fn(**inputs)
        return {name: out[name].numpy() for name in self._outputs}


def _scores(out: Mapping[str, np.ndarray]) -> Scores:
    required = {name: out[name] for name in OUTPUTS}
    return Scores(
        **required, fraud_probability=out.get("fraud_probability"), envelope_distance=out.get(ENVELOPE_DISTANCE)
    )


def occlude(rows: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """``[n * F, F]``: each row F times, copy j with feature j set to ``baseline[j]`` (row-major: row i's copies
    are ``i*F .. i*F+F-1``)."""
    n, f = rows.shape
    out = np.repeat(rows, f, axis=0).reshape(n, f, f)
    out[:, np.arange(f), np.arange(f)] = baseline
    return out.reshape(n * f, f)


def contributions(errors: np.ndarray, occluded_errors: np.ndarray) -> np.ndarray:
    """``[n, F]`` float32: how much each feature alone adds to the row's error, ``max(0, error - error with the
    feature at its normal median)``. Faithful by construction: putting a top feature back to normal removes
    exactly its contribution from the score (one feature at a time; shares of features that interact overlap).
    """
    n = len(errors)
    drop = np.asarray(errors, np.float32)[:, None] - np.asarray(occluded_errors, np.float32).reshape(n, -1)
    return np.maximum(drop, np.float32(0)).astype(np.float32, copy=False)


def explained(scores: Scores) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, totals) a row's top features are taken from: the occlusion contributions as shares of the
    row's reconstruction error ("V14: 41% of the score"), or for a version without training medians (older
    than explanations), the per-feature reconstruction errors as shares of their sum (totals None)."""
    if scores.contributions is not None:
        return scores.contributions, scores.reconstruction_error
    return scores.feature_errors, None


def top_features(scores: Scores, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`top_k` of :func:`explained`: each row's k top features, their shares, whether it has any."""
    values, totals = explained(scores)
    return top_k(values, k, totals)


def load(base: Path, version: int | None = None) -> LoadedModel:
    """Loads ``version`` (default: the newest complete one) from a model base."""
    chosen = latest_version(base) if version is None else version
    if chosen is None:
        raise ModelError(f"no model versions under {base}")
    path = base / str(chosen)
    if not path.is_dir():
        raise ModelError(f"model version {chosen} not found under {base}")
    return LoadedModel(path)


# Up to this many rows top_k sorts each row; above, it works across rows (see _top_across_rows), ~2-3x
# faster from ~200 rows on (1,000 rows: 0.13 vs 0.26 ms; 10,000: 0.8 vs 2.4 ms), slower for a few rows.
SORT_ROWS = 128


def sorted_top(feature_errors: np.ndarray, k: int) -> np.ndarray:
    """The indices of each row's k largest feature errors by sorting the row: largest first, equal errors
    in feature order (a stable sort of the negated errors)."""
    return np.argsort(-feature_errors, axis=1, kind="stable")[:, :k]


def top_k(
    feature_errors: np.ndarray, k: int, totals: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``[n, F]`` non-negative values: the indices of the k largest (largest first; equal values in
    feature order, the lower index first), their shares of the row's total (float64; ``totals`` [n], or the
    row's sum), and whether the row has any contributor at all (a perfect reconstruction has none).

    A row gets the same answer in any batch: both ways of ordering pick the same features, and the row's
    total is always summed along the row (summed across rows, float32 rounding would differ in the last bit).
    """
    errors = np.asarray(feature_errors)
    k = min(k, errors.shape[1])
    if totals is None:
        totals = errors.sum(axis=1)
    else:
        totals = np.where(errors.max(axis=1, initial=0) > 0, np.asarray(totals), 0)
    order = _top_across_rows(errors, k) if len(errors) > SORT_ROWS and not np.isnan(totals).any() else None
    if order is None:
        order = sorted_top(errors, k)
    picked = np.take_along_axis(errors, order, axis=1)
    has_error = totals > 0
    return order, picked.astype(np.float64) / np.where(has_error, totals, 1.0).astype(np.float64)[:, None], has_error


def _top_across_rows(errors: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_k`'s order (rows without NaN), in k passes of whole-array operations.

    Sorting 29 values per row pays numpy's per-row overhead n times. Transposed to ``[F, n]``, each pass
    takes every row's maximum at once, finds its lowest column holding it (column j weighted F - j, so the
    largest weight among the equal ones is the lowest index, as a stable sort orders them), and masks it.
    """
    n, f = errors.shape
    cols = errors.T.copy()  # a copy: the passes overwrite the values they pick
    weight: np.ndarray = np.arange(f, 0, -1, dtype=np.uint8 if f < 256 else np.int64)[:, None]
    order = np.empty((k, n), dtype=np.intp)
    flat, rows = cols.reshape(-1), np.arange(n)
    equal = np.empty(cols.shape, dtype=bool)
    for rank in range(k):
        np.equal(cols, cols.max(axis=0), out=equal)
        order[rank] = f - np.multiply(equal.view(np.uint8), weight).max(axis=0)
        if rank + 1 < k:
            flat[order[rank] * n + rows] = -np.inf
    return order.T


def top_contributions(feature_errors: np.ndarray, names: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
    """The k features with the largest share of one row's reconstruction error (:func:`top_k` of one row)."""
    order, shares, has_error = top_k(np.asarray(feature_errors)[None, :], k)
    if not has_error[0]:
        return []
    return [(names[i], share) for i, share in zip(order[0].tolist(), shares[0].tolist(), strict=True)]
