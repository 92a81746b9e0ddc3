"""The model artifact: finding, loading and calling a trained fraud model.

Layout (TensorFlow Serving's): ``<model base>/<integer version>/`` holds one
SavedModel plus ``model_card.json``; the trainer writes a version into a temp
directory and renames it into place, so a directory named by an integer is
complete. The serving signature ``serving_default`` takes one float32 ``[None]``
tensor per raw feature (names from the card's ``features``; the tf.Transform
graph is inside) and returns:

- ``reconstruction_error``  float32 ``[None]``     the fraud score
- ``feature_errors``        float32 ``[None, F]``  squared error per feature
- ``is_anomaly``            bool    ``[None]``     error > calibrated threshold
- ``out_of_range_count``    int32   ``[None]``     features clipped to the training range

The scorer and the stream read the feature list and threshold from here and
keep no copies of their own. Both score through :meth:`LoadedModel.score`,
which uses the LiteRT fast path compiled from this same SavedModel at load time
(``fraudscore.fastpath``) when it agrees with TensorFlow, and TensorFlow
otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fraudscore.fastpath import Compiler

CARD_FILE = "model_card.json"
SIGNATURE = "serving_default"
OUTPUTS = ("reconstruction_error", "feature_errors", "is_anomaly", "out_of_range_count")


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
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def read(cls, version_dir: Path) -> ModelCard:
        path = version_dir / CARD_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read model card: {exc}") from exc
        try:
            threshold = data["threshold"]
            return cls(
                name=str(data["name"]),
                version=int(data["version"]),
                features=tuple(data["features"]),
                threshold=float(threshold["value"]),
                threshold_policy=str(threshold["policy"]),
                metrics={k: float(v) for k, v in data.get("metrics", {}).items() if isinstance(v, (int, float))},
                raw=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: malformed model card: {exc!r}") from exc


@dataclass(frozen=True)
class Scores:
    reconstruction_error: np.ndarray
    feature_errors: np.ndarray
    is_anomaly: np.ndarray
    out_of_range_count: np.ndarray

    def __len__(self) -> int:
        return int(self.reconstruction_error.shape[0])


def list_versions(base: Path) -> list[int]:
    """Complete versions under a model base, oldest first (temp dirs are skipped)."""
    if not base.is_dir():
        return []
    versions = []
    for child in base.iterdir():
        if child.name.isdigit() and (child / "saved_model.pb").is_file() and (child / CARD_FILE).is_file():
            versions.append(int(child.name))
    return sorted(versions)


def latest_version(base: Path) -> int | None:
    versions = list_versions(base)
    return versions[-1] if versions else None


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
        self._tf = tf
        self._fast, self.fast_path = fastpath.prepare(
            self._module,
            self._fn,
            self.card.features,
            threshold=self.card.threshold,
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

    def score(self, rows: np.ndarray) -> Scores:
        """Scores raw feature rows ``[n, F]`` in ``features`` order."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != len(self.features):
            raise ModelError(f"expected rows of shape [n, {len(self.features)}], got {list(rows.shape)}")
        out = self._fast(rows) if self._fast is not None else self._score_tf(rows)
        return Scores(*(out[name] for name in OUTPUTS))

    def score_tensorflow(self, rows: np.ndarray) -> Scores:
        """Scores with the SavedModel's signature in TensorFlow, never the fast path (for checks)."""
        out = self._score_tf(np.ascontiguousarray(rows, dtype=np.float32))
        return Scores(*(out[name] for name in OUTPUTS))

    def _score_tf(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        inputs = {name: self._tf.constant(rows[:, i]) for i, name in enumerate(self.features)}
        out = self._fn(**inputs)
        return {name: out[name].numpy() for name in OUTPUTS}


def load(base: Path, version: int | None = None) -> LoadedModel:
    """Loads ``version`` (default: the newest complete one) from a model base."""
    chosen = latest_version(base) if version is None else version
    if chosen is None:
        raise ModelError(f"no model versions under {base}")
    path = base / str(chosen)
    if not path.is_dir():
        raise ModelError(f"model version {chosen} not found under {base}")
    return LoadedModel(path)


def top_k(feature_errors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``[n, F]`` feature errors: the indices of the k largest, their shares of the row's
    error (float64), and whether the row has any error at all (a perfect reconstruction has no contributors).
    """
    order = np.argsort(feature_errors, axis=1)[:, ::-1][:, :k]
    totals = feature_errors.sum(axis=1)
    picked = np.take_along_axis(feature_errors, order, axis=1).astype(np.float64)
    return order, picked / np.where(totals > 0, totals, 1.0).astype(np.float64)[:, None], totals > 0


def top_contributions(feature_errors: np.ndarray, names: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
    """The k features with the largest share of one row's reconstruction error (:func:`top_k` of one row)."""
    order, shares, has_error = top_k(np.asarray(feature_errors)[None, :], k)
    if not has_error[0]:
        return []
    return [(names[i], share) for i, share in zip(order[0].tolist(), shares[0].tolist(), strict=True)]
