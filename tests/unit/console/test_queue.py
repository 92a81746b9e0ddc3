"""The console's queue and overview over plain episodes: order, filters, pages, counts, chart series."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from cases.episode_rows import Episode, Member
from cases.records import Decision
from console.app import _local
from console.overview import chart_svg, series
from console.queue import CHUNK, Queue, Snapshot, _packed, _unpacked, scan_snapshot, select

T0 = datetime(2030, 5, 1, 12, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)


def episode(
    n: int,
    *,
    error: float = 2.0,
    members: int = 1,
    amount: float = 10.0,
    reasons: tuple[str, ...] = ("TX_ANOMALY",),
    closed: bool = False,
    verdict: str = "",
) -> Episode:
    e = Episode(f"case-{n:016x}", f"card-{n}", MS0 + n * 60_000, f"k{n}")
    for i in range(members):
        e.members[f"tx{n}-{i}"] = Member(f"tx{n}-{i}", MS0 + n * 60_000 + i, error, 1.0, reasons, amount)
    if closed:
        e.closed_ms = MS0 + n * 60_000 + 1000
    if verdict:
        e.decisions = (Decision(verdict, "", "ann", T0 + timedelta(days=n % 3)),)
    return e


def test_open_cases_come_by_score_then_members_then_amount() -> None:
    cases = [
        episode(1, error=2.0),
        episode(2, error=9.0),
        episode(3, error=2.0, members=3),
        episode(4, error=2.0, amount=500.0),
        episode(5, error=50.0, closed=True, verdict="fraud"),
    ]
    snap = Snapshot.of(cases, 0.0, 0.0)
    assert [e.case_id for e in snap.open_cases] == [cases[i].case_id for i in (1, 2, 3, 0)]
    assert snap.counts == {"all": 5, "open": 4, "closed": 1, "fraud": 1, "legit": 0}


def test_select_filters_by_reason_and_card_and_pages() -> None:
    cases = [episode(i, reasons=("CARD_VELOCITY",) if i % 2 else ("TX_ANOMALY",)) for i in range(7)]
    snap = Snapshot.of(cases, 0.0, 0.0)
    velocity = select(snap, reason="CARD_VELOCITY", size=2)
    assert velocity.matching == 3 and velocity.pages == 2 and len(velocity.cases) == 2
    assert velocity.reasons == ("CARD_VELOCITY", "TX_ANOMALY")
    last = select(snap, reason="CARD_VELOCITY", size=2, page=99)  # past the end: the last page
    assert last.page == 2 and len(last.cases) == 1
    assert [e.card_id for e in select(snap, card="card-4").cases] == ["card-4"]
    assert select(snap, card="nobody").cases == () and select(snap, card="nobody").pages == 1
    with pytest.raises(ValueError, match="page size"):
        select(snap, size=0)


def test_a_decision_made_here_leaves_the_queue_at_once() -> None:
    cases = [episode(1), episode(2)]
    queue = Queue(lambda: scan_snapshot(lambda: cases))
    queue.refresh()
    closed = episode(1, closed=True, verdict="legit")
    queue.changed(closed)
    assert [e.case_id for e in queue.snapshot.open_cases] == [cases[1].case_id]
    assert queue.snapshot.counts["legit"] == 1


def test_overview_series_counts_openings_per_hour_and_precision_per_decision_day() -> None:
    cases = [episode(0, verdict="fraud"), episode(1, verdict="legit"), episode(3, verdict="fraud"), episode(70)]
    data = series(cases, hours=3, days=3)
    # The hours end at the newest opening (case 70: 13:10); cases 0..3 opened at 12:00-12:03.
    assert data.hours[-1] == T0 + timedelta(hours=1) and data.opened == (0, 3, 1)
    # Decided on day 0 (cases 0 and 3: fraud) and day 1 (case 1: legit).
    assert data.precision == (None, 1.0, 0.0) and data.labelled == (0, 2, 1)
    assert chart_svg(data).startswith("<svg")


def test_login_redirects_only_within_the_site() -> None:
    assert _local("/cases/case-1?x=1") == "/cases/case-1?x=1"
    for outside in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)", ""):
        assert _local(outside) == ""


def test_a_snapshot_crosses_the_process_boundary_in_chunks_unchanged() -> None:
    cases = [
        episode(i, closed=i % 3 == 0, reasons=("CARD_VELOCITY",) if i % 2 else ("TX_ANOMALY",))
        for i in range(2 * CHUNK + 7)
    ]
    snap = Snapshot.of(cases, 5.0, 1.5)
    head, chunks = _packed(snap)
    assert len(chunks) == 3 and head.cases == ()
    back = _unpacked((head, chunks))
    assert [e.case_id for e in back.cases] == [e.case_id for e in snap.cases]
    assert (
        back.open_reasons == snap.open_reasons and back.counts == snap.counts and back.all_reasons == snap.all_reasons
    )
    assert (back.scanned_at, back.scan_s) == (5.0, 1.5)


def test_an_incremental_rescan_merges_the_changed_cases_and_a_full_one_runs_every_full_every_s() -> None:
    cases = [episode(1), episode(2, error=9.0)]
    asked: list[tuple[float, float]] = []
    changed = [episode(1, error=20.0), episode(3)]  # one case moved up, one new

    def since(start: float, until: float) -> list[Episode]:
        asked.append((start, until))
        return changed

    queue = Queue(lambda: scan_snapshot(lambda: cases), changed=since, full_every_s=3600, overlap_s=5.0)
    began = time.time()
    queue.rescan()  # the first one reads everything
    assert asked == []
    snap = queue.rescan()
    ((start, until),) = asked
    assert began - 5.0 - 0.5 < start < began - 5.0 + 0.5 and until > start + 10.0
    assert [e.case_id for e in snap.open_cases] == [changed[0].case_id, cases[1].case_id, changed[1].case_id]
    assert snap.counts["all"] == 3 and queue.last_changed == 2
    backstop = Queue(lambda: scan_snapshot(lambda: cases), changed=since, full_every_s=0.0)
    backstop.rescan()
    backstop.rescan()
    assert len(asked) == 1  # every rescan a full one: the incremental source never asked


def test_merging_changed_cases_gives_what_a_full_sort_gives() -> None:
    cases = [episode(i, error=1.0 + (i * 37 % 11), members=1 + i % 3, closed=i % 5 == 0) for i in range(40)]
    snap = Snapshot.of(cases, 0.0, 0.0)
    changed = [
        episode(3, error=50.0),  # moves to the top
        episode(7, closed=True, verdict="fraud"),  # leaves the open cases
        episode(10, error=4.0, reasons=("CARD_BURST",)),  # a closed one reopened, with a new reason
        episode(99, members=5),  # new
    ]
    merged = snap.merged(changed, 1.0, 0.1)
    expected = Snapshot.of([*(e for e in cases if e.case_id not in {c.case_id for c in changed}), *changed], 1.0, 0.1)
    assert [e.case_id for e in merged.cases] == [e.case_id for e in expected.cases]
    assert merged.open_reasons == expected.open_reasons and merged.all_reasons == expected.all_reasons
    assert merged.counts == expected.counts and merged.scanned_at == 1.0
