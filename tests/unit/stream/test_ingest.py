"""Pulled ingest (stream.ingest): parts, releases and acknowledgements; the Beam hook; clean start-up."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from stream import ingest
from stream.card_state import _CardStateFn
from stream.records import Release, ScoredTransaction
from stream.rules import RuleConfig
from stream.windows import WindowConfig


class FakeSubscriber:
    def __init__(self, n: int) -> None:
        self.queue = [SimpleNamespace(ack_id=f"ack-{i}", message=None) for i in range(n)]
        self.acked: list[str] = []
        self.extended: list[str] = []

    def pull(self, request: dict[str, Any], timeout: float) -> Any:
        batch, self.queue = self.queue[: request["max_messages"]], self.queue[request["max_messages"] :]
        return SimpleNamespace(received_messages=batch)

    def acknowledge(self, request: dict[str, Any], timeout: float) -> None:
        self.acked.extend(request["ack_ids"])

    def modify_ack_deadline(self, request: dict[str, Any], timeout: float) -> None:
        self.extended.extend(request["ack_ids"])


def test_a_message_is_acknowledged_when_its_last_owed_part_is_released() -> None:
    sub = FakeSubscriber(4)
    tracker = ingest.AckTracker("projects/p/subscriptions/s", sub)
    assert [m.ack_id for m in tracker.pull(10)] == ["ack-0", "ack-1", "ack-2", "ack-3"]
    assert sub.extended == ["ack-0", "ack-1", "ack-2", "ack-3"]  # the in-flight deadline is set at once
    tracker.owe(["ack-0", "ack-2"], {"card"})
    tracker.owe(["ack-1"], {"card", "tx-anomaly-case"})  # an anomalous transaction
    tracker.owe(["ack-3"], set())  # owes no sink anything: acknowledged at once
    tracker.owe(["ack-1"], {"sample"})  # told once: a second telling changes nothing
    tracker.release("card", ["ack-0", "ack-1"])
    tracker.release("card", ["ack-1"])  # a part is released once: this does not stand for the case's part
    tracker.flush()  # acknowledgements leave in batches (the background thread flushes every 0.1 s)
    assert sub.acked == ["ack-3", "ack-0"]
    assert tracker.in_flight() == 2
    tracker.release("tx-anomaly-case", ["ack-1"])
    tracker.release("card", ["ack-2", "unknown"])
    tracker.flush()
    assert sub.acked == ["ack-3", "ack-0", "ack-1", "ack-2"]
    assert tracker.wait_idle(0.1) and tracker.acknowledged == 4


def test_a_release_before_the_message_was_told_what_it_owes_is_an_error() -> None:
    sub = FakeSubscriber(2)
    tracker = ingest.AckTracker("projects/p/subscriptions/s", sub)
    tracker.pull(2)
    tracker.owe(["ack-0"], {"card"})
    with pytest.raises(ingest.ReleasedTooEarly, match=r"part 'card' released for 1 message\(s\) .*ack-1"):
        tracker.release("card", ["ack-0", "ack-1"])
    tracker.flush()
    assert sub.acked == ["ack-0"] and tracker.in_flight() == 1  # the held one stays held


def test_carry_hands_ack_ids_across_inference_once() -> None:
    tracker = ingest.AckTracker("projects/p/subscriptions/s", FakeSubscriber(0))
    tracker.carry("tx-1", "a")
    tracker.carry("tx-1", "b")  # a duplicate in flight
    assert tracker.take("tx-1") == ("a", "b")
    assert tracker.take("tx-1") == ()


def test_stopping_pulls_nothing_and_waits_for_in_flight() -> None:
    tracker = ingest.AckTracker("projects/p/subscriptions/s", FakeSubscriber(2))
    tracker.pull(1)
    tracker.stop_pulling()
    assert tracker.pull(10) == []
    assert not tracker.wait_idle(0.2)
    tracker.owe(["ack-0"], {"dead-letter"})
    tracker.release("dead-letter", ["ack-0"])
    assert tracker.wait_idle(2.0)


def _scored(tx: str, ack_ids: tuple[str, ...]) -> ScoredTransaction:
    return ScoredTransaction(tx, "card", "m", 1000.0, 10.0, 0.1, False, (), 0, "m", 1, 1.0, ack_ids)


class _State:
    def __init__(self) -> None:
        self.value: Any = None

    def read(self) -> Any:
        return self.value

    def write(self, value: Any) -> None:
        self.value = value

    def set(self, _: Any) -> None:
        pass


def test_card_state_releases_after_its_cases_or_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[tuple[str, ...]] = []
    monkeypatch.setattr(ingest, "release", lambda part, ids: released.append((part, *ids)))
    fn = _CardStateFn(WindowConfig(), RuleConfig(velocity_min_count=2))
    state, timer = _State(), _State()
    assert list(fn.process(("card", _scored("t1", ("a1",))), state, timer)) == []
    assert released == [("card", "a1")]  # no case from its arrival: nothing to wait for
    out = list(fn.process(("card", _scored("t2", ("a2",))), state, timer))
    assert [type(o).__name__ for o in out] == ["Case", "Case", "Release"] and out[-1] == Release(("a2",), "card")
    assert list(fn.process(("card", _scored("t2", ("a3",))), state, timer)) == []  # a redelivery
    assert released == [("card", "a1"), ("card", "a3")]


@pytest.mark.parametrize("aggregation", ["state", "windows"])
def test_building_the_streaming_job_logs_no_warnings(aggregation: str, caplog: pytest.LogCaptureFixture) -> None:
    from stream.pipeline import StreamConfig, build

    options = PipelineOptions(["--project=fraud-local"])
    options.view_as(StandardOptions).streaming = True
    with caplog.at_level(logging.WARNING):
        build(
            beam.Pipeline(options=options),
            StreamConfig(model_base="/nonexistent", card_aggregation=aggregation, ingest="pull"),
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "deterministic" in w or "yield and return" in w], warnings


def test_the_puller_thread_hands_out_bundles_by_size_or_age_and_after_a_stop() -> None:
    sub = FakeSubscriber(30)
    tracker = ingest.AckTracker("projects/p/subscriptions/s", sub)
    tracker.start_puller()
    # 30 pulled, fewer than the minimum: none until the oldest has waited the linger time.
    assert tracker.take_pulled(100, min_messages=50, linger_s=60.0, wait_s=0.2) == []
    assert len(tracker.take_pulled(100, min_messages=50, linger_s=0.0, wait_s=1.0)) == 30
    sub.queue = [SimpleNamespace(ack_id=f"late-{i}", message=None) for i in range(5)]
    assert len(tracker.take_pulled(3, min_messages=3, linger_s=60.0, wait_s=2.0)) == 3
    tracker.stop_pulling()
    # Pulled before the stop: still handed out, since a graceful stop waits for them.
    assert [m.ack_id for m in tracker.take_pulled(10, min_messages=1, wait_s=1.0)] == ["late-3", "late-4"]
    assert tracker.in_flight() == 35
