"""The console's incremental rescans over the Bigtable emulator: after the first full scan only changed cases are read.

The queue runs as ``fraudscore console`` runs it: its scans in the spawned child (:class:`console.queue.ProcessScan`)
on its own tables. The first cases carry event times two years ahead (as the benchmark's do) and the later one
two days back: the rescan finds changed rows by the write-time cells, not by the members' event-time ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cases.casebook import Casebook
from cases.records import Case
from cases.store import CaseStore
from console.queue import ProcessScan, Queue
from fraudscore.config import Resources
from stream.rules import TX_ANOMALY
from tests.support import open_cases

pytestmark = pytest.mark.integration

OVERLAP_S = 1.0
FUTURE = datetime.now(UTC) + timedelta(days=730)
PAST = datetime.now(UTC) - timedelta(days=2)


def flagged(n: int, when: datetime) -> Case:
    return Case(f"tx-{n}", f"card-{n}", f"m-{n}", when, 10.0 + n, 2.0 + n / 10, 1.0, 1, (TX_ANOMALY,))


@pytest.fixture
def scan(unique_resources: Resources) -> Iterator[ProcessScan]:
    scan = ProcessScan(unique_resources)
    yield scan
    scan.close()


def settle() -> None:
    """Past the overlap: what was written before is outside the next incremental rescan's window."""
    time.sleep(OVERLAP_S + 0.2)


def test_an_incremental_rescan_reads_only_the_cases_changed_since_the_last(
    unique_resources: Resources, scan: ProcessScan
) -> None:
    with CaseStore(unique_resources) as store:
        open_cases(store, [flagged(i, FUTURE + timedelta(minutes=i)) for i in range(5)])
        settle()
        queue = Queue(scan, changed=scan.changed_between, full_every_s=3600, overlap_s=OVERLAP_S)
        assert queue.snapshot.counts == {}
        assert queue.rescan().counts["open"] == 5  # the first scan reads every case

        settle()
        queue.rescan()
        assert queue.last_changed == 0  # nothing written: nothing read (the future event times are not "changed")

        settle()
        new = open_cases(store, [flagged(99, PAST)])["tx-99"]
        snapshot = queue.rescan()
        assert queue.last_changed == 1
        assert new.episode_id in [e.case_id for e in snapshot.open_cases]
        assert snapshot.counts["open"] == 6

        settle()
        Casebook(store).label(new.episode_id, True, "stolen card", "ann")
        snapshot = queue.rescan()
        assert queue.last_changed == 1
        assert new.episode_id not in [e.case_id for e in snapshot.open_cases]
        assert snapshot.counts == {"all": 6, "open": 5, "closed": 1, "fraud": 1, "legit": 0}
        (decided,) = [e for e in snapshot.cases if e.case_id == new.episode_id]
        assert decided.decision is not None and decided.decision.note == "stolen card"


def test_a_full_rescan_still_runs_every_full_every_s(unique_resources: Resources, scan: ProcessScan) -> None:
    """The backstop: with ``full_every_s`` 0 every rescan reads every case (a deleted row would leave the queue)."""
    with CaseStore(unique_resources) as store:
        open_cases(store, [flagged(i, FUTURE) for i in range(3)])
        queue = Queue(scan, changed=scan.changed_between, full_every_s=0.0, overlap_s=OVERLAP_S)
        first = queue.rescan()
        settle()
        second = queue.rescan()
        assert second.counts["open"] == 3 and second.scanned_at > first.scanned_at
        assert queue.last_changed == 0  # no incremental rescan ran
