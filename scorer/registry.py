"""Which model versions are loaded, and the swap to a new one.

The registry loads the newest complete version under the model base, then
``poll()`` (run in a thread by the server) looks for newer ones. A candidate is
loaded and smoke-scored *before* it becomes current; the swap is a single
reference assignment, so a request that already holds a model finishes on it
and no request ever sees a half-loaded one. Which versions count, and how a
refused one is retried (once per poll, :data:`MAX_LOAD_ATTEMPTS` times in all,
then given up), is the version policy of :mod:`fraudscore.versions`, shared with
the stream; here a refused version is also counted (once per version) and listed
by GetModelInfo, and the current model keeps serving.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fraudscore import schema
from fraudscore.model import LoadedModel, ModelError
from fraudscore.v1.transaction_pb2 import Transaction
from fraudscore.versions import MAX_LOAD_ATTEMPTS, VersionWatcher
from scorer.metrics import ScorerMetrics

log = logging.getLogger(__name__)
__all__ = ["MAX_LOAD_ATTEMPTS", "ModelRegistry", "UnknownVersion", "smoke_test"]


class UnknownVersion(ModelError):
    """A pinned model version that is not loaded."""


def smoke_test(model: LoadedModel) -> None:
    """Raises ModelError unless ``model`` can score a transaction of our schema with sane outputs."""
    expected = int(model.path.name)
    if model.version != expected:
        raise ModelError(f"model card says version {model.version}, directory is {expected}")
    probe = Transaction(transaction_id="smoke", card_id="smoke", amount=1.0, v=[0.0] * schema.N_PCA)
    try:
        row = schema.feature_row(probe, model.features)
    except schema.InvalidTransaction as exc:
        raise ModelError(f"feature {exc.field}: {exc.reason}") from None
    scores = model.score(np.array([row, row], dtype=np.float32))
    if len(scores) != 2 or scores.feature_errors.shape != (2, len(model.features)):
        raise ModelError(f"smoke score returned wrong shapes: {scores.feature_errors.shape}")
    if not all(math.isfinite(float(e)) for e in scores.reconstruction_error):
        raise ModelError(f"smoke score is not finite: {scores.reconstruction_error.tolist()}")


class ModelRegistry:
    def __init__(
        self,
        base: Path,
        metrics: ScorerMetrics,
        *,
        keep: int = 2,
        loader: Callable[[Path], LoadedModel] = LoadedModel,
    ) -> None:
        self.base = base
        self._metrics = metrics
        self._keep = max(1, keep)
        self._loader = loader
        self._current: LoadedModel | None = None
        self._loaded: dict[int, LoadedModel] = {}
        self._watcher = VersionWatcher(base, self._load_checked, on_refused=self._count_refusal)
        self._poll_lock = threading.Lock()

    @property
    def refused(self) -> dict[int, str]:
        """Versions that failed to load, with the reason and attempts so far (GetModelInfo lists them)."""
        return self._watcher.refused

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def loaded_versions(self) -> list[int]:
        return sorted(self._loaded)

    def get(self, version: int = 0) -> LoadedModel:
        """The model for a request: the current one (version 0) or a pinned loaded version."""
        current = self._current
        if current is None:
            raise UnknownVersion("no model loaded yet")
        if version in (0, current.version):
            return current
        found = self._loaded.get(version)
        if found is None:
            raise UnknownVersion(f"version {version} is not loaded (loaded: {self.loaded_versions})")
        return found

    def poll(self) -> int | None:
        """Loads the newest acceptable version newer than the current one; returns it, or None."""
        with self._poll_lock:
            model = self._watcher.poll(self._current.version if self._current else 0)
            if model is None:
                return None
            self._swap(model)
            return model.version

    def _load_checked(self, uri: str) -> LoadedModel:
        model = self._loader(Path(uri))
        smoke_test(model)
        return model

    def _count_refusal(self, version: int, reason: str, attempts: int) -> None:
        if attempts == 1:
            self._metrics.reload_failures.inc()

    def _swap(self, model: LoadedModel) -> None:
        loaded = {**self._loaded, model.version: model}
        for old in sorted(loaded)[: -self._keep]:
            del loaded[old]
        # Readers see either the old or the new state: each assignment is atomic under the GIL.
        self._loaded = loaded
        self._current = model
        self._metrics.reloads.inc()
        self._metrics.served(model.card.name, model.version, model.fast_path.enabled)
        log.info(
            "serving model %s version %d (threshold %.6g) with %s",
            model.card.name,
            model.version,
            model.threshold,
            model.fast_path.runtime,
        )
