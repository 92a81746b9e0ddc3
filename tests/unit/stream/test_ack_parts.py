"""The acknowledgement parts the durable sinks declare, the plan built from them, and the check that every sink of
the built job declares (stream.ack_parts)."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from fraudscore.config import Resources
from stream import ack_parts, ingest
from stream import pipeline as stream_pipeline
from stream.ack_parts import AckPlan, DurableSink, Part, UndeclaredSink, check_sinks, sinks_of
from stream.records import DeadLetter, ScoredTransaction
from stream.sampling import sampled
from stream.sinks import PublishAlerts
from tests.unit.stream.test_ingest import FakeSubscriber


def _scored(tx: str, *, anomaly: bool = False, ack_ids: tuple[str, ...] = ()) -> ScoredTransaction:
    return ScoredTransaction(tx, "card", "m", 1000.0, 10.0, 0.1, anomaly, (), 0, "m", 1, 1.0, ack_ids)


def _letter(ack_ids: tuple[str, ...] = ()) -> DeadLetter:
    return DeadLetter(b"{}", {}, "parse", "card_id", "missing", "missing_field", ack_ids)


def _streaming() -> beam.Pipeline:
    options = PipelineOptions(["--project=fraud-local"])
    options.view_as(StandardOptions).streaming = True
    return beam.Pipeline(options=options)


def _build(**config: object) -> tuple[beam.Pipeline, AckPlan]:
    p = _streaming()
    plan = stream_pipeline.build(p, stream_pipeline.StreamConfig(model_base="/nonexistent", ingest="pull", **config))
    return p, plan


def _ids(rate: float) -> tuple[str, str]:
    ids = [f"tx-{i}" for i in range(1000)]
    return next(t for t in ids if sampled(t, rate)), next(t for t in ids if not sampled(t, rate))


@pytest.mark.parametrize("aggregation", ["state", "windows"])
def test_what_a_message_owes_comes_from_the_sinks_the_job_was_built_with(aggregation: str) -> None:
    p, plan = _build(card_aggregation=aggregation, sample_rate=0.2)
    assert [label for label, _ in sinks_of(p)] == ["DeliverCases", "WriteSample", "PublishDeadLetters"]
    assert {id(t) for _, t in sinks_of(p)} == {id(s) for s in plan.sinks}
    yes, no = _ids(0.2)
    assert plan.owed(_scored(no)) == {"card"}
    assert plan.owed(_scored(no, anomaly=True)) == {"card", "tx-anomaly-case"}
    assert plan.owed(_scored(yes, anomaly=True)) == {"card", "tx-anomaly-case", "sample"}
    assert plan.owed(_letter()) == {"dead-letter"}


def test_without_the_sample_sink_nothing_owes_it() -> None:
    p, plan = _build(sample_rate=0.0)
    assert [label for label, _ in sinks_of(p)] == ["DeliverCases", "PublishDeadLetters"]
    yes, _ = _ids(0.2)
    assert plan.owed(_scored(yes)) == {"card"}


class _UndeclaredWrite(beam.PTransform):  # type: ignore[misc]
    """A new durable sink written as a plain PTransform: nothing would hold its messages' acknowledgement."""

    def __init__(self, *_: object) -> None:
        super().__init__()

    def expand(self, scored: beam.PCollection) -> beam.PCollection:
        return scored | "Write" >> beam.Map(lambda s: s)


def test_a_sink_added_to_the_job_without_a_declaration_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    flag_cases = stream_pipeline.FlagCases

    class FlagCasesAndWrite(flag_cases):  # type: ignore[misc,valid-type]
        """The case step with a new sink hung off its input, deep inside the job."""

        def expand(self, scored: beam.PCollection) -> beam.PCollection:
            _ = scored | "WriteScores" >> _UndeclaredWrite()
            return super().expand(scored)

    monkeypatch.setattr(stream_pipeline, "FlagCases", FlagCasesAndWrite)
    with pytest.raises(UndeclaredSink, match=r"FlagCases \(FlagCasesAndWrite\) is a sink that declares no"):
        _build(sample_rate=0.2)


def test_a_sink_in_the_plan_must_be_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_pipeline, "WriteSample", _UndeclaredWrite)
    with pytest.raises(UndeclaredSink, match=r"_UndeclaredWrite is a sink that declares no acknowledgement parts"):
        _build(sample_rate=0.2)


def test_a_declared_sink_the_plan_was_not_derived_from_fails_the_check() -> None:
    p = _streaming()
    _ = p | beam.Create([1]) | "Alerts" >> PublishAlerts(Resources())
    with pytest.raises(UndeclaredSink, match=r"Alerts \(PublishAlerts\) is not among the sinks the plan"):
        check_sinks(p, AckPlan.of([]))
    check_sinks(p, AckPlan.of([t for _, t in sinks_of(p)]))


def test_a_sink_must_say_what_it_releases_and_a_part_has_one_sink() -> None:
    class Silent(DurableSink):
        def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
            return pcoll

    class Sampling(DurableSink):
        def releases(self) -> tuple[Part, ...]:
            return (Part(ack_parts.SAMPLE, ScoredTransaction),)

    with pytest.raises(NotImplementedError, match="Silent declares no acknowledgement parts"):
        AckPlan.of([Silent()])
    with pytest.raises(ValueError, match="sample declared by more than one sink"):
        AckPlan.of([Sampling(), Sampling()])


def test_owe_tells_the_tracker_the_parts_and_the_sinks_release_them(monkeypatch: pytest.MonkeyPatch) -> None:
    sub = FakeSubscriber(2)
    tracker = ingest.AckTracker("projects/p/subscriptions/s", sub)
    monkeypatch.setattr(ingest, "_TRACKER", tracker)
    tracker.pull(2)
    _, plan = _build(sample_rate=0.0)
    letter, scored = _letter(("ack-0",)), _scored("tx-1", anomaly=True, ack_ids=("ack-1",))
    assert plan.owe(letter) is letter and plan.owe(scored) is scored
    tracker.release("card", ["ack-1"])
    tracker.flush()
    assert sub.acked == []
    tracker.release("dead-letter", ["ack-0"])
    tracker.release("tx-anomaly-case", ["ack-1"])
    tracker.flush()
    assert sub.acked == ["ack-0", "ack-1"]


def test_deliver_cases_releases_only_the_parts_it_declares() -> None:
    from stream.case_sink import DeliverCases
    from stream.records import Release

    sink = DeliverCases(Resources())
    assert [p.name for p in sink.releases()] == ["card", "tx-anomaly-case"]
    fn = sink._fn
    fn.start_bundle()
    fn.process(Release(("ack-0",), "card"))
    with pytest.raises(ValueError, match="not 'sample'"):
        fn.process(Release(("ack-1",), "sample"))


def test_the_plan_travels_to_the_workers_without_its_sinks() -> None:
    import pickle

    _, plan = _build(sample_rate=0.2)
    copy = pickle.loads(pickle.dumps(plan))
    yes, _ = _ids(0.2)
    assert copy.sinks == () and [p.name for p in copy.parts] == [p.name for p in plan.parts]
    assert copy.owed(_scored(yes, anomaly=True)) == {"card", "tx-anomaly-case", "sample"}
