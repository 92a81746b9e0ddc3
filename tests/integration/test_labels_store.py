"""Labels and the traffic sample in the real Bigtable emulator: CaseStore.labelled's condition filter,
read_labels (latest wins, raw-less cases counted), write_sample/read_sample (idempotent rows), and the niced
child process the stream job scans the labels in (stream.label_scan.ScanProcess)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cases.casebook import Casebook
from cases.labels import NO_RAW, read_labels, read_sample
from cases.records import Case
from cases.store import CaseStore
from fraudscore.config import Resources
from stream.records import ScoredTransaction, float32_bytes
from stream.rules import TX_ANOMALY
from tests.integration.test_cases_store import StepClock

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)
FEATURES = ("V1", "V2", "Amount")


def make_case(i: int, raw: bool = True) -> Case:
    return Case(
        f"tx-{i}", f"card-{i % 3}", "m", T0 + timedelta(seconds=i), 5.0 + i, 0.9, 0.5, 2, (TX_ANOMALY,),
        raw_features=(float(i), -float(i), 5.0 + i) if raw else (), feature_names=FEATURES if raw else (),
    )  # fmt: skip


@pytest.fixture
def store(unique_resources: Resources) -> Iterator[CaseStore]:
    res = unique_resources
    with CaseStore(res, clock=StepClock()) as case_store:
        yield case_store


def test_labels_round_trip_through_bigtable(store: CaseStore) -> None:
    store.write([make_case(i) for i in range(6)] + [make_case(6, raw=False)])
    Casebook(store).label_transaction("tx-0", True, "", "ann")
    Casebook(store).label_transaction("tx-1", True, "", "ann")
    Casebook(store).label_transaction("tx-1", False, "second look", "bob")  # later: legit wins
    Casebook(store).label_transaction("tx-2", False, "", "ann")
    Casebook(store).label_transaction("tx-6", True, "", "ann")  # an old case without raw features
    labels = read_labels(store, FEATURES)
    assert labels.transaction_ids == ("tx-0", "tx-1", "tx-2")  # unlabelled tx-3..5 never read
    assert labels.labels.tolist() == [1, 0, 0] and labels.conflicting == 1
    assert labels.raw[1].tolist() == [1.0, -1.0, 6.0]
    assert labels.skipped == {NO_RAW: 1}
    # since: by the latest label's time (StepClock: one minute per label, from 2026-04-03 00:00)
    later = read_labels(store, FEATURES, since=datetime(2026, 4, 3, 0, 2, tzinfo=UTC))
    assert later.transaction_ids == ("tx-1", "tx-2")


def scored(i: int, when: datetime) -> ScoredTransaction:
    return ScoredTransaction(
        f"s-{i}", "card", "m", when.timestamp(), 1.0, 0.1, False, (), 0, "m", 2, 0.5,
        raw=float32_bytes((float(i), 0.5, 1.0)), feature_names=FEATURES,
    )  # fmt: skip


def test_sample_rows_are_idempotent_and_read_by_time(store: CaseStore) -> None:
    rows = [scored(i, T0 + timedelta(hours=i)) for i in range(5)]
    assert store.write_sample(rows, 0.25) == 5
    store.write_sample(rows[:2], 0.25)  # a redelivery rewrites the same rows
    raw, rate = read_sample(store, FEATURES)
    assert rate == 0.25 and sorted(raw[:, 0].tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0]
    recent, _ = read_sample(store, FEATURES, since=T0 + timedelta(hours=3))
    assert sorted(recent[:, 0].tolist()) == [3.0, 4.0]
    without, _ = read_sample(store, FEATURES, exclude={"s-0"})
    assert len(without) == 4
    record = next(iter(store.sample_records(T0 + timedelta(hours=4))))
    assert record["model_version"] == 2 and record["reconstruction_error"] == 0.1
    assert record["fraud_probability"] is None and record["raw_features"] == [4.0, 0.5, 1.0]


def test_feedback_counts_from_bigtable(store: CaseStore) -> None:
    """count_since (time-index keys only) and the label scan (the decision index) over the real emulator."""
    from stream.label_scan import scan

    store.write([make_case(i) for i in range(6)])
    Casebook(store).label_transaction("tx-4", True, "", "ann")
    Casebook(store).label_transaction("tx-5", False, "", "ann")
    Casebook(store).label_transaction("tx-1", True, "", "ann")  # before the window
    assert store.count_since(T0) == 6 and store.count_since(T0 + timedelta(seconds=4)) == 2
    counts = scan(store, T0 + timedelta(seconds=2)).counts
    assert (counts.cases, counts.fraud, counts.legit) == (4, 1, 1)


def test_sample_rows_of_old_traffic_outlive_the_age_gc(store: CaseStore, unique_resources: Resources) -> None:
    """The family's max-age GC counts from the write, not the event time: a replay of 2000's traffic stays.

    bttest runs its GC every 0.5-1.5 s once a column family was modified (its GC loop starts then): the
    row must still be there after 3 s (it went within 1.5 s when the cell time was the event time).
    """
    _start_bttest_gc(unique_resources)
    assert store.write_sample([scored(0, datetime(2000, 1, 1, tzinfo=UTC))], 0.5) == 1
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert len(read_sample(store, FEATURES)[0]) == 1
        time.sleep(0.2)


def _start_bttest_gc(res: Resources) -> None:
    """Re-applies the sample family's GC rule: bttest starts its GC loop on a column-family change."""
    from google.cloud import bigtable

    from fraudscore.resources import close_bigtable_client, gc_rule

    client = bigtable.Client(project=res.project, admin=True)
    try:
        (family,) = res.tables[res.sample_table]
        client.instance(res.bigtable_instance).table(res.sample_table).column_family(
            family.name, gc_rule(family)
        ).update()
    finally:
        close_bigtable_client(client)


