"""The feedback metrics (stream.label_metrics, stream.label_scan): counts of the label window, the gauges, a
failing scan. The child process the job runs the scans in is tested on the real emulator
(tests/integration/test_labels_store.py)."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from cases.records import Case, Decision
from stream.label_metrics import LabelMetrics, pause_after
from stream.label_scan import ScanProcess, ScanResult, count_labels, scan
from stream.rules import TX_ANOMALY

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def case(tx: str, days_ago: float) -> Case:
    return Case(tx, "c", "m", NOW - timedelta(days=days_ago), 1.0, 0.9, 0.5, 1, (TX_ANOMALY,))


def decided(verdict: str, minute: int) -> Decision:
    return Decision(verdict, "", "ann", NOW + timedelta(minutes=minute))


class FakeStore:
    def __init__(self, cases_in_window: int, fail: bool = False) -> None:
        self.cases_in_window = cases_in_window
        self.fail = fail
        self.closed = False
        self.scans = threading.Semaphore(0)

    def labelled(self) -> Any:
        self.scans.release()
        if self.fail:
            raise RuntimeError("Bigtable unavailable")
        return iter(
            [
                (case("a", 1), (decided("fraud", 2), decided("legit", 1))),  # latest: fraud
                (case("b", 2), (decided("legit", 1),)),
                (case("c", 3), (decided("legit", 1),)),
                (case("old", 30), (decided("fraud", 1),)),  # outside the 7-day window
                (None, (decided("fraud", 1),)),  # no record: no event time to place it
            ]
        )

    def count_since(self, start: datetime) -> int:
        assert start == NOW - timedelta(days=7)
        return self.cases_in_window

    def time_keys(self, start: datetime, end: datetime | None, limit: int) -> list[str]:
        return []  # no card-episode case in the window: none closed (tests/integration/test_case_episodes.py)

    def close(self) -> None:
        self.closed = True


class InProcess:
    """A scanner without the child process: scan() over a fake store."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __call__(self, start: datetime) -> ScanResult:
        return scan(self.store, start)

    def close(self) -> None:
        self.store.close()


def gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, name
    return value


def test_window_counts_and_gauges() -> None:
    store: Any = FakeStore(cases_in_window=10)
    counts = count_labels(store, NOW - timedelta(days=7))
    assert (counts.cases, counts.fraud, counts.legit) == (10, 1, 2)
    LabelMetrics(InProcess(store), window=timedelta(days=7), clock=lambda: NOW).refresh()
    assert gauge("fraudscore_labelled_cases", verdict="fraud") == 1
    assert gauge("fraudscore_labelled_cases", verdict="legit") == 2
    assert gauge("fraudscore_label_window_cases") == 10
    assert gauge("fraudscore_labelled_precision") == 1 / 3
    assert gauge("fraudscore_alerts_confirmed_ratio") == 0.1
    assert gauge("fraudscore_label_scan_timestamp_seconds") == NOW.timestamp()
    assert math.isnan(gauge("fraudscore_case_first_decision_seconds", quantile="0.5"))
    assert all(0 < gauge("fraudscore_label_scan_seconds", part=p) < 60 for p in ("labels", "closed"))
    assert gauge("fraudscore_label_scanner_rss_bytes") > 2**20  # this process's, as it scanned
    empty: Any = FakeStore(cases_in_window=0)
    empty.labelled = lambda: iter([])
    LabelMetrics(InProcess(empty), window=timedelta(days=7), clock=lambda: NOW).refresh()
    assert math.isnan(gauge("fraudscore_labelled_precision")) and math.isnan(gauge("fraudscore_alerts_confirmed_ratio"))


def test_a_failing_scan_is_retried_and_never_stops_the_thread() -> None:
    store = FakeStore(cases_in_window=10, fail=True)
    feedback = LabelMetrics(InProcess(store), interval_s=0.01, window=timedelta(days=7), clock=lambda: NOW).start()
    for _ in range(3):  # three scans, each failing
        assert store.scans.acquire(timeout=10)
    feedback.stop()
    assert store.closed


def test_a_slow_refresh_spaces_the_next_out_to_a_tenth_of_the_time() -> None:
    assert pause_after(2.0, 60.0) == 58.0  # the rest of the interval
    assert pause_after(30.0, 60.0) == 270.0  # 30 s of every 300 s: a tenth
    assert pause_after(0.0, 60.0) == 60.0


def slow_store() -> Any:
    """A store that takes a minute to open: a scan in flight when the job stops (run in the child)."""
    time.sleep(60)


def test_stopping_the_job_ends_a_scan_in_flight_in_the_child_process() -> None:
    scanner = ScanProcess(slow_store)
    feedback = LabelMetrics(scanner, interval_s=60, clock=lambda: NOW).start()
    deadline = time.monotonic() + 30
    while scanner.pid is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the child is spawned (the scan is in flight)
    child = scanner.pid
    assert child is not None
    began = time.monotonic()
    feedback.stop()
    assert time.monotonic() - began < 10  # not the minute the scan would take
    assert scanner.pid is None and not Path(f"/proc/{child}").exists()  # ended and reaped
