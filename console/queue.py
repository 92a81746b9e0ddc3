"""The case queue: every case in memory, ordered by priority, rescanned in the background.

Ordering open cases by priority needs all of them: Bigtable keeps cases by card and by opening time, not by
score. A scan of the case rows (:meth:`cases.casebook.Casebook.all_cases`, small cells only) is too slow to
run per page view with thousands of cases, so a background thread keeps a :class:`Snapshot` (sorted once per
scan) and pages, filters and counts come from it. A scan starts at most every ``refresh_s`` seconds, and
never sooner than twice the last scan took, so a large table costs at most a third of a core. A decision made
in this console is applied to the snapshot at once (:meth:`Queue.changed`), so the analyst never sees the
case they just closed; cases opened by the stream appear within one rescan.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cases.casebook import priority
from cases.episode_rows import CLOSED, OPEN, Episode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """All cases as of one scan: open ones in priority order, counts by status and verdict."""

    cases: tuple[Episode, ...] = ()  # every case, priority order (open and undecided first)
    scanned_at: float = 0.0  # time.time() of the scan's end
    scan_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, cases: Iterable[Episode], scanned_at: float, scan_s: float) -> Snapshot:
        ordered = tuple(sorted(cases, key=priority))
        counts: Counter[str] = Counter()
        for e in ordered:
            counts[e.status] += 1
            if e.decision is not None:
                counts[e.decision.verdict] += 1
        counts["all"] = len(ordered)
        return cls(ordered, scanned_at, scan_s, {k: counts[k] for k in ("all", OPEN, CLOSED, "fraud", "legit")})

    @property
    def open_cases(self) -> Sequence[Episode]:
        # Open cases sort first: the prefix up to the first closed one.
        end = next((i for i, e in enumerate(self.cases) if e.status != OPEN), len(self.cases))
        return self.cases[:end]


@dataclass(frozen=True)
class QueuePage:
    cases: tuple[Episode, ...]
    page: int
    pages: int
    matching: int
    reasons: tuple[str, ...]  # every reason code among open cases, for the filter's choices
    snapshot: Snapshot


def select(snapshot: Snapshot, *, reason: str = "", card: str = "", page: int = 1, size: int = 50) -> QueuePage:
    """One page of the open cases, filtered by a reason code and a card id (substring), in priority order."""
    if size < 1:
        raise ValueError(f"page size must be positive, got {size}")
    open_cases = snapshot.open_cases
    matching = [e for e in open_cases if (not reason or reason in e.reasons) and (not card or card in e.card_id)]
    pages = max(1, -(-len(matching) // size))
    page = min(max(page, 1), pages)
    reasons = tuple(sorted({r for e in open_cases for r in e.reasons}))
    chosen = tuple(matching[(page - 1) * size : page * size])
    return QueuePage(chosen, page, pages, len(matching), reasons, snapshot)


class Queue:
    """Keeps a :class:`Snapshot` of ``scan()`` fresh in a daemon thread (``start``) or on demand (``refresh``)."""

    def __init__(self, scan: Callable[[], Iterable[Episode]], refresh_s: float = 2.0) -> None:
        self._scan = scan
        self._refresh_s = refresh_s
        self._snapshot = Snapshot()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str = ""  # the last scan's failure, shown on the queue page until a scan succeeds

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def refresh(self) -> Snapshot:
        started = time.monotonic()
        cases = list(self._scan())
        snapshot = Snapshot.of(cases, time.time(), time.monotonic() - started)
        with self._lock:
            self._snapshot = snapshot
        self.error = ""
        self._ready.set()
        return snapshot

    def changed(self, episode: Episode) -> None:
        """A case this console just changed: replaces it in the snapshot (the next scan would too, later)."""
        with self._lock:
            old = self._snapshot
            cases = [episode if e.case_id == episode.case_id else e for e in old.cases]
            self._snapshot = Snapshot.of(cases, old.scanned_at, old.scan_s)

    def start(self) -> Queue:
        self._thread = threading.Thread(target=self._run, name="case-queue", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                scan_s = self.refresh().scan_s
            except Exception as exc:  # a Bigtable hiccup: keep the last snapshot, say so, try again
                log.warning("case queue scan failed: %s", exc)
                self.error = f"the last scan of the cases failed ({exc}); showing the previous one"
                self._ready.set()
                scan_s = self._refresh_s
            self._stop.wait(max(self._refresh_s, 2 * scan_s))
