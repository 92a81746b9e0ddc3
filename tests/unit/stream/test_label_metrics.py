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

from cases.decision_index import IndexedCase
from stream.label_metrics import LabelMetrics, pause_after
from stream.label_scan import ScanProcess, ScanResult, WindowCount, closed_cases, label_counts

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DECIDED = [
    IndexedCase("a", NOW_MS - 3_600_000, "fraud", NOW_MS - 3_000_000, "TX_ANOMALY"),  # closed after 600 s
    IndexedCase("b", NOW_MS - 3_600_000, "legit", NOW_MS - 3_540_000, "CARD_BURST"),  # after 60 s
    IndexedCase("c", NOW_MS - 3_600_000, "legit", None, ""),  # labelled, then reopened
    IndexedCase("d", NOW_MS - 3_600_000, None, NOW_MS - 3_590_000, "TX_ANOMALY"),  # closed unlabelled, 10 s
]


class FakeScanner:
    """What the child process would answer (the scan itself is tested on the emulator)."""

    def __init__(self, cases_in_window: int, fail: bool = False) -> None:
        self.cases_in_window = cases_in_window
        self.fail = fail
        self.closed = False
        self.scans = threading.Semaphore(0)
        self.starts: list[datetime] = []

    def __call__(self, start: datetime) -> ScanResult:
        self.scans.release()
        self.starts.append(start)
        if self.fail:
            raise RuntimeError("Bigtable unavailable")
        by_reason, seconds = closed_cases(DECIDED if self.cases_in_window else [])
        counts = label_counts(DECIDED if self.cases_in_window else [], self.cases_in_window)
        return ScanResult(counts, by_reason, seconds, 0.25, 0.5, 100 * 2**20)

    def close(self) -> None:
        self.closed = True


def gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, name
    return value


def test_the_window_counts_each_decided_case_by_its_latest_verdict_and_close() -> None:
    counts = label_counts(DECIDED, cases=10)
    assert (counts.cases, counts.fraud, counts.legit) == (10, 1, 2)  # "d" is closed without a label
    by_reason, seconds = closed_cases(DECIDED)
    assert by_reason == {"TX_ANOMALY": 2, "CARD_BURST": 1}  # "c" was reopened: not closed
    assert sorted(seconds) == [10.0, 60.0, 600.0]


def test_a_refresh_sets_the_gauges_from_the_scanners_findings() -> None:
    scanner = FakeScanner(cases_in_window=10)
    LabelMetrics(scanner, window=timedelta(days=7), clock=lambda: NOW).refresh()
    assert scanner.starts == [NOW - timedelta(days=7)]
    assert gauge("fraudscore_labelled_cases", verdict="fraud") == 1
    assert gauge("fraudscore_labelled_cases", verdict="legit") == 2
    assert gauge("fraudscore_label_window_cases") == 10
    assert gauge("fraudscore_labelled_precision") == 1 / 3
    assert gauge("fraudscore_alerts_confirmed_ratio") == 0.1
    assert gauge("fraudscore_label_scan_timestamp_seconds") == NOW.timestamp()
    assert gauge("fraudscore_cases_closed", reason="TX_ANOMALY") == 2
    assert gauge("fraudscore_case_first_decision_seconds", quantile="0.5") == 60.0
    assert gauge("fraudscore_label_scan_seconds", part="decisions") == 0.25
    assert gauge("fraudscore_label_scan_seconds", part="count") == 0.5
    assert gauge("fraudscore_label_scanner_rss_bytes") == 100 * 2**20
    LabelMetrics(FakeScanner(cases_in_window=0), window=timedelta(days=7), clock=lambda: NOW).refresh()
    assert math.isnan(gauge("fraudscore_labelled_precision")) and math.isnan(gauge("fraudscore_alerts_confirmed_ratio"))
    assert gauge("fraudscore_cases_closed", reason="TX_ANOMALY") == 0  # none closed in the window any more
    assert math.isnan(gauge("fraudscore_case_first_decision_seconds", quantile="0.5"))


def test_a_failing_scan_is_retried_and_never_stops_the_thread() -> None:
    scanner = FakeScanner(cases_in_window=10, fail=True)
    feedback = LabelMetrics(scanner, interval_s=0.01, window=timedelta(days=7), clock=lambda: NOW).start()
    for _ in range(3):  # three scans, each failing
        assert scanner.scans.acquire(timeout=10)
    feedback.stop()
    assert scanner.closed


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


class Opened:
    """Cases' opening times, counted as CaseStore.count_since counts them, keeping the keys each count read."""

    def __init__(self, times: list[datetime]) -> None:
        self.times = times
        self.read = 0

    def __call__(self, start: datetime, end: datetime | None) -> int:
        n = sum(start <= t and (end is None or t < end) for t in self.times)
        self.read += n
        return n


def test_the_window_count_counts_settled_hours_once_and_matches_a_full_count() -> None:
    window = timedelta(days=2)
    now = [NOW]
    opened = Opened([NOW - window + timedelta(minutes=7 * i) for i in range(411)])  # every 7 minutes up to NOW
    count = WindowCount(opened, clock=lambda: now[0])
    reads = []
    for minute in range(0, 180, 3):  # three hours of refreshes while cases keep opening
        now[0] = NOW + timedelta(minutes=minute)
        opened.times.append(now[0])
        opened.read = 0
        assert count(now[0] - window) == sum(t >= now[0] - window for t in opened.times)
        reads.append(opened.read)
    assert reads[0] == 412  # the first refresh counts the whole window (with the case opened at NOW)
    assert max(reads[1:]) < 60  # then the partial hours, the recent ones and one settled hour again


def test_a_case_written_long_after_its_opening_is_counted_within_one_pass_over_the_hours() -> None:
    window = timedelta(hours=10)
    now = [NOW]
    opened = Opened([NOW - timedelta(hours=h, minutes=30) for h in range(1, 10)])
    count = WindowCount(opened, clock=lambda: now[0])
    assert count(now[0] - window) == 9
    opened.times.append(NOW - timedelta(hours=3, minutes=40))  # a backlog replayed: a settled hour grows
    seen = []
    for minute in range(1, 11):
        now[0] = NOW + timedelta(seconds=minute)  # the same hours, refreshed
        seen.append(count(now[0] - window))
    assert seen[0] == 9 and seen[-1] == 10  # kept at first, recounted in turn (8 settled hours, one a refresh)
