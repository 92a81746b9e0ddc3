"""The feedback metrics (stream.label_metrics): counts of the label window, the gauges, a failing scan."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from cases.records import Case, Decision
from stream.label_metrics import LabelMetrics, count_labels, pause_after
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


def gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, name
    return value


def test_window_counts_and_gauges() -> None:
    store: Any = FakeStore(cases_in_window=10)
    counts = count_labels(store, NOW - timedelta(days=7))
    assert (counts.cases, counts.fraud, counts.legit) == (10, 1, 2)
    LabelMetrics(lambda: store, window=timedelta(days=7), clock=lambda: NOW).refresh(store)
    assert gauge("fraudscore_labelled_cases", verdict="fraud") == 1
    assert gauge("fraudscore_labelled_cases", verdict="legit") == 2
    assert gauge("fraudscore_label_window_cases") == 10
    assert gauge("fraudscore_labelled_precision") == 1 / 3
    assert gauge("fraudscore_alerts_confirmed_ratio") == 0.1
    assert gauge("fraudscore_label_scan_timestamp_seconds") == NOW.timestamp()
    assert math.isnan(gauge("fraudscore_case_first_decision_seconds", quantile="0.5"))
    assert all(0 < gauge("fraudscore_label_scan_seconds", part=p) < 60 for p in ("labels", "closed"))
    empty: Any = FakeStore(cases_in_window=0)
    empty.labelled = lambda: iter([])
    LabelMetrics(lambda: empty, window=timedelta(days=7), clock=lambda: NOW).refresh(empty)
    assert math.isnan(gauge("fraudscore_labelled_precision")) and math.isnan(gauge("fraudscore_alerts_confirmed_ratio"))


def test_a_failing_scan_is_retried_and_never_stops_the_thread() -> None:
    store = FakeStore(cases_in_window=10, fail=True)
    feedback = LabelMetrics(lambda: store, interval_s=0.01, window=timedelta(days=7), clock=lambda: NOW).start()  # type: ignore[arg-type,return-value]
    for _ in range(3):  # three scans, each failing
        assert store.scans.acquire(timeout=10)
    feedback.stop()
    assert store.closed


def test_a_slow_refresh_spaces_the_next_out_to_a_tenth_of_the_time() -> None:
    assert pause_after(2.0, 60.0) == 58.0  # the rest of the interval
    assert pause_after(30.0, 60.0) == 270.0  # 30 s of every 300 s: a tenth
    assert pause_after(0.0, 60.0) == 60.0
