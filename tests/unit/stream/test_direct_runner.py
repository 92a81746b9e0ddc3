"""The indexed DirectRunner timer scan: the same timers as Beam's scan, asking only the keys that are due; keys
whose state holds nothing are forgotten (Beam keeps them for the life of the job)."""

from __future__ import annotations

import itertools
import random
import types
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
from stream.direct_runner import TrackedStates, holds_nothing


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
    tw.update_timers(fired)  # their bundle completed (leaving the keys' states as they were, here)
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
        # Beam's dict keeps every key; ours only those whose state holds something (timers, here).
        held = {k for k, v in plain.items() if v.timers}
        assert set(tracked) == held and len(plain) > len(held)


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
    # Until the bundle firing them completes, no key is asked again: Beam's scan would fire the same timers
    # a second time, from a bundle queued behind the first.
    assert direct_runner._indexed_extract_transform_timers(tw) == ([], False)
    assert _CountingState.asked == 50
    tw.update_timers(fired)  # that bundle completes; its keys' states still hold the timers: reported again
    assert len(direct_runner._indexed_extract_transform_timers(tw)[0]) == 50
    tw.update_timers(list(tw._fired_timers))
    for i in range(0, 5_000, 100):  # a bundle commits the keys' new states, with no timer
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


def test_a_key_whose_state_holds_nothing_is_forgotten_at_the_next_scan() -> None:
    from apache_beam.transforms.trigger import _ReadModifyWriteStateTag

    tracked = TrackedStates()
    tw = _TransformWatermarks(_Clock(0.0), tracked, "step")
    window, tag = GlobalWindow(), _ReadModifyWriteStateTag("user/card")
    pending = InMemoryUnmergedState()
    pending.set_timer(window, "cleanup", TimeDomain.WATERMARK, Timestamp.of(50))
    valued = InMemoryUnmergedState()  # a value, no timer
    valued.add_state(window, tag, [b"state"])
    read_only = InMemoryUnmergedState()  # a bundle read a key that holds nothing: reads leave empty lists
    read_only.get_state(window, tag)
    tracked[b"pending"], tracked[b"valued"], tracked[b"read"], tracked[b"fresh"] = (
        pending, valued, read_only, InMemoryUnmergedState(),
    )  # fmt: skip
    tw._input_watermark = Timestamp.of(10)
    assert direct_runner._indexed_extract_transform_timers(tw) == ([], False)
    assert set(tracked) == {b"pending", b"valued"} and tracked.freed == 2
    # The bundle firing the timer commits a state with the timer removed and the value cleared: forgotten.
    tw._input_watermark = Timestamp.of(60)
    fired, _ = direct_runner._indexed_extract_transform_timers(tw)
    assert [f.encoded_key for f in fired] == [b"pending"]
    tw.update_timers(fired)
    tracked[b"pending"] = InMemoryUnmergedState()
    cleared = valued.copy()
    cleared.clear_state(window, tag)
    tracked[b"valued"] = cleared
    assert direct_runner._indexed_extract_transform_timers(tw) == ([], False)
    assert not tracked and tracked.freed == 4 and not tracked.heap  # the index lets go of the key too
    # A key set again before the scan counts as its newest state.
    tracked[b"again"] = InMemoryUnmergedState()
    tracked[b"again"] = pending.copy()
    direct_runner._indexed_extract_transform_timers(tw)
    assert set(tracked) == {b"again"}


def test_holds_nothing_only_for_a_state_that_reads_as_a_fresh_one() -> None:
    from apache_beam.transforms.trigger import _ReadModifyWriteStateTag

    window = GlobalWindow()
    state = InMemoryUnmergedState()
    assert holds_nothing(state)
    state.get_state(window, _ReadModifyWriteStateTag("user/x"))  # a read: an empty list left behind
    assert holds_nothing(state)
    state.state[window]["trigger/flag"] = False  # a value that is not a list of values: held
    assert not holds_nothing(state)
    timed = InMemoryUnmergedState()
    timed.set_timer(window, "t", TimeDomain.REAL_TIME, Timestamp.of(1))
    assert not holds_nothing(timed)
    timed.clear_timer(window, "t", TimeDomain.REAL_TIME)
    assert holds_nothing(timed)
    with_global = InMemoryUnmergedState()
    with_global.global_state["done"] = True
    assert not holds_nothing(with_global)
    assert not holds_nothing(object())  # not a state this module knows: never forgotten


