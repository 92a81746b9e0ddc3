"""The scans behind the analysts' feedback gauges, and the child process the stream job runs them in.

A refresh of the feedback gauges (:mod:`stream.label_metrics`) reads every labelled case and the closed cases
of a trailing window from Bigtable and decodes them in Python: 15-67 s of wall time per refresh with 5,000
to 21,000 cases in the window (issue 21's 60-minute soak), all of it holding the job's interpreter lock while
the same interpreter scores transactions. Every minute whose alert p99 passed 1 s in that soak was a minute
of a refresh. :class:`ScanProcess` therefore runs the scans in one child process of their own, at a lower
CPU priority (``NICENESS``), which builds its own :class:`~cases.store.CaseStore` and returns the plain
counts (:class:`ScanResult`); the job's thread only sets the gauges. The child is spawned, not forked: a
fork of a process running gRPC and Beam threads is not safe.

This module is what the child imports, so it stays clear of the job's modules (Beam, the metrics registry).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cases.records import Decision
    from cases.store import CaseStore

_LOG = logging.getLogger(__name__)
CLOSED_SCAN = 20_000  # the closed cases are looked for among at most this many cases of the window
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
    labels_s: float  # wall seconds of the labelled-cases part
    closed_s: float  # and of the closed-cases part
    scanner_rss_bytes: float  # the resident memory of the process that scanned, as it finished


def count_labels(store: CaseStore, start: datetime) -> LabelCounts:
    """Cases opened at or after ``start``, and how many of them analysts labelled fraud / legit.

    Labels sit on the member rows (one per flagged transaction); a case counts once, by its latest label
    (old-style cases are their one transaction).
    """
    latest: dict[str, Decision] = {}
    for case, decisions in store.labelled():
        if case is None or case.event_time < start:
            continue
        held = latest.get(case.case_id)
        if held is None or decisions[0].decided_at > held.decided_at:  # the latest label wins
            latest[case.case_id] = decisions[0]
    fraud = sum(d.verdict == "fraud" for d in latest.values())
    legit = sum(d.verdict == "legit" for d in latest.values())
    return LabelCounts(store.count_since(start), fraud, legit)


def closed_cases(store: CaseStore, start: datetime, scan: int = CLOSED_SCAN) -> tuple[dict[str, int], list[float]]:
    """Of the cases opened since ``start``: how many are closed, by opening reason, and each one's seconds
    from opening to its close (an analyst's first decision closes a case, so this is time to first decision)."""
    from cases.casebook import Casebook

    closed: Counter[str] = Counter()
    seconds = []
    for episode in Casebook(store).list_since(start, limit=scan, scan=scan, status="closed"):
        if episode.closed_ms is None:
            continue  # an old-style case with a label: it has no close
        closed[episode.reasons[0] if episode.reasons else "UNKNOWN"] += 1
        seconds.append(max(episode.closed_ms - episode.opened_ms, 0) / 1000)
    return dict(closed), seconds


def scan(store: CaseStore, start: datetime) -> ScanResult:
    """Everything a refresh of the feedback gauges needs about the cases opened since ``start``."""
    started = time.perf_counter()
    counts = count_labels(store, start)
    counted = time.perf_counter()
    by_reason, seconds = closed_cases(store, start)
    return ScanResult(counts, by_reason, seconds, counted - started, time.perf_counter() - counted, rss_bytes())


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
    try:
        while True:
            try:
                start = conn.recv()
            except EOFError:
                return  # the job is gone
            try:
                store = store or store_factory()
                answer: ScanResult | str = scan(store, start)
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
