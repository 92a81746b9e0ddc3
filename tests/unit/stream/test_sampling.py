"""The durable traffic sample (stream.sampling, stream.sample_sink): which transactions, and their
acknowledgement only once their sample row is written."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from fraudscore.config import Resources
from stream import ingest
from stream.ack_parts import AckPlan
from stream.case_sink import DeliverCases
from stream.inference import _with_event_time_and_acks
from stream.pipeline import add_app_arguments, config_from_args
from stream.records import ScoredTransaction, float32_bytes
from stream.sample_sink import WriteSample, _WriteSampleFn
from stream.sampling import DEFAULT_SAMPLE_RATE, sample_point, sampled
from tests.unit.stream.test_ingest import FakeSubscriber


def scored(tx: str, ack_ids: tuple[str, ...] = (), *, anomaly: bool = False) -> ScoredTransaction:
    return ScoredTransaction(
        tx, "card", "m", 1000.0, 10.0, 0.1, anomaly, (), 0, "m", 1, 1.0, ack_ids, raw=float32_bytes((1.0,))
    )


def test_sample_is_deterministic_and_close_to_its_rate() -> None:
    ids = [f"tx-{i:06d}" for i in range(100_000)]
    chosen = [t for t in ids if sampled(t, 0.01)]
    assert chosen == [t for t in ids if sampled(t, 0.01)]  # a redelivery decides the same
    assert 900 <= len(chosen) <= 1100  # 1% of 100,000 within ~3 standard deviations
    assert set(chosen) <= {t for t in ids if sampled(t, 0.05)}  # nested: a higher rate keeps these
    assert not any(sampled(t, 0.0) for t in ids[:1000]) and all(sampled(t, 1.0) for t in ids[:1000])
    assert all(0.0 <= sample_point(t) < 1.0 for t in ids[:1000])


def test_sample_rate_flag_default_and_range() -> None:
    parser = argparse.ArgumentParser()
    add_app_arguments(parser)
    assert config_from_args(parser.parse_args(["--model-base", "m"])).sample_rate == DEFAULT_SAMPLE_RATE
    assert config_from_args(parser.parse_args(["--model-base", "m", "--sample-rate", "0"])).sample_rate == 0
    with pytest.raises(ValueError, match=r"--sample-rate must be within 0\.\.1"):
        config_from_args(parser.parse_args(["--model-base", "m", "--sample-rate", "1.5"]))


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.rows: list[tuple[str, float]] = []
        self.fail = fail

    def write_sample(self, batch: list[ScoredTransaction], rate: float) -> int:
        if self.fail:
            raise RuntimeError("Bigtable unavailable")
        self.rows.extend((s.transaction_id, rate) for s in batch)
        return len(batch)


def _plan(rate: float) -> AckPlan:
    """The streaming job's case and sample sinks' declarations."""
    return AckPlan.of([DeliverCases(Resources()), WriteSample(Resources(), rate)])


def _sampled_and_not(rate: float) -> tuple[str, str]:
    ids = [f"tx-{i}" for i in range(1000)]
    return next(t for t in ids if sampled(t, rate)), next(t for t in ids if not sampled(t, rate))


def test_a_sampled_message_is_acknowledged_only_after_its_sample_row(monkeypatch: pytest.MonkeyPatch) -> None:
    sub = FakeSubscriber(2)
    tracker = ingest.AckTracker("projects/p/subscriptions/s", sub)
    monkeypatch.setattr(ingest, "_TRACKER", tracker)
    tracker.pull(2)
    yes, no = _sampled_and_not(0.3)
    for tx, ack in ((yes, "ack-0"), (no, "ack-1")):
        tracker.carry(tx, ack)
    # Scoring tells what is owed (the sample's part too) before anything downstream can release the card part.
    s_yes = _with_event_time_and_acks(scored(yes), _plan(0.3)).value
    s_no = _with_event_time_and_acks(scored(no), _plan(0.3)).value
    tracker.release("card", s_yes.ack_ids + s_no.ack_ids)  # the card step's part of both
    tracker.flush()
    assert sub.acked == ["ack-1"]  # the sampled one waits for its row

    store: Any = FakeStore(fail=True)
    fn = _WriteSampleFn(Resources(), 8, 500, 0.3, store_factory=lambda: store)
    fn.setup()
    fn.start_bundle()
    fn.process(s_yes)
    with pytest.raises(RuntimeError):
        fn.finish_bundle()  # a failed write releases nothing: the runner retries, Pub/Sub redelivers
    tracker.flush()
    assert sub.acked == ["ack-1"]
    store.fail = False
    fn.start_bundle()
    fn.process(s_yes)
    fn.finish_bundle()
    tracker.flush()
    assert store.rows == [(yes, 0.3)] and sub.acked == ["ack-1", "ack-0"]


def test_anomalous_and_sampled_owes_three_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    sub = FakeSubscriber(1)
    tracker = ingest.AckTracker("projects/p/subscriptions/s", sub)
    monkeypatch.setattr(ingest, "_TRACKER", tracker)
    tracker.pull(1)
    yes, _ = _sampled_and_not(0.5)
    tracker.carry(yes, "ack-0")
    s = _with_event_time_and_acks(scored(yes, anomaly=True), _plan(0.5)).value
    for part in ("card", "tx-anomaly-case"):
        tracker.release(part, s.ack_ids)
        tracker.flush()
        assert sub.acked == []
    tracker.release("sample", s.ack_ids)  # the sample row
    tracker.flush()
    assert sub.acked == ["ack-0"]