def _plain_keyed_states(self: Any, root_transforms: Any, value_to_consumers: Any) -> dict[Any, dict[Any, Any]]:
    """Beam's own ``EvaluationContext._initialize_keyed_states``: a plain dict per step."""
    states: dict[Any, dict[Any, Any]] = {transform: {} for transform in root_transforms}
    for consumers in value_to_consumers.values():
        for consumer in consumers:
            states[consumer] = {}
    return states


def _run_counting_pipeline() -> dict[Any, Any]:
    """The keyed states of _CountUntilWatermark's step after a streaming run whose every timer fired."""
    stream = BeamTestStream().advance_watermark_to(0)
    for t in range(0, 40, 2):
        stream = stream.add_elements([TimestampedValue((f"card-{k}", t), t) for k in range(t, t + 3)])
    stream = stream.advance_watermark_to(100)
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    p = beam.Pipeline(options=options)
    out = p | stream | "Count" >> beam.ParDo(_CountUntilWatermark())
    times = range(0, 40, 2)
    assert_that(out, equal_to([(f"card-{k}", sum(1 for t in times if t <= k < t + 3)) for k in range(41)]))
    result = p.run()
    result.wait_until_finish()
    states = result._evaluation_context._transform_keyed_states  # type: ignore[attr-defined]
    return next(s for step, s in states.items() if step.full_label == "Count")  # type: ignore[no-any-return]


def test_a_streaming_step_holds_no_key_once_its_timers_fired_and_cleared_its_state(monkeypatch: Any) -> None:
    from apache_beam.runners.direct.evaluation_context import EvaluationContext

    internals.install_local_runner()
    ours = _run_counting_pipeline()
    assert isinstance(ours, TrackedStates) and len(ours) == 0 and ours.freed >= 41
    # Beam's dict, same pipeline and outputs: every key ever seen is still there, each holding nothing.
    monkeypatch.setattr(EvaluationContext, "_initialize_keyed_states", _plain_keyed_states)
    beams = _run_counting_pipeline()
    assert not isinstance(beams, TrackedStates) and len(beams) == 41
    assert all(holds_nothing(state) for state in beams.values())


def _card_state(due_s: float, value: bytes = b"card state") -> InMemoryUnmergedState:
    """A state in the shape our card steps commit: one value and one event-time timer, in the global window."""
    from apache_beam.transforms.trigger import _ReadModifyWriteStateTag

    state = InMemoryUnmergedState()
    state.set_timer(GlobalWindow(), "user/cleanup", TimeDomain.WATERMARK, Timestamp.of(due_s))
    state.add_state(GlobalWindow(), _ReadModifyWriteStateTag("user/card"), [value])
    return state


def _reads(state: Any) -> tuple[Any, ...]:
    """Everything a bundle or the scan can read of a state."""
    return (
        {w: dict(t) for w, t in state.timers.items() if t},
        {w: {tag: v for tag, v in tags.items()} for w, tags in state.state.items() if tags},
        dict(state.global_state),
        state.get_timers(watermark=Timestamp.of(10**6)),
        holds_nothing(state),
    )


def test_a_committed_card_state_is_kept_packed_and_reads_as_it_was() -> None:
    import gc

    tracked = TrackedStates()
    state = _card_state(50.0)
    tracked[b"card"] = state
    stored = dict.__getitem__(tracked, b"card")
    assert type(stored) is tuple and stored[0] == Timestamp.of(50.0).micros and stored[1] is False
    gc.collect()
    assert not gc.is_tracked(stored)  # nothing of it for the collector to walk
    assert _reads(tracked[b"card"]) == _reads(state) == _reads(tracked.get(b"card"))
    assert [(k, _reads(v)) for k, v in tracked.items()] == [(b"card", _reads(state))]
    # A bundle's checkout is its own copy: changing it changes nothing stored.
    mine = tracked.checkout(b"card")
    mine.clear_timer(GlobalWindow(), "user/cleanup", TimeDomain.WATERMARK)
    assert _reads(tracked[b"card"]) == _reads(state)
    assert holds_nothing(tracked.checkout(b"never seen")) and b"never seen" not in tracked


