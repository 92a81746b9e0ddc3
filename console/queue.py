"""The case queue: every case in memory, ordered by priority, rescanned in the background.

Ordering open cases by priority needs all of them: Bigtable keeps cases by card and by opening time, not by
score. A scan of the case rows (:meth:`cases.casebook.Casebook.all_cases`, small cells only) is too slow to
run per page view with thousands of cases (10,000: seconds), so a :class:`Snapshot` (sorted, with each open
case's reasons, once per scan) is kept and pages, filters and counts come from it. The scan and the sort run
in a child process (:class:`ProcessScan`): in this one they would hold the GIL for seconds and stall the
server's threads; here only the finished snapshot is unpickled. After the first scan of every case, a
rescan (at most every ``refresh_s`` seconds, never sooner than twice the last took) reads only the cases
changed since the previous one (:meth:`cases.casebook.Casebook.changed_between`) and merges them in
(:meth:`Snapshot.merged`); a full scan every ``full_every_s`` seconds is the backstop (:class:`Queue`). With
10,000 cases an idle console used 8-16% of a core on full rescans, 0.1-5% on incremental ones (bench.console).
A decision made in this console is applied to the snapshot at once (:meth:`Queue.changed`), so the analyst
never sees the case they just closed; cases opened by the stream appear within one rescan.
"""

from __future__ import annotations

import bisect
import gc
import logging
import os
import pickle
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cases.casebook import priority
from cases.episode_rows import CLOSED, OPEN, Episode
from fraudscore.config import Resources

log = logging.getLogger(__name__)
NICE = 10  # the rescanning child's niceness increment


@dataclass(frozen=True)
class Snapshot:
    """All cases as of one scan: open ones in priority order (with their reasons), counts by status and verdict."""

    cases: tuple[Episode, ...] = ()  # every case, priority order (open and undecided first)
    scanned_at: float = 0.0  # time.time() of the scan's end
    scan_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    open_reasons: tuple[tuple[str, ...], ...] = ()  # per open case (the first len(open_reasons) of cases)
    all_reasons: tuple[str, ...] = ()  # every reason code among open cases, for the filter's choices

    @classmethod
    def of(cls, cases: Iterable[Episode], scanned_at: float, scan_s: float) -> Snapshot:
        ordered = tuple(sorted(cases, key=priority))
        counts: Counter[str] = Counter()
        for e in ordered:
            _tally(counts, e, 1)
        # Open cases sort first: the prefix up to the first closed one. Episode.reasons orders the members
        # on every call: once here, not per filtered page view.
        open_reasons = tuple(e.reasons for e in ordered[: counts[OPEN]])
        return cls._made(ordered, scanned_at, scan_s, counts, open_reasons)

    @classmethod
    def _made(
        cls,
        ordered: tuple[Episode, ...],
        scanned_at: float,
        scan_s: float,
        counts: Counter[str],
        open_reasons: tuple[tuple[str, ...], ...],
    ) -> Snapshot:
        return cls(
            ordered,
            scanned_at,
            scan_s,
            {k: counts[k] for k in ("all", OPEN, CLOSED, "fraud", "legit")},
            open_reasons,
            tuple(sorted({r for reasons in open_reasons for r in reasons})),
        )

    def merged(self, changed: Iterable[Episode], scanned_at: float, scan_s: float) -> Snapshot:
        """This snapshot with ``changed`` in place of the cases with their keys (new ones added).

        The rest keep their places and reasons: each changed case is bisected in (a few priority keys), the
        counts are adjusted. Snapshot.of over 10,000 cases (every priority, every open case's reasons) held
        the GIL for 200-650 ms on the loaded machine, per incremental rescan that found a change.
        """
        fresh = {e.key: e for e in changed}
        if not fresh:
            return replace(self, scanned_at=scanned_at, scan_s=scan_s)
        counts = Counter(self.counts)
        reasons = [*self.open_reasons, *((),) * (len(self.cases) - len(self.open_reasons))]
        cases: list[Episode] = []
        kept: list[tuple[str, ...]] = []
        for e, r in zip(self.cases, reasons, strict=True):
            if e.key in fresh:
                _tally(counts, e, -1)
            else:
                cases.append(e)
                kept.append(r)
        for e in fresh.values():
            at = bisect.bisect_right(cases, priority(e), key=priority)
            cases.insert(at, e)
            kept.insert(at, e.reasons if e.status == OPEN else ())
            _tally(counts, e, 1)
        return self._made(tuple(cases), scanned_at, scan_s, counts, tuple(kept[: counts[OPEN]]))

    @property
    def open_cases(self) -> Sequence[Episode]:
        return self.cases[: len(self.open_reasons)]


