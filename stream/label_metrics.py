"""Analysts' feedback as metrics: labelled-case precision and the share of alerts confirmed, over time.

``fraudscore cases label`` is a command, not a service, so nothing scrapes it. The stream job (which
serves Prometheus metrics already) runs :class:`LabelMetrics`: every ``interval_s`` it counts, over the
cases opened in the trailing ``window_s``, the cases (time-index keys) and the labelled and closed ones
(the decision index, :mod:`cases.decision_index`), and sets the gauges of :func:`stream.metrics.label_counts`
and :func:`stream.metrics.closed_cases`. The scans run in a niced child process
(:class:`stream.label_scan.ScanProcess`): in the job's interpreter they delayed alerts by seconds.

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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from stream import metrics
from stream.label_scan import ScanResult

_LOG = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 60.0
DEFAULT_WINDOW_HOURS = 7 * 24.0
# The share of the time the scans may take at most: their cost grows with the cases of the window
# (bench/label_scan.py) and lands on Bigtable (and, on this machine, on the cores the job shares), so a slow
# scan spaces the next out.
MAX_SCAN_SHARE = 0.1


class Scanner(Protocol):
    """What a refresh reads: :class:`stream.label_scan.ScanProcess` in the job, a plain function in tests."""

    def __call__(self, start: datetime) -> ScanResult: ...

    def close(self) -> None: ...


def pause_after(took_s: float, interval_s: float) -> float:
    """Seconds to wait after a refresh of ``took_s``: the rest of the interval, and long enough that refreshes
    take at most MAX_SCAN_SHARE of the time (a window grown slow makes the gauges older, which
    ``fraudscore_label_scan_seconds`` explains and the LabelMetricsStale alert reports past 10 minutes)."""
    return max(interval_s - took_s, took_s * (1 / MAX_SCAN_SHARE - 1), 0.0)


class LabelMetrics:
    """A daemon thread refreshing the label gauges every ``interval_s`` from ``scanner``'s findings."""

    def __init__(
        self,
        scanner: Scanner,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        window: timedelta = timedelta(hours=DEFAULT_WINDOW_HOURS),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._scanner = scanner
        self._interval_s = interval_s
        self._window = window
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="label-metrics", daemon=True)

    def start(self) -> LabelMetrics:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the thread and ends the scanner, a scan in flight included (the job is shutting down)."""
        self._stop.set()
        self._scanner.close()
        self._thread.join(timeout=self._interval_s + 5)

    def refresh(self) -> ScanResult:
        now = self._clock()
        found = self._scanner(now - self._window)
        metrics.closed_cases(found.closed_by_reason, found.decision_seconds)
        metrics.LABEL_SCAN_SECONDS.labels("decisions").set(found.decisions_s)
        metrics.LABEL_SCAN_SECONDS.labels("count").set(found.count_s)
        metrics.LABEL_SCANNER_RSS.set(found.scanner_rss_bytes)
        metrics.label_counts(found.counts.cases, found.counts.fraud, found.counts.legit, now.timestamp())
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.refresh()
            except Exception as exc:  # a scan failure must never stop the job: logged, retried next time
                if not self._stop.is_set():
                    _LOG.warning("label metrics not refreshed: %s", exc)
            self._stop.wait(pause_after(time.monotonic() - started, self._interval_s))