def test_states_of_any_other_shape_are_kept_as_they_are() -> None:
    from apache_beam.transforms.trigger import _ListStateTag
    from apache_beam.transforms.window import IntervalWindow

    other_window = InMemoryUnmergedState()
    other_window.set_timer(IntervalWindow(0, 60), "t", TimeDomain.WATERMARK, Timestamp.of(60))
    realtime = InMemoryUnmergedState()
    realtime.set_timer(GlobalWindow(), "t", TimeDomain.REAL_TIME, Timestamp.of(1))
    objects = InMemoryUnmergedState()  # a GroupByKey's elements: not values marshal takes
    objects.add_state(GlobalWindow(), _ListStateTag("elements"), TimestampedValue(1, 1))
    tracked = TrackedStates()
    for name, state in {"window": other_window, "realtime": realtime, "objects": objects}.items():
        tracked[name.encode()] = state
        assert dict.__getitem__(tracked, name.encode()) is state
    subclass = _CountingState()
    tracked[b"subclass"] = subclass
    tracked["watermark-hold"] = _card_state(1.0)  # a string key: changed in place by its evaluator
    assert dict.__getitem__(tracked, b"subclass") is subclass
    assert type(dict.__getitem__(tracked, "watermark-hold")) is InMemoryUnmergedState


def test_the_scan_over_packed_states_reports_what_beams_scan_reports() -> None:
    rng = random.Random(11)
    clock = _Clock(500.0)
    tracked, plain = TrackedStates(), dict[bytes, Any]()
    indexed_tw = _TransformWatermarks(clock, tracked, "step")
    beams_tw = _TransformWatermarks(clock, plain, "step")
    for round_ in range(6):
        for _ in range(300):
            key = f"k{rng.randint(0, 500)}".encode()
            state = _card_state(rng.randint(0, 700)) if rng.random() < 0.8 else InMemoryUnmergedState()
            tracked[key] = plain[key] = state
        indexed_tw._input_watermark = beams_tw._input_watermark = Timestamp.of(100 * round_ + rng.randint(0, 50))
        indexed = _scan(indexed_tw, indexed=True)
        assert indexed == _scan(beams_tw, indexed=False) and indexed[0]
        assert set(tracked) == {k for k, v in plain.items() if v.timers}


def test_held_card_states_add_no_objects_for_the_collector() -> None:
    import gc

    tracked = TrackedStates()
    gc.collect()
    before = len(gc.get_objects())
    for i in range(10_000):
        tracked[f"card-{i}".encode()] = _card_state(float(i), value=f"state {i}".encode())
    tracked.index_noted()  # the timer scan's index is per key too: plain ints and bytes
    assert len(tracked.heap) == 10_000
    gc.collect()
    # Beam's states would be ~9 tracked containers each (90,000 here), Timestamps in the index 2 more;
    # packed, only the dicts themselves.
    assert len(gc.get_objects()) - before < 100
    assert _reads(tracked[b"card-42"]) == _reads(_card_state(42.0, value=b"state 42"))


def test_a_burst_of_due_timers_fires_in_slices_earliest_first_and_none_is_lost() -> None:
    # Thousands of cards whose timers come due in the same minute: one bundle of them all held every
    # transaction behind it for seconds. Each scan hands out at most TIMER_KEYS_PER_SCAN keys.
    rng = random.Random(5)
    tracked, plain = TrackedStates(), dict[bytes, Any]()
    for i in range(2_500):
        key = f"card-{i}".encode()
        tracked[key] = plain[key] = _card_state(rng.uniform(0, 60))
    tracked_tw = _TransformWatermarks(_Clock(0.0), tracked, "step")
    beams_tw = _TransformWatermarks(_Clock(0.0), plain, "step")
    tracked_tw._input_watermark = beams_tw._input_watermark = Timestamp.of(60)
    everything, _ = _scan(beams_tw, indexed=False)
    slices: list[list[Any]] = []
    fired: set[tuple[Any, ...]] = set()
    while len(fired) < len(everything):
        firings, _ = direct_runner._indexed_extract_transform_timers(tracked_tw)
        assert 0 < len(firings) <= direct_runner.TIMER_KEYS_PER_SCAN
        # Until the slice's bundle completes (it may wait behind another bundle of the step), no scan fires:
        # neither the same timers again nor the next slice ahead of the transactions.
        assert direct_runner._indexed_extract_transform_timers(tracked_tw) == ([], False)
        slices.append([f.timestamp for f in firings])
        for f in firings:  # the bundle that fires them commits: the cleared states replace the keys'
            firing = (f.encoded_key, f.name, f.time_domain, f.timestamp)
            assert firing not in fired
            fired.add(firing)
            state = tracked[f.encoded_key]
            state.clear_timer(f.window, f.name, f.time_domain)
            tracked[f.encoded_key] = state
        tracked_tw.update_timers(firings)
    assert fired == everything and len(slices) == 3
    assert all(max(earlier) <= min(later) for earlier, later in itertools.pairwise(slices))


