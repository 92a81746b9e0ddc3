"""The scans behind the analysts' feedback gauges, and the child process the stream job runs them in.

A refresh of the feedback gauges (:mod:`stream.label_metrics`) reads the decided cases of a trailing window
from the decision index (:mod:`cases.decision_index`, one range scan) and counts the window's cases (a
keys-only scan of the time index). Until the index, a refresh scanned the whole case table for labels and
read the window's cases in full to find the closed ones: 15-67 s of wall time per refresh with 5,000 to
21,000 cases in the window (issue 21's 60-minute soak), all of it holding the job's interpreter lock while
the same interpreter scored transactions; every minute whose alert p99 passed 1 s was a minute of a refresh.

Whatever a refresh costs, it does not belong in the scoring interpreter: :class:`ScanProcess` runs the scans
in one child process of their own, at a lower CPU priority (``NICENESS``), which builds its own
:class:`~cases.store.CaseStore` (and backfills the index on its first scan) and returns plain counts
(:class:`ScanResult`); the job's thread only sets the gauges. The child is spawned, not forked: a fork of a
process running gRPC and Beam threads is not safe.

This module is what the child imports, so it stays clear of the job's modules (Beam, the metrics registry).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

from cases import decision_index
from cases.decision_index import IndexedCase

if TYPE_CHECKING:
    from cases.store import CaseStore

# Below the job (0): when both want a core, the scorer gets about nine tenths of it (the kernel's weights for
# nice 0 and 10 are 1024 and 110). A scan that starves on a saturated machine makes the gauges older, which
# the LabelMetricsStale alert reports; it never delays an alert.
NICENESS = 10


@dataclass(frozen=True)
class LabelCounts:
    cases: int
    fraud: int
    legit: int


@dataclass(frozen=True)
class ScanResult:
    """One refresh's findings, plain values only (they cross the process boundary pickled)."""

    counts: LabelCounts
    closed_by_reason: dict[str, int]
    decision_seconds: list[float]
    decisions_s: float  # wall seconds of the decision index's scan
    count_s: float  # and of the window's count
    scanner_rss_bytes: float  # the resident memory of the process that scanned, as it finished


def label_counts(decided: Iterable[IndexedCase], cases: int) -> LabelCounts:
    """The window's cases and how many of them analysts labelled fraud / legit (each case by its latest label)."""
    verdicts = [d.verdict for d in decided]
    return LabelCounts(cases, verdicts.count("fraud"), verdicts.count("legit"))


def closed_cases(decided: Iterable[IndexedCase]) -> tuple[dict[str, int], list[float]]:
    """The closed cases by their first reason code, and each one's seconds from opening to its close (an
    analyst's first decision closes a case, so this is the time to first decision)."""
    closed: Counter[str] = Counter()
    seconds = []
    for d in decided:
        if d.closed_ms is not None:
            closed[d.reason] += 1
            seconds.append(max(d.closed_ms - d.opened_ms, 0) / 1000)
    return dict(closed), seconds