def _nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])  # field 19: nice


def _gone(pid: int, within_s: float) -> bool:
    """Whether ``pid`` exited (or is a zombie nobody reaped) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_the_job_scans_labels_in_a_niced_child_process_that_finds_what_an_in_process_scan_finds(
    store: CaseStore, unique_resources: Resources
) -> None:
    from stream.label_scan import NICENESS, ScanProcess, scan

    store.write([make_case(i) for i in range(6)])
    Casebook(store).label_transaction("tx-4", True, "", "ann")
    Casebook(store).label_transaction("tx-5", False, "", "ann")
    start = T0 + timedelta(seconds=2)
    scanner = ScanProcess(functools.partial(CaseStore, unique_resources))
    try:
        found = scanner(start)
        here = scan(store, start)
        assert (found.counts, found.closed_by_reason, found.decision_seconds) == (
            here.counts, here.closed_by_reason, here.decision_seconds,
        )  # fmt: skip
        assert (found.counts.cases, found.counts.fraud, found.counts.legit) == (4, 1, 1)
        first = scanner.pid
        assert first is not None and first != os.getpid()
        assert _nice_of(first) == min(_nice_of(os.getpid()) + NICENESS, 19)  # 19: the lowest priority
        assert found.scanner_rss_bytes > 2**20
        os.kill(first, signal.SIGKILL)  # died between scans (out of memory, say): the next scan starts another
        deadline = time.monotonic() + 10
        while scanner.pid is not None and time.monotonic() < deadline:
            time.sleep(0.05)  # until it is reaped: /proc shows a zombie while its threads still exit
        assert scanner.pid is None
        assert scanner(start).counts == found.counts and scanner.pid not in (None, first)
    finally:
        scanner.close()
    assert scanner.pid is None


def test_a_scan_that_fails_in_the_child_is_reported_and_the_child_serves_the_next(unique_resources: Resources) -> None:
    from stream.label_scan import ScanFailed, ScanProcess

    scanner = ScanProcess(functools.partial(CaseStore, replace(unique_resources, cases_table="no-such-table")))
    try:
        with pytest.raises(ScanFailed, match=r"NotFound|no-such-table"):
            scanner(T0)
        pid = scanner.pid
        with pytest.raises(ScanFailed):
            scanner(T0)
        assert scanner.pid == pid is not None  # the same child: a failed scan does not end it
    finally:
        scanner.close()


SCANNING_JOB = """
import functools, sys, threading, time
from datetime import datetime
from cases.store import CaseStore
from fraudscore.config import Resources
from stream.label_scan import ScanProcess


def slow_store():
    time.sleep(600)  # a scan that would outlive the job (Bigtable unreachable, say)


if __name__ == "__main__":
    start = datetime.fromisoformat(sys.argv[2])
    scanner = ScanProcess(functools.partial(CaseStore, Resources(**eval(sys.argv[1]))))
    scanner(start)
    print(scanner.pid, flush=True)  # idle between scans
    slow = ScanProcess(slow_store)
    threading.Thread(target=slow, args=(start,), daemon=True).start()
    while slow.pid is None:
        time.sleep(0.05)
    print(slow.pid, flush=True)  # in a scan
    time.sleep(600)
"""


def test_a_killed_job_leaves_no_scanner_behind(unique_resources: Resources, tmp_path: Path) -> None:
    """kill -9 of the job: its scanners exit, idle or in a scan (they would otherwise scan for nobody)."""
    script = tmp_path / "job.py"
    script.write_text(SCANNING_JOB)
    job = subprocess.Popen(
        [sys.executable, str(script), repr(asdict(unique_resources)), T0.isoformat()],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert job.stdout is not None
        idle, scanning = int(job.stdout.readline()), int(job.stdout.readline())
        assert not _gone(idle, 0.5) and not _gone(scanning, 0.5)  # alive while the job is
        job.kill()
        job.wait(timeout=10)
        assert _gone(idle, 10) and _gone(scanning, 10)
    finally:
        job.kill()
        job.wait(timeout=10)
