"""Analysts' feedback as metrics: labelled-case precision and the share of alerts confirmed, over time.

``fraudscore cases label`` is a command, not a service, so nothing scrapes it. The stream job (which
serves Prometheus metrics already) runs :class:`LabelMetrics`: every ``interval_s`` it counts, over the
cases whose event time is in the trailing ``window_s``, the cases (time-index keys) and the labelled ones
by their latest verdict (one server-filtered scan of the labelled rows, :meth:`CaseStore.labelled`), and
sets the gauges of :func:`stream.metrics.label_counts`:

- ``fraudscore_labelled_precision`` = fraud / (fraud + legit) among the labelled cases: the precision of
  what analysts reviewed;
- ``fraudscore_alerts_confirmed_ratio`` = fraud / all cases of the window: confirmed alerts, which grows as
  analysts work through the queue (unlabelled cases count as not confirmed).

Grafana plots both over time (deploy/grafana/dashboards/fraud.json). A failed scan is logged and retried
at the next interval; it never stops the job (``fraudscore_label_scan_timestamp_seconds`` goes stale,
which the LabelMetricsStale alert reports).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from stream import metrics

if TYPE_CHECKING:
    from cases.records import Decision
    from cases.store import CaseStore

_LOG = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 60.0
DEFAULT_WINDOW_HOURS = 7 * 24.0
# The share of the job's time the scans may take at most: they run in its process, and their cost grows with
# the cases of the window (bench/label_scan.py), so a slow scan spaces the next out rather than eat the job.
MAX_SCAN_SHARE = 0.1
CLOSED_SCAN = 20_000  # the closed cases are looked for among at most this many cases of the window


@dataclass(frozen=True)
class LabelCounts:
    cases: int
    fraud: int
    legit: int


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


def pause_after(took_s: float, interval_s: float) -> float:
    """Seconds to wait after a refresh of ``took_s``: the rest of the interval, and long enough that refreshes
    take at most MAX_SCAN_SHARE of the time (a window grown slow makes the gauges older, which
    ``fraudscore_label_scan_seconds`` explains and the LabelMetricsStale alert reports past 10 minutes)."""
    return max(interval_s - took_s, took_s * (1 / MAX_SCAN_SHARE - 1), 0.0)


class LabelMetrics:
    """A daemon thread refreshing the label gauges every ``interval_s`` from ``store_factory()``'s store."""

    def __init__(
        self,
        store_factory: Callable[[], CaseStore],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        window: timedelta = timedelta(hours=DEFAULT_WINDOW_HOURS),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store_factory = store_factory
        self._interval_s = interval_s
        self._window = window
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="label-metrics", daemon=True)

    def start(self) -> LabelMetrics:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval_s + 5)

    def refresh(self, store: CaseStore) -> LabelCounts:
        now = self._clock()
        started = time.perf_counter()
        counts = count_labels(store, now - self._window)
        counted = time.perf_counter()
        metrics.closed_cases(*closed_cases(store, now - self._window))
        metrics.LABEL_SCAN_SECONDS.labels("labels").set(counted - started)
        metrics.LABEL_SCAN_SECONDS.labels("closed").set(time.perf_counter() - counted)
        metrics.label_counts(counts.cases, counts.fraud, counts.legit, now.timestamp())
        return counts

    def _run(self) -> None:
        store = None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                store = store or self._store_factory()
                self.refresh(store)
            except Exception as exc:  # a scan failure must never stop the job: logged, retried next time
                _LOG.warning("label metrics not refreshed: %s", exc)
            self._stop.wait(pause_after(time.monotonic() - started, self._interval_s))
        if store is not None:
            store.close()
