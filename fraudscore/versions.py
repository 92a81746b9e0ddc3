"""Model versions under a model base, and the one policy for following them (the scorer's and the stream's).

A model base is a local directory or a URI on a Beam filesystem (``gs://...`` on Dataflow). The version
policy, stated here once (TensorFlow Serving's, as its ``max_num_load_retries``):

- **What a version is.** A directory named by an integer holding both ``saved_model.pb`` and
  ``model_card.json``. Anything else is *not yet a version*: not listed, not loaded, no failure counted,
  whatever it holds — the trainer's hidden temp directory, or a directory copied in by hand whose
  SavedModel or card has not arrived yet.
- **Which one is served.** At each poll the newest version newer than the one in use is loaded (and
  checked by the caller's loader, e.g. the scorer's smoke score) *before* it replaces the one in use; if it
  fails, the next newest newer one is tried. So a newer version supersedes, and an older one is never
  loaded in place of a newer one in use.
- **A version that fails to load** (a truncated SavedModel copied non-atomically, a card that disagrees
  with its directory, a model that scores nonsense) is refused, logged and reported (:attr:`refused`);
  the version in use keeps serving. It is tried again once per poll — the poll interval is the backoff —
  :data:`MAX_LOAD_ATTEMPTS` times in all, then given up: reported as such and never tried again. So a
  version seen half-written loads once complete, and a broken one costs a bounded number of loads.

:class:`VersionWatcher` applies it; the scorer's ``scorer/registry.py`` and the stream's model handler
(``stream/inference.py``) poll one each.
"""

from __future__ import annotations

import logging
import posixpath
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from fraudscore.artifact import CARD_FILE, SAVED_MODEL_FILE

log = logging.getLogger(__name__)

# Attempts at loading one version before giving up on it (TF Serving's default max_num_load_retries is 5).
MAX_LOAD_ATTEMPTS = 5
_COMPLETE = frozenset((SAVED_MODEL_FILE, CARD_FILE))

M = TypeVar("M")


def is_remote(base: str | Path) -> bool:
    return "://" in str(base)


def list_versions(base: str | Path) -> list[int]:
    """Complete versions under a model base (local or a Beam filesystem URI), oldest first."""
    if not is_remote(base):
        local = Path(base)
        if not local.is_dir():
            return []
        return sorted(
            int(child.name)
            for child in local.iterdir()
            if child.name.isdigit() and all((child / name).is_file() for name in _COMPLETE)
        )
    from apache_beam.io.filesystems import FileSystems  # remote bases only (the stream on Dataflow)

    root = str(base).rstrip("/")
    found: dict[str, set[str]] = {}
    for name in _COMPLETE:
        for result in FileSystems.match([f"{root}/*/{name}"]):
            for meta in result.metadata_list:
                directory, file_name = posixpath.split(meta.path)
                found.setdefault(posixpath.basename(directory), set()).add(file_name)
    return sorted(int(d) for d, names in found.items() if d.isdigit() and names >= _COMPLETE)


def latest_version(base: str | Path) -> int | None:
    versions = list_versions(base)
    return versions[-1] if versions else None


def version_uri(base: str | Path, version: int) -> str:
    """The directory of one version: a local path, or ``<base URI>/<version>``."""
    if is_remote(base):
        return f"{str(base).rstrip('/')}/{version}"
    return str(Path(base) / str(version))


def latest_version_uri(base: str | Path) -> str | None:
    """The newest complete version's directory under a model base, or None."""
    version = latest_version(base)
    return None if version is None else version_uri(base, version)


class VersionWatcher(Generic[M]):
    """Follows the versions under one model base by the module's policy; the caller polls and swaps.

    ``load(version_uri)`` loads (and checks) one version, raising on any failure. ``poll(current)``
    returns the newest newer version that loads, or None; :attr:`refused` maps each version refused so
    far to its reason and its attempts (``... (attempt 2 of 5, tried again at the next poll)`` or
    ``... (gave up after 5 attempts)``). ``on_refused(version, reason, attempts)`` is called at each failure.
    """

    def __init__(
        self,
        base: str | Path,
        load: Callable[[str], M],
        *,
        max_attempts: int = MAX_LOAD_ATTEMPTS,
        on_refused: Callable[[int, str, int], None] | None = None,
    ) -> None:
        self.base = base
        self._load = load
        self._max_attempts = max(1, max_attempts)
        self._on_refused = on_refused
        self.refused: dict[int, str] = {}
        self._attempts: dict[int, int] = {}
        self._lock = threading.Lock()

    def poll(self, current: int = 0) -> M | None:
        """Loads the newest complete version newer than ``current`` that loads; None if there is none."""
        with self._lock:
            candidates = [
                v for v in list_versions(self.base) if v > current and self._attempts.get(v, 0) < self._max_attempts
            ]
            for version in reversed(candidates):
                try:
                    loaded = self._load(version_uri(self.base, version))
                except Exception as exc:  # any failure refuses the version; the one in use keeps serving
                    self._refuse(version, exc)
                    continue
                self.refused.pop(version, None)
                self._attempts.pop(version, None)
                return loaded
            return None

    def _refuse(self, version: int, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        attempts = self._attempts[version] = self._attempts.get(version, 0) + 1
        if attempts < self._max_attempts:
            outcome = f"attempt {attempts} of {self._max_attempts}, tried again at the next poll"
        else:
            outcome = f"gave up after {self._max_attempts} attempts"
        self.refused[version] = f"{reason} ({outcome})"
        level = logging.ERROR if attempts in (1, self._max_attempts) else logging.WARNING
        log.log(level, "refused model version %d under %s: %s (%s)", version, self.base, reason, outcome)
        if self._on_refused is not None:
            self._on_refused(version, reason, attempts)