class _Executor:
    """What the monitor task reads of the DirectRunner's executor to add the roots' input: one root (the read)
    with its next bundle pending, one step running."""

    def __init__(self, done: bool = False) -> None:
        self.root_nodes = self.all_nodes = frozenset({"read"})
        self.node_to_pending_bundles: dict[str, list[str]] = {"read": ["next read"]}
        self.scheduled: list[tuple[str, str]] = []
        self.default_completion_callback = object()
        self.evaluation_context = types.SimpleNamespace(is_done=lambda transform: done)
        self.transform_executor_services = types.SimpleNamespace(executors=[types.SimpleNamespace(blocked=False)])

    def schedule_consumption(self, transform: str, bundle: str, timers: Any, on_complete: Any) -> None:
        assert timers == [] and on_complete is self.default_completion_callback
        self.scheduled.append((transform, bundle))


def _add_work(executor: _Executor, timers_fired: bool) -> None:
    from apache_beam.runners.direct.executor import _ExecutorServiceParallelExecutor

    internals.install_local_runner()
    _ExecutorServiceParallelExecutor._MonitorTask(executor)._add_work_if_necessary(timers_fired)


def test_the_read_is_scheduled_in_a_cycle_where_timers_fired() -> None:
    # Beam adds the roots' input only in a cycle where no timer fired and nothing runs; with a slice of the
    # minute's card timers fired (or its bundles running) in every cycle, the read waited seconds.
    executor = _Executor()
    _add_work(executor, timers_fired=True)
    assert executor.scheduled == [("read", "next read")] and executor.node_to_pending_bundles["read"] == []
    _add_work(executor, timers_fired=True)  # its bundle is running: no second read until it hands back the next
    assert executor.scheduled == [("read", "next read")]


def test_without_timers_the_monitor_adds_input_as_beam_does() -> None:
    executor = _Executor()
    _add_work(executor, timers_fired=False)  # a step is running: Beam waits for it
    assert executor.scheduled == [] and executor.node_to_pending_bundles["read"] == ["next read"]
    executor.transform_executor_services.executors = []
    _add_work(executor, timers_fired=False)
    assert executor.scheduled == [("read", "next read")]


def test_a_finished_root_gets_no_input_when_timers_fire() -> None:
    executor = _Executor(done=True)
    _add_work(executor, timers_fired=True)
    assert executor.scheduled == []


def test_a_burst_of_card_timers_larger_than_a_slice_fires_each_once_on_the_runner() -> None:
    # More cards due at once than a slice takes, on the real runner with every patch installed: each card's
    # timer fires once, with its own count, and the elements after the burst are all counted.
    internals.install_local_runner()
    cards = 2 * direct_runner.TIMER_KEYS_PER_SCAN + 500
    stream = BeamTestStream().advance_watermark_to(0)
    stream = stream.add_elements([TimestampedValue((f"card-{k}", 1), 1) for k in range(cards)])
    stream = stream.advance_watermark_to(100)
    stream = stream.add_elements([TimestampedValue((f"late-{k}", 101), 101) for k in range(50)])
    stream = stream.advance_watermark_to(200).advance_watermark_to_infinity()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with BeamTestPipeline(options=options) as p:
        out = p | stream | beam.ParDo(_CountUntilWatermark())
        expected = [(f"card-{k}", 1) for k in range(cards)] + [(f"late-{k}", 1) for k in range(50)]
        assert_that(out, equal_to(expected))