def _tally(counts: Counter[str], e: Episode, sign: int) -> None:
    counts["all"] += sign
    counts[e.status] += sign
    if e.decision is not None:
        counts[e.decision.verdict] += sign


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
    if reason or card:
        pairs = zip(open_cases, snapshot.open_reasons, strict=True)
        matching: Sequence[Episode] = [
            e for e, reasons in pairs if (not reason or reason in reasons) and (not card or card in e.card_id)
        ]
    else:
        matching = open_cases
    pages = max(1, -(-len(matching) // size))
    page = min(max(page, 1), pages)
    chosen = tuple(matching[(page - 1) * size : page * size])
    return QueuePage(chosen, page, pages, len(matching), snapshot.all_reasons, snapshot)


def scan_snapshot(scan: Callable[[], Iterable[Episode]]) -> Snapshot:
    """A snapshot of what ``scan`` yields, timed."""
    started = time.monotonic()
    cases = list(scan())
    return Snapshot.of(cases, time.time(), time.monotonic() - started)


class ScanError(RuntimeError):
    """The rescanning child failed or is gone; the message says why."""


def _exit_with_parent(parent: int) -> None:
    # A parent killed outright (SIGKILL, a crash) runs no clean-up: the child notices it is orphaned and ends.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _scan_loop(conn: Any, resources: Resources, parent: int) -> None:
    """The child: one snapshot per request on ``conn``, until the parent closes it or goes away."""
    import warnings

    from cases.casebook import Casebook
    from cases.store import CaseStore

    os.nice(NICE)  # on a busy machine the server's answers go first, the rescan waits
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator", category=RuntimeWarning)
    with CaseStore(resources) as store:
        book = Casebook(store)
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            try:
                if request == "scan":
                    conn.send(_packed(scan_snapshot(book.all_cases)))
                else:  # ("changed", since, until in epoch seconds): the cases changed between
                    _, since, until = request
                    changed = book.changed_between(
                        datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC)
                    )
                    conn.send([pickle.dumps(changed[i : i + CHUNK]) for i in range(0, len(changed), CHUNK)])
            except Exception as exc:  # a Bigtable error: the parent reports it and asks again later
                conn.send(ScanError(f"{type(exc).__name__}: {exc}"))


CHUNK = 250  # cases per pickle: unpickling 10,000 cases at once held the GIL for 372 ms (loaded machine)


def _packed(snapshot: Snapshot) -> tuple[Snapshot, list[bytes]]:
    """The snapshot without its cases, and the cases (with their reasons) pickled in chunks, in order."""
    n = len(snapshot.cases)
    reasons = snapshot.open_reasons + ((),) * (n - len(snapshot.open_reasons))
    chunks = [pickle.dumps((snapshot.cases[i : i + CHUNK], reasons[i : i + CHUNK])) for i in range(0, n, CHUNK)]
    return replace(snapshot, cases=(), open_reasons=()), chunks


def _unpacked(packed: tuple[Snapshot, list[bytes]]) -> Snapshot:
    """Unpickles chunk by chunk, letting the server's threads run in between (one long loads() would not)."""
    head, chunks = packed
    cases: list[Episode] = []
    reasons: list[tuple[str, ...]] = []
    for chunk in chunks:
        part, part_reasons = pickle.loads(chunk)
        cases.extend(part)
        reasons.extend(part_reasons)
        time.sleep(0)  # gives up the GIL: a page being answered goes on
    open_count = head.counts.get(OPEN, 0)
    return replace(head, cases=tuple(cases), open_reasons=tuple(reasons[:open_count]))


class ProcessScan:
    """``scan_snapshot`` of every case, run in one long-lived child process (spawned: no forked gRPC threads).

    The child finds Bigtable as this process does (it inherits the environment, BIGTABLE_EMULATOR_HOST too)
    and ends with this process: :meth:`close`, multiprocessing's exit handler (a daemon process), or its own
    check of its parent when this one is killed outright.
    """

    def __init__(self, resources: Resources) -> None:
        from multiprocessing import get_context

        ctx = get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        self._process = ctx.Process(
            target=_scan_loop, args=(child_end, resources, os.getpid()), name="case-scan", daemon=True
        )
        self._process.start()
        child_end.close()
        self._lock = threading.Lock()

    def __call__(self) -> Snapshot:
        return _unpacked(self._ask("scan"))

    def changed_between(self, since: float, until: float) -> list[Episode]:
        """The cases changed in ``[since, until)`` (epoch seconds): :meth:`cases.casebook.Casebook.changed_between`."""
        cases: list[Episode] = []
        for chunk in self._ask(("changed", since, until)):
            cases.extend(pickle.loads(chunk))
            time.sleep(0)  # gives up the GIL between chunks, as _unpacked does
        return cases

    def _ask(self, request: object) -> Any:
        with self._lock:
            try:
                self._conn.send(request)
                result = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise ScanError(f"the scanning process is gone (exit code {self._process.exitcode})") from exc
        if isinstance(result, ScanError):
            raise result
        return result

    def close(self) -> None:
        self._conn.close()
        self._process.terminate()
        self._process.join(timeout=5)


class Queue:
    """Keeps the :class:`Snapshot` ``build()`` makes fresh in a daemon thread (``start``) or on demand (``refresh``).

    With ``changed`` (the cases changed between two epoch times, e.g. :meth:`ProcessScan.changed_between`),
    only the first scan and one every ``full_every_s`` seconds read every case: the rescans in between read the
    cases changed since the previous scan began, less ``overlap_s`` (writers' clocks a little behind this one,
    writes in flight while it ran), up to ``overlap_s`` past now (a writer's clock a little ahead; cells
    further ahead are read once this clock reaches them), and merge them in. The full scans are the backstop
    for what an incremental one cannot see (deleted rows, a clock behind by more than the overlap, old-style
    rows).
    """

    def __init__(
        self,
        build: Callable[[], Snapshot],
        refresh_s: float = 2.0,
        *,
        changed: Callable[[float, float], list[Episode]] | None = None,
        full_every_s: float = 600.0,
        overlap_s: float = 10.0,
    ) -> None:
        self._build = build
        self._changed = changed
        self._refresh_s = refresh_s
        self._full_every_s = full_every_s
        self._overlap_s = overlap_s
        self._since: float | None = None  # where the next incremental rescan starts (epoch seconds)
        self._next_full = 0.0  # time.monotonic() of the next full scan
        self._snapshot = Snapshot()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str = ""  # the last scan's failure, shown on the queue page until a scan succeeds
        self.last_changed = 0  # cases the last incremental rescan read

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def rescan(self) -> Snapshot:
        """The next scan: every case (the first one, then every ``full_every_s``) or those changed since the last."""
        began = time.time()
        if self._changed is None or self._since is None or time.monotonic() >= self._next_full:
            snapshot = self.refresh()
            self._next_full = time.monotonic() + self._full_every_s
        else:
            snapshot = self._update(self._changed, self._since, began + self._overlap_s)
        self._since = began - self._overlap_s
        return snapshot

    def refresh(self) -> Snapshot:
        snapshot = self._build()
        with self._lock:
            self._snapshot = snapshot
        self._settled()
        return snapshot

    def _update(self, changed: Callable[[float, float], list[Episode]], since: float, until: float) -> Snapshot:
        started = time.monotonic()
        cases = changed(since, until)
        with self._lock:
            snapshot = self._snapshot.merged(cases, time.time(), time.monotonic() - started)
            self._snapshot = snapshot
        self.last_changed = len(cases)
        self._settled()
        return snapshot

    def _settled(self) -> None:
        # Hundreds of thousands of objects that live until the next scan: out of the cyclic collector's sight
        # (they hold no cycles; reference counting frees the previous snapshot), so its full collections,
        # which run in whichever thread allocates, do not walk them while a page is being answered.
        gc.freeze()
        self.error = ""
        self._ready.set()

    def changed(self, episode: Episode) -> None:
        """A case this console just changed: replaces it in the snapshot (the next scan would too, later)."""
        with self._lock:
            old = self._snapshot
            self._snapshot = old.merged([episode], old.scanned_at, old.scan_s)

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
                scan_s = self.rescan().scan_s
            except Exception as exc:  # a Bigtable hiccup: keep the last snapshot, say so, try again
                log.warning("case queue scan failed: %s", exc)
                self.error = f"the last scan of the cases failed ({exc}); showing the previous one"
                self._ready.set()
                scan_s = self._refresh_s
            self._stop.wait(max(self._refresh_s, 2 * scan_s))
