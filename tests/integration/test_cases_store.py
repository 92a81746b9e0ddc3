"""The case store and its Beam sink against the real Bigtable emulator (bttest)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cases.casebook import Casebook
from cases.records import Case
from cases.store import FRAUD, LEGIT, CaseNotFound, CaseStore, bucket_of
from fraudscore.config import Resources
from fraudscore.resources import close_bigtable_client
from stream.rules import CARD_BURST, TX_ANOMALY

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)


def make_case(i: int, card: str, when: datetime, error: float = 0.9) -> Case:
    return Case(
        transaction_id=f"tx-{i}",
        card_id=card,
        merchant_id="m-7",
        event_time=when,
        amount=10.0 + i,
        reconstruction_error=error,
        threshold=0.5,
        model_version=3,
        reasons=(TX_ANOMALY, CARD_BURST) if i % 2 else (TX_ANOMALY,),
        top_features=(("V14", 0.4), ("V12", 0.2)),
        window_start=when - timedelta(minutes=10),
        window_end=when,
        window_stats={"count": 3.0, "anomalies": 2.0},
    )


class StepClock:
    """Decision times one minute apart, so label history is deterministic."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> datetime:
        return datetime(2026, 4, 3, tzinfo=UTC) + timedelta(minutes=next(self._ticks))


@pytest.fixture
def store(unique_resources: Resources) -> Iterator[CaseStore]:
    with CaseStore(unique_resources, clock=StepClock()) as case_store:
        yield case_store


def row_counts(resources: Resources) -> tuple[int, int, int]:
    """(case rows, case cells, index rows) read straight from Bigtable, bypassing the store."""
    from google.cloud import bigtable

    client = bigtable.Client(project=resources.project, admin=False)
    try:
        instance = client.instance(resources.bigtable_instance)
        case_rows = list(instance.table(resources.cases_table).read_rows())
        index_rows = list(instance.table(resources.cases_by_time_table).read_rows())
    finally:
        close_bigtable_client(client)
    cells = sum(len(cells) for r in case_rows for cells in r.cells["case"].values())
    return len(case_rows), cells, len(index_rows)


def test_writing_the_same_cases_twice_stores_each_once(store: CaseStore, unique_resources: Resources) -> None:
    cases = [make_case(i, f"card-{i % 3}", T0 + timedelta(seconds=7 * i)) for i in range(12)]
    assert store.write(cases) == 12
    assert store.write(cases) == 12  # a redelivery
    assert store.write(list(reversed(cases[:5]))) == 5
    # One row and one cell per case; two index rows per case (time index + id lookup).
    assert row_counts(unique_resources) == (12, 12, 24)
    assert store.get("tx-4").case == cases[4]


def test_list_by_card_is_newest_first_and_only_that_card(store: CaseStore) -> None:
    cases = [make_case(i, f"card-{i % 4}", T0 + timedelta(minutes=i)) for i in range(40)]
    store.write(reversed(cases))
    listed = store.list_by_card("card-2", limit=100)
    expected = sorted((c for c in cases if c.card_id == "card-2"), key=lambda c: c.event_time, reverse=True)
    assert [s.case for s in listed] == expected
    assert [s.case for s in store.list_by_card("card-2", limit=3)] == expected[:3]
    assert store.list_by_card("card-99", limit=10) == []
    # A card whose id extends another's shares no rows with it.
    store.write([make_case(100, "card-22", T0)])
    assert {s.case.card_id for s in store.list_by_card("card-2", limit=100)} == {"card-2"}


def test_list_since_merges_all_buckets_in_time_order(store: CaseStore) -> None:
    cases = [make_case(i, f"card-{i}", T0 + timedelta(seconds=30 * i)) for i in range(60)]
    store.write(cases)
    start, end = T0 + timedelta(seconds=300), T0 + timedelta(seconds=1200)
    listed = [s.case for s in store.list_since(start, end, limit=1000)]
    expected = [c for c in cases if start <= c.event_time < end]  # end is exclusive
    assert listed == expected
    assert len({bucket_of(c.transaction_id, store.buckets) for c in listed}) >= 4
    # A limit keeps the earliest cases of the range, whichever buckets they sit in.
    assert [s.case for s in store.list_since(start, end, limit=5)] == expected[:5]
    assert [s.case for s in store.list_since(T0 + timedelta(seconds=1770))] == cases[59:]


def test_label_stores_verdict_who_when_note_and_history(store: CaseStore) -> None:
    case = make_case(5, "card-1", T0)
    store.write([case])
    assert store.get("tx-5").decision is None
    first = Casebook(store).label_transaction("tx-5", True, "customer confirmed", "ann")
    second = Casebook(store).label_transaction("tx-5", False, "refund was legitimate", "bob")
    store.write([case])  # a redelivered case does not touch the decisions
    stored = store.get("tx-5")
    assert stored.decisions == (second, first)
    assert (second.verdict, second.analyst, second.note) == (LEGIT, "bob", "refund was legitimate")
    assert first.verdict == FRAUD and first.decided_at < second.decided_at
    assert store.list_by_card("card-1", limit=5)[0].decision == second


def test_unknown_transaction_is_not_found(store: CaseStore) -> None:
    with pytest.raises(CaseNotFound, match="tx-nope"):
        store.get("tx-nope")
    with pytest.raises(CaseNotFound):
        Casebook(store).label_transaction("tx-nope", True, "", "ann")


def test_write_cases_transform_writes_through_beam(store: CaseStore, unique_resources: Resources) -> None:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.test_pipeline import TestPipeline

    from stream.case_sink import WriteCases

    cases = [make_case(i, f"card-{i % 5}", T0 + timedelta(seconds=i)) for i in range(30)]
    pipeline = TestPipeline()
    _ = (
        pipeline
        | beam.Create(cases + cases[:10])  # duplicates, as a redelivery would bring
        | WriteCases(unique_resources, batch_size=8)
    )
    result: Any = pipeline.run()
    result.wait_until_finish()
    assert [s.case for s in store.list_since(T0, limit=100)] == cases
    assert row_counts(unique_resources)[0] == 30
    counters = result.metrics().query(MetricsFilter().with_namespace("fraudscore").with_name("cases_written"))
    assert sum(c.committed for c in counters["counters"]) == 40
