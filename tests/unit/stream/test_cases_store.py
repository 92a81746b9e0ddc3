"""Row-key design of the case store and the WriteCases Beam sink (with a fake store)."""

from __future__ import annotations

import string
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from cases.records import Case
from cases.store import (
    bucket_of,
    card_prefix,
    case_key,
    decisions_of,
    epoch_ms,
    id_key,
    time_key,
)
from fraudscore.config import Resources
from stream.rules import TX_ANOMALY

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_case(tx: str, card: str, when: datetime) -> Case:
    return Case(
        transaction_id=tx,
        card_id=card,
        merchant_id="m-1",
        event_time=when,
        amount=10.0,
        reconstruction_error=0.9,
        threshold=0.5,
        model_version=1,
        reasons=(TX_ANOMALY,),
    )


def test_card_keys_sort_newest_first() -> None:
    cases = [make_case(f"tx-{i}", "card-7", T0 + timedelta(seconds=i * 37)) for i in range(50)]
    by_key = sorted(cases, key=case_key)
    assert [c.event_time for c in by_key] == sorted((c.event_time for c in cases), reverse=True)
    assert all(case_key(c).startswith(card_prefix("card-7")) for c in cases)


def test_same_case_same_key_and_different_transactions_differ() -> None:
    a = make_case("tx-1", "card-1", T0)
    assert case_key(a) == case_key(make_case("tx-1", "card-1", T0))
    assert case_key(a) != case_key(make_case("tx-2", "card-1", T0))
    assert time_key(a, 8) == time_key(make_case("tx-1", "card-1", T0), 8)


def test_sequential_cards_spread_over_key_space() -> None:
    prefixes = {card_prefix(f"card-{i:05d}")[:1] for i in range(200)}
    # 200 sequential card ids land under most of the 16 leading hex digits, not one range.
    assert len(prefixes) >= 14


def test_time_index_buckets_spread_evenly() -> None:
    counts = Counter(bucket_of(f"row-{i}", 8) for i in range(8000))
    assert set(counts) == set(range(8))
    assert max(counts.values()) < 1.15 * 1000 and min(counts.values()) > 0.85 * 1000


def test_time_keys_ascend_within_a_bucket() -> None:
    cases = [make_case(f"tx-{i}", "c", T0 + timedelta(milliseconds=i * 999)) for i in range(300)]
    for bucket in range(8):
        in_bucket = [c for c in cases if time_key(c, 8).startswith(f"{bucket:02d}#")]
        assert sorted(in_bucket, key=lambda c: time_key(c, 8)) == sorted(in_bucket, key=lambda c: c.event_time)


def test_separator_in_ids_cannot_reach_other_cards() -> None:
    tricky = make_case("tx#1", "card#1", T0)
    key = case_key(tricky)
    assert key.count("#") == 3  # prefix, card, reverse time, tx: separators only
    assert "card%231" in key and "tx%231" in key
    assert not key.startswith(card_prefix("card"))
    assert id_key("a#b") != id_key("a%23b")


def test_event_time_must_be_aware_and_in_range() -> None:
    with pytest.raises(ValueError, match="timezone"):
        epoch_ms(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="outside"):
        epoch_ms(datetime(1960, 1, 1, tzinfo=UTC))
    assert epoch_ms(T0 + timedelta(microseconds=1500)) == epoch_ms(T0) + 1


def _cell(value: str, when: datetime) -> SimpleNamespace:
    return SimpleNamespace(value=value.encode(), timestamp=when)


def test_decisions_grouped_by_timestamp_newest_first() -> None:
    t1, t2 = T0, T0 + timedelta(minutes=5)
    row = SimpleNamespace(
        cells={
            "decision": {
                b"verdict": [_cell("legit", t2), _cell("fraud", t1)],
                b"note": [_cell("refund", t2), _cell("", t1)],
                b"analyst": [_cell("bob", t2), _cell("ann", t1)],
            }
        }
    )
    decisions = decisions_of(row)
    assert [(d.verdict, d.analyst, d.note, d.decided_at) for d in decisions] == [
        ("legit", "bob", "refund", t2),
        ("fraud", "ann", "", t1),
    ]


class FakeStore:
    """Picklable stand-in for CaseStore; records batches in a class-level list (Beam pickles DoFns)."""

    batches: ClassVar[list[list[str]]] = []
    closed: ClassVar[int] = 0

    def write(self, cases: list[Case]) -> int:
        FakeStore.batches.append([c.transaction_id for c in cases])
        return len(cases)

    def close(self) -> None:
        FakeStore.closed += 1


def test_write_cases_batches_every_case_and_counts_metrics() -> None:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.test_pipeline import TestPipeline

    from stream.case_sink import WriteCases

    FakeStore.batches, FakeStore.closed = [], 0
    cases = [make_case(f"tx-{i}", f"card-{i % 4}", T0 + timedelta(seconds=i)) for i in range(23)]
    pipeline = TestPipeline()
    _ = pipeline | beam.Create(cases, reshuffle=False) | WriteCases(Resources(), batch_size=10, store_factory=FakeStore)
    result: Any = pipeline.run()
    result.wait_until_finish()

    written = sorted(tx for batch in FakeStore.batches for tx in batch)
    assert written == sorted(c.transaction_id for c in cases)
    assert max(len(b) for b in FakeStore.batches) <= 10
    assert FakeStore.closed >= 1
    counters = result.metrics().query(MetricsFilter().with_namespace("fraudscore").with_name("cases_written"))
    assert sum(c.committed for c in counters["counters"]) == 23


def test_key_alphabet_is_printable() -> None:
    key = case_key(make_case("tx-1", "card-1", T0))
    assert set(key) <= set(string.ascii_letters + string.digits + "#-%")