class WindowCount:
    """The window's case count (:meth:`CaseStore.count_since`), with settled hours counted once.

    A keys-only count of a week of cases reads every key of the week, each minute. Cases are written as their
    transactions arrive, so an hour that ended ``SETTLED`` ago is complete: its count is kept, and a refresh
    counts only the partial hour at the window's start, the recent hours, and one kept hour again (the one
    counted longest ago, in turn), which catches a case written long after its opening time (a backlog
    replayed after an outage) within one pass over the window's hours (168 refreshes for a week).
    """

    SETTLED = timedelta(hours=1)

    def __init__(
        self,
        count: Callable[[datetime, datetime | None], int],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._count = count
        self._clock = clock
        self._hours: dict[datetime, tuple[int, int]] = {}  # hour -> (cases, the refresh that counted it)
        self._refreshes = 0

    def __call__(self, start: datetime) -> int:
        self._refreshes += 1
        first = _hour_ceil(start)
        settled = _hour_floor(self._clock() - self.SETTLED)
        if settled <= first:
            return self._count(start, None)
        self._hours = {h: kept for h, kept in self._hours.items() if h >= first}
        hours = [first + timedelta(hours=i) for i in range(int((settled - first) / timedelta(hours=1)))]
        stale = min(self._hours, key=lambda h: self._hours[h][1], default=None)
        for hour in hours:
            if hour not in self._hours or hour == stale:
                self._hours[hour] = (self._count(hour, hour + timedelta(hours=1)), self._refreshes)
        settled_cases = sum(self._hours[h][0] for h in hours)
        head = self._count(start, first) if start < first else 0
        return head + settled_cases + self._count(settled, None)


def _hour_floor(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(when: datetime) -> datetime:
    floor = _hour_floor(when)
    return floor if floor == when else floor + timedelta(hours=1)


def scan(store: CaseStore, start: datetime, count: Callable[[datetime], int] | None = None) -> ScanResult:
    """Everything a refresh of the feedback gauges needs about the cases opened since ``start``: one range scan
    of the decision index (:mod:`cases.decision_index`) and a keys-only count of the window's time index
    (``count``: a :class:`WindowCount` over the store's, which the child process keeps between scans)."""
    started = time.perf_counter()
    decided = list(decision_index.read_since(store, start))
    read = time.perf_counter()
    cases = count(start) if count is not None else store.count_since(start)
    counted = time.perf_counter()
    by_reason, seconds = closed_cases(decided)
    return ScanResult(label_counts(decided, cases), by_reason, seconds, read - started, counted - read, rss_bytes())


def rss_bytes() -> float:
    """This process's resident memory now (Linux's /proc, as prometheus-client's process collector reads it).

    Not ``getrusage``'s peak: a spawned child's peak can include its parent's from before the exec."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


class ScanFailed(RuntimeError):
    """A scan that raised in the child; the message is the child's error."""


class ScanProcess:
    """Runs :func:`scan` in one long-lived, niced child process; a call blocks until the child answers.

    ``store_factory`` is called in the child (so it must pickle: a module-level function or a
    ``functools.partial`` of one). The child is started on the first call and again after it died; it exits
    when :meth:`close` ends it, or by itself within a second or two of the job's end (killed included), a
    scan in flight included.
    """

    def __init__(self, store_factory: Callable[[], CaseStore], niceness: int = NICENESS) -> None:
        self._store_factory = store_factory
        self._niceness = niceness
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._calling = threading.Lock()  # held by a call in flight: close() forgets the pipe after it

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def __call__(self, start: datetime) -> ScanResult:
        with self._calling:
            conn = self._started()
            try:
                conn.send(start)
                answer = conn.recv()
            except (EOFError, OSError) as exc:  # the child died (killed, out of memory) or close() ended it
                self._forget()
                raise ScanFailed(f"the label-scan process ended: {exc!r}") from exc
        if isinstance(answer, str):
            raise ScanFailed(answer)
        assert isinstance(answer, ScanResult)
        return answer

    def close(self) -> None:
        """Ends the child now, a scan in flight included (a call waiting on it raises ScanFailed)."""
        process = self._process
        if process is not None:
            process.terminate()  # a call waiting on it sees EOF and lets go of the lock
            process.join(timeout=10)
        with self._calling:
            self._forget()

    def _started(self) -> Connection:
        if self._process is None or not self._process.is_alive() or self._conn is None:
            self._forget()
            ctx = multiprocessing.get_context("spawn")
            ours, theirs = ctx.Pipe()
            self._process = ctx.Process(
                target=_serve, args=(theirs, self._store_factory, self._niceness), name="label-scan", daemon=True
            )
            self._process.start()
            theirs.close()  # the child holds its end: when it exits, our recv() sees EOF instead of hanging
            self._conn = ours
        return self._conn

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._process = None, None


def _serve(conn: Connection, store_factory: Callable[[], CaseStore], niceness: int) -> None:
    """The child: one scan per ``start`` received, until the job closes its end of the pipe or goes away."""
    os.nice(niceness)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the job stops us
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    store = None
    count = None
    try:
        while True:
            try:
                start = conn.recv()
            except EOFError:
                return  # the job is gone
            try:
                if store is None:
                    store = _opened(store_factory)
                    count = WindowCount(store.count_since)
                answer: ScanResult | str = scan(store, start, count)
            except Exception as exc:  # sent back as text: the job logs it and retries at the next interval
                answer = f"{type(exc).__name__}: {exc}"
            try:
                conn.send(answer)
            except OSError:
                return  # the job went away during the scan
    finally:
        if store is not None:
            store.close()


def _exit_with(parent: int) -> None:
    """Ends the child once the job is gone, a scan in flight included: a scan against an unreachable Bigtable
    retries for minutes, and the pipe's end-of-file is only seen between scans."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _opened(store_factory: Callable[[], CaseStore]) -> CaseStore:
    """A store whose decision index holds the cases decided before it existed (backfilled once per table)."""
    from cases.casebook import Casebook

    store = store_factory()
    try:
        Casebook(store).backfill_index()
    except BaseException:
        store.close()
        raise
    return store
