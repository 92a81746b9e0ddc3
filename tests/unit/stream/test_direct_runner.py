"""The indexed DirectRunner timer scan: the same timers as Beam's scan, asking only the keys that are due."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct.watermark_manager import _TransformWatermarks
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.trigger import InMemoryUnmergedState
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from fraudscore import internals
from stream import direct_runner
from stream.direct_runner import TrackedStates


class _CountingState(InMemoryUnmergedState):  # type: ignore[misc]
    """A keyed state that counts how often the scan asks it for timers."""

    asked = 0

    def get_timers(self, *args: Any, **kwargs: Any) -> Any:
        _CountingState.asked += 1
        return super().get_timers(*args, **kwargs)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> Timestamp:
        return Timestamp.of(self.now)


def _state(rng: random.Random, watermark_timers: int, realtime: bool) -> _CountingState:
    state = _CountingState()
    window = GlobalWindow()
    for i in range(watermark_timers):
        state.set_timer(window, f"t{i}", TimeDomain.WATERMARK, Timestamp.of(rng.randint(0, 1000)))
    if realtime:
        state.set_timer(window, "rt", TimeDomain.REAL_TIME, Timestamp.of(rng.randint(0, 1000)))
    return state


def _scan(tw: _TransformWatermarks, indexed: bool) -> tuple[set[tuple[Any, ...]], bool]:
    extract = direct_runner._indexed_extract_transform_timers if indexed else _beams_scan()
    fired, realtime = extract(tw)
    return {(f.encoded_key, f.name, f.time_domain, f.timestamp) for f in fired}, realtime


def _beams_scan() -> Any:
    internals.install_local_runner()
    return internals.original("timer-scan-index")


def test_indexed_scan_reports_what_beams_scan_reports_as_states_change() -> None:
    rng = random.Random(7)
    clock = _Clock(500.0)
    tracked, plain = TrackedStates(), dict[bytes, Any]()
    indexed_tw = _TransformWatermarks(clock, tracked, "step")
    beams_tw = _TransformWatermarks(clock, plain, "step")
    for round_ in range(6):
        # Bundles commit: some keys get a new state object (timers set, fired and cleared), some are new.
        for _ in range(300):
            key = f"k{rng.randint(0, 500)}".encode()
            state = _state(rng, rng.randint(0, 3), rng.random() < 0.05)
            tracked[key] = plain[key] = state
        watermark = Timestamp.of(100 * round_ + rng.randint(0, 50))
        indexed_tw._input_watermark = beams_tw._input_watermark = watermark
        clock.now = 100.0 * round_
        indexed = _scan(indexed_tw, indexed=True)
        assert indexed == _scan(beams_tw, indexed=False)
        assert indexed[0], "the scan should find due timers in every round"


def test_indexed_scan_asks_only_the_keys_that_are_due() -> None:
    rng = random.Random(3)
    tracked = TrackedStates()
    tw = _TransformWatermarks(_Clock(0.0), tracked, "step")
    for i in range(5_000):
        state = _CountingState()
        # One key in a hundred has its timer due at watermark 10; the rest are due later.
        due = i % 100 == 0
        state.set_timer(GlobalWindow(), "cleanup", TimeDomain.WATERMARK, Timestamp.of(5 if due else 50 + rng.random()))
        tracked[f"card-{i}".encode()] = state
    tw._input_watermark = Timestamp.of(10)
    _CountingState.asked = 0
    fired, realtime = direct_runner._indexed_extract_transform_timers(tw)
    assert len(fired) == 50 and not realtime
    assert _CountingState.asked == 50  # Beam's own scan asks all 5,000 keys, at every scan
    # Until the bundle firing them commits, the same timers are reported again (as Beam does).
    assert len(direct_runner._indexed_extract_transform_timers(tw)[0]) == 50
    for i in range(0, 5_000, 100):  # that bundle commits: the keys' new states have no timer
        tracked[f"card-{i}".encode()] = _CountingState()
    assert direct_runner._indexed_extract_transform_timers(tw)[0] == []


_COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())
_FLUSH = userstate.TimerSpec("flush", userstate.TimeDomain.WATERMARK)
_COUNT_PARAM = beam.DoFn.StateParam(_COUNT)
_FLUSH_PARAM = beam.DoFn.TimerParam(_FLUSH)


class _CountUntilWatermark(beam.DoFn):  # type: ignore[misc]
    """Counts each key's elements; emits (key, count) when the watermark passes the key's first element + 10 s."""

    def process(
        self,
        element: tuple[str, int],
        timestamp: Any = beam.DoFn.TimestampParam,
        count: Any = _COUNT_PARAM,
        flush: Any = _FLUSH_PARAM,
    ) -> None:
        seen = count.read() or 0
        if not seen:
            flush.set(timestamp + 10)
        count.write(seen + 1)

    @userstate.on_timer(_FLUSH)
    def on_flush(self, key: Any = beam.DoFn.KeyParam, count: Any = _COUNT_PARAM) -> Iterator[tuple[str, int]]:
        yield key, count.read()
        count.clear()


def test_a_streaming_pipeline_fires_every_key_timer_once_with_the_index() -> None:
    internals.install_local_runner()
    stream = BeamTestStream().advance_watermark_to(0)
    for t in range(0, 40, 2):  # three cards each time, each card in one or two of them
        stream = stream.add_elements([TimestampedValue((f"card-{k}", t), t) for k in range(t, t + 3)])
    stream = stream.advance_watermark_to(100).advance_watermark_to_infinity()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with BeamTestPipeline(options=options) as p:
        out = p | stream | beam.ParDo(_CountUntilWatermark())
        times = range(0, 40, 2)
        expected = [(f"card-{k}", sum(1 for t in times if t <= k < t + 3)) for k in range(41)]
        assert_that(out, equal_to(expected))


class _Holder:
    def process(self, element: Any, count: Any = _COUNT_PARAM) -> None:  # a bound method with a state param
        pass


def test_dofn_specs_are_computed_once_per_class_except_for_bound_methods(monkeypatch: Any) -> None:
    from apache_beam.transforms import userstate as beam_userstate

    internals.install_local_runner()
    calls: list[Any] = []
    original = internals.original("dofn-specs-per-class")

    def counted(dofn: Any) -> Any:
        calls.append(dofn)
        return original(dofn)

    monkeypatch.setitem(internals._ORIGINALS, "dofn-specs-per-class", counted)
    direct_runner._SPECS.clear()
    stateful = [_CountUntilWatermark() for _ in range(3)]
    assert all(beam_userstate.is_stateful_dofn(d) for d in stateful)  # through the patched module function
    assert beam_userstate.get_dofn_specs(stateful[0]) == ({_COUNT}, {_FLUSH})
    assert len(calls) == 1  # once for the class
    plain = beam.Map(lambda x: x).dofn
    assert beam_userstate.get_dofn_specs(plain) == (set(), set())
    assert beam_userstate.get_dofn_specs(beam.Map(len).dofn) == (set(), set()) and len(calls) == 2
    # A wrapped bound method may carry its own state params: computed for each instance.
    from apache_beam.transforms.core import CallableWrapperDoFn

    bound = CallableWrapperDoFn(_Holder().process)
    assert beam_userstate.get_dofn_specs(bound) == ({_COUNT}, set())
    assert beam_userstate.get_dofn_specs(plain) == (set(), set())  # the class's entry is untouched
    assert len(calls) == 3


def test_a_state_copy_is_equal_and_independent_without_deepcopy_of_timers() -> None:
    from apache_beam.transforms.trigger import _ListStateTag

    internals.install_local_runner()
    state = InMemoryUnmergedState()
    window, tag = GlobalWindow(), _ListStateTag("values")
    state.set_timer(window, "cleanup", TimeDomain.WATERMARK, Timestamp.of(5))
    state.set_timer(window, "rt", TimeDomain.REAL_TIME, Timestamp.of(7))
    state.add_state(window, tag, b"one")
    clone = state.copy()
    assert clone.timers == state.timers and clone.get_state(window, tag) == [b"one"]
    clone.clear_timer(window, "cleanup", TimeDomain.WATERMARK)
    clone.set_timer(window, "other", TimeDomain.WATERMARK, Timestamp.of(9))
    clone.add_state(window, tag, b"two")
    assert state.timers[window] == {
        ("cleanup", TimeDomain.WATERMARK, ""): Timestamp.of(5),
        ("rt", TimeDomain.REAL_TIME, ""): Timestamp.of(7),
    }
    assert state.get_state(window, tag) == [b"one"] and clone.get_state(window, tag) == [b"one", b"two"]


def test_the_collectors_young_generation_holds_a_bundle() -> None:
    import gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # Python's defaults
        internals.size_young_generation()
        assert gc.get_threshold() == internals.GC_THRESHOLDS
        gc.set_threshold(2_000, 5, 5)  # a process's own choice is kept
        internals.size_young_generation()
        assert gc.get_threshold() == (2_000, 5, 5)
    finally:
        gc.set_threshold(*before)
