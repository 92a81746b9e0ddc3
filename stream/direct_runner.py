"""Per-key and per-bundle costs of Beam 2.77's (bundle-based, streaming) DirectRunner, and how its monitor
schedules timers against the read, each changed at its cause.

**The timer scan, indexed.** The runner keeps every key a stateful step has ever seen in a dict, and
its monitor task, which runs in a loop between bundles, asks every key of every step for its due timers
(``_TransformWatermarks.extract_transform_timers``). The card step has one key per card, so with a
card population that grows by hundreds a second the scan grew with it: at 500 tx/s (about one new card
per transaction) it was a fifth of the job's CPU after one minute and most of it after five, and every
bundle's downstream work waited for that scan to schedule it. Here a step's keyed states only change
where a bundle commits (the evaluation context replaces the key's state object) or where a key is
first seen: the dict is replaced by :class:`TrackedStates`, which notes those keys. At each scan the
noted keys are re-indexed (their earliest event-time timer into a heap; keys with processing-time
timers into a set), and only the keys whose earliest timer is due, plus those with processing-time
timers, are asked, as Beam asks them. Entries left by an older state of a key are skipped lazily. What
the scan returns is what Beam's would (``tests/unit/stream/test_direct_runner.py`` compares the two),
but at most :data:`TIMER_KEYS_PER_SCAN` keys' event-time timers at a time, the earliest first.

**The read between timer slices.** A step's timers can come due together: the card step's did (every
card whose transactions left their last window in the same minute, ~30,000 a minute with 360,000 cards
held at 500 tx/s) until it spread them over the minute (:func:`stream.card_state.cleanup_spread`); the
windows path's end-of-window timers still do. The runner fired them as one bundle on its one worker, and
its monitor adds the roots' input (the Pub/Sub read) only in a cycle where no timer fired and nothing runs
(``_MonitorTask._add_work_if_necessary``), so every transaction waited behind the minute's timers. Sliced
alone, the timers still starved the read: a slice's bundle, or the bundles it feeds, is running in every
cycle between slices (timed per bundle in the soak: 2-3 s a minute with no transaction read, alerts
3-4 s late; a scan that fired nothing between slices did not help, the slice's consumers still ran).
Here the monitor also schedules the roots' pending bundles in a cycle where timers fired
(:func:`_read_between_timers`): the read runs between the slices, its transactions' bundles with them.
That is no more input than Beam would add: a root's next bundle is pending only once its last one
finished, so there is still at most one read in flight. And a step's next slice fires only once the
bundle of its last one has completed: Beam's scan reports a due timer again at every cycle until the
bundle firing it commits, which fired a timer twice when that bundle waited behind another of the same
(serial) step; handing out the next keys instead would queue every slice of the minute ahead of the
transactions' bundles in that step. A slice is in flight while its timers are in the step's set of fired
timers, which the bundle's completion empties; the monitor's shutdown check, which also scans (for
processing-time timers only) but schedules nothing, gets no timers (:func:`_shutdown_check_fires_nothing`).
Beam's DirectRunner holds no watermark for a due timer (its monitor added no input while timers fired); with
the read between slices a source's watermark moves on while a slice waits, so a step's output watermark
is held at its earliest timer (:func:`_refresh_holding_timers`, among the step's keyed watermark holds,
at every refresh), as a timer's output timestamp holds it in Beam's model: a later step does not take a
slice's output for late (tested with a grouping after a burst of timers).

**Keys freed.** Beam keeps a key's entry in a step's keyed states for the life of the job, even once
its timers fired and its state was cleared, and so did the index (which also held each indexed state
object until its timer came due): the job's memory grew by about 1 KB with every card ever seen
(857 B traced per card after every card's timer fired and cleared its state, 20,000 cards). A runner
that keeps state elsewhere (Dataflow's) stores nothing for a key with no state and no timers. Here,
when a bundle's commit leaves a key's state holding nothing (:func:`holds_nothing`: no timer, no value),
the next scan or watermark refresh deletes the key; a later element of that key gets the fresh empty state Beam gives a
new key, which reads the same. Our stateful DoFns clear their state with an event-time timer once
nothing can use it (window end + allowed lateness, de-duplication TTLs), so the keys left are the
cards active within those horizons.

**A key's state at rest as one bytes value.** Between bundles each key's state is Beam's
``InMemoryUnmergedState``: about nine small containers (three defaultdicts, a lambda, dicts, a list, a
tuple, a Timestamp) that the collector tracks. With 355,000 cards held (500 tx/s, the default windows)
that was over 3 million tracked objects, so every full collection walked them all and held the
interpreter for 4.4 s (measured with ``gc.callbacks`` in the job): the alerts' p99 with it. And each
key's containers cost ~2.7 KB. Here a committed state in the common shape (the global window, timers
on Timestamps, values that ``marshal`` takes: our DoFns' state values are coder-encoded bytes) is kept
as one tuple ``(earliest event-time timer in µs, holds nothing, marshal bytes)`` of values the
collector does not track, and rebuilt into a fresh state when a bundle checks the key out
(:func:`_checkout_keyed_state`, in place of ``DirectStepContext.get_keyed_state``'s read plus copy:
the rebuilt state is a copy already). A state of any other shape (other windows, processing-time
timers, values marshal refuses) is kept as it is, as before.

**A DoFn's state and timer specs, once per class.** The runner sets up every step's DoFn again for
every bundle, and each set-up walks all of the DoFn's methods and their signatures twice
(``userstate.get_dofn_specs``, from ``is_stateful_dofn`` and ``validate_stateful_dofn``): ~9% of the
job's CPU at 1,000 tx/s. The specs are the defaults of the class's methods, so they are kept per class,
except for a DoFn holding a bound method of its own (``beam.Map(obj.method)``), whose specs can differ
per instance and are computed each time.

**A key's state copied without deepcopy of its timers.** Every read of a key's state in a bundle starts
with a copy of it (``InMemoryUnmergedState.copy``), whose ``copy.deepcopy`` of the timers was ~4% of the
job's CPU. Timers map windows to (name, domain, tag) -> timestamp, all immutable values: copying the two
dict levels gives the same independent copy.

Installed, with every other patch of Beam's internals, by :func:`fraudscore.internals.install_local_runner`
(which also sizes the collector's young generation for the runner's bundles), after checking that Beam's
targets are the code these replacements were written for.
"""

from __future__ import annotations

import collections
import copy
import heapq
import itertools
import marshal
import threading
import types
import weakref
from typing import Any

from apache_beam.runners.direct.evaluation_context import DirectUnmergedState
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.trigger import InMemoryUnmergedState
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp

from fraudscore import internals


class TrackedStates(dict):  # type: ignore[type-arg]
    """A step's keyed states (encoded key -> state) that notes which keys were set since the last scan,
    forgets a key whose state holds nothing (see the module's docstring, "Keys freed") and keeps a state
    at rest packed ("A key's state at rest as one bytes value"). Reads return states, never the packing."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._noted: set[Any] = set()
        # The index: (earliest event-time timer in µs, tie-breaker, key); an entry counts while its time is
        # the key's earliest in ``_earliest`` (no state object held: an older state is not kept alive by it).
        # Plain ints, not Timestamps: tuples of ints and bytes are left alone by the garbage collector.
        self.heap: list[tuple[int, int, Any]] = []
        self._earliest: dict[Any, int] = {}  # key -> its earliest event-time timer in µs, as last indexed
        self.realtime: dict[Any, Any] = {}  # key -> state object with processing-time timers
        self._seq = itertools.count()
        self.freed = 0  # keys forgotten so far
        self.in_flight: list[Any] = []  # the timers handed out, until a refresh sees their bundle completed
        _LIVE[id(self)] = self  # a dict is unhashable: kept by id, gone when the pipeline is

    def __setitem__(self, key: Any, value: Any) -> None:
        # Only the keys of keyed steps (encoded bytes): a watermark evaluator keeps its state object under a
        # string key and changes it in place, which a packed copy would not see.
        packed = pack(value) if isinstance(key, bytes) else None
        with self._lock:  # with the check in index(): a state set meanwhile is never forgotten
            super().__setitem__(key, value if packed is None else packed)
            self._noted.add(key)

    def __getitem__(self, key: Any) -> Any:
        return unpack(super().__getitem__(key))

    def get(self, key: Any, default: Any = None) -> Any:
        stored = super().get(key, _ABSENT)
        return default if stored is _ABSENT else unpack(stored)

    def values(self) -> Any:  # type: ignore[override]
        return [unpack(v) for v in super().values()]

    def items(self) -> Any:  # type: ignore[override]
        return [(k, unpack(v)) for k, v in super().items()]

    def checkout(self, key: Any) -> Any:
        """A state for a bundle to change: rebuilt from the packing (a copy already), else Beam's copy."""
        stored = super().get(key)
        if stored is None:
            return InMemoryUnmergedState()  # what Beam gives a key it does not hold
        return _unpacked(stored) if type(stored) is tuple else stored.copy()

    def index_noted(self) -> None:
        """(Re-)indexes every key set since the last call (:meth:`index`)."""
        with self._lock:
            noted, self._noted = self._noted, set()
        for key in noted:
            self.index(key)

    def index(self, key: Any) -> None:
        """(Re-)indexes one key from its current state, or forgets the key if that state holds nothing."""
        self.realtime.pop(key, None)
        with self._lock:
            stored = super().get(key)
            if stored is not None and (stored[1] if type(stored) is tuple else holds_nothing(stored)):
                super().__delitem__(key)
                self.freed += 1
                stored = None
        if stored is None:
            self._earliest.pop(key, None)
            return
        if type(stored) is tuple:
            earliest = stored[0]
        else:
            earliest = None
            for timers in stored.timers.values():
                for (_name, domain, _tag), timestamp in timers.items():
                    if domain == TimeDomain.REAL_TIME:
                        self.realtime[key] = stored
                    elif earliest is None or timestamp.micros < earliest:
                        earliest = timestamp.micros
        if earliest is None:
            self._earliest.pop(key, None)
        elif self._earliest.get(key) != earliest:  # else the key's entry for that time is in the heap already
            self._earliest[key] = earliest
            heapq.heappush(self.heap, (earliest, next(self._seq), key))

    def earliest(self, skip: Any = ()) -> int | None:
        """The earliest event-time timer of any key not in ``skip``, in µs (None: none), as last indexed."""
        heap, skipped, found = self.heap, [], None
        while heap:
            timestamp, _, key = heap[0]
            if self._earliest.get(key) != timestamp:
                heapq.heappop(heap)  # an entry a later index of its key replaced, or of a key forgotten since
            elif key in skip:
                skipped.append(heapq.heappop(heap))
            else:
                found = timestamp
                break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found

    def due(self, watermark: Any, at_most: int | None = None) -> list[tuple[Any, Any]]:
        """(key, state) of the keys whose earliest event-time timer is at or before ``watermark``, earliest
        first: all of them, or the first ``at_most``.

        Due entries stay in the index until the bundle that fires them commits (which replaces the key's
        state and so re-indexes it).
        """
        found: list[tuple[Any, Any]] = []
        keep: list[tuple[int, int, Any]] = []
        heap = self.heap
        limit = watermark.micros
        while heap and heap[0][0] <= limit and (at_most is None or len(found) < at_most):
            entry = heapq.heappop(heap)
            timestamp, _, key = entry
            if self._earliest.get(key) != timestamp:
                continue  # the key was re-indexed (or forgotten) since
            keep.append(entry)
            found.append((key, self[key]))
        for entry in keep:
            heapq.heappush(heap, entry)
        return found


_ABSENT = object()
_PACKED_TYPES = (InMemoryUnmergedState, DirectUnmergedState)  # not a subclass: it may read differently
_GLOBAL_WINDOW = GlobalWindow()


def pack(state: Any) -> tuple[int | None, bool, bytes] | None:
    """A committed state as ``(earliest event-time timer in µs or None, holds nothing, marshal bytes)``, or
    None for a state of another shape, kept as it is (see the module's docstring).

    Every container of the packing is untracked by the collector; :func:`unpack` rebuilds a state that
    reads exactly as this one (empty windows, which read as missing ones, are not kept).
    """
    if type(state) not in _PACKED_TYPES or state.defensive_copy:
        return None  # a subclass (a test's, another runner's) or a state that deep-copies its values
    timers, earliest = [], None
    for window, window_timers in state.timers.items():
        if type(window) is not GlobalWindow:
            return None
        for (name, domain, tag), timestamp in window_timers.items():
            if domain != TimeDomain.WATERMARK or type(timestamp) is not Timestamp:
                return None  # processing-time timers stay objects: the scan asks their keys every time
            micros = timestamp.micros
            timers.append((name, domain, tag, micros))
            earliest = micros if earliest is None or micros < earliest else earliest
    values = []
    for window, tags in state.state.items():
        if type(window) is not GlobalWindow:
            return None
        values.extend(tags.items())
    try:
        blob = marshal.dumps((timers, values, state.global_state))
    except ValueError:  # a value marshal does not take (a WindowedValue of a GroupByKey, a Timestamp hold)
        return None
    return earliest, holds_nothing(state), blob


def unpack(stored: Any) -> Any:
    """What :meth:`TrackedStates.__setitem__` was given: a packed state rebuilt, anything else as it is."""
    return _unpacked(stored) if type(stored) is tuple else stored


def _unpacked(packed: tuple[int | None, bool, bytes]) -> InMemoryUnmergedState:
    timers, values, global_state = marshal.loads(packed[2])
    state = InMemoryUnmergedState()
    if timers:
        state.timers[_GLOBAL_WINDOW] = {(name, domain, tag): Timestamp(micros=us) for name, domain, tag, us in timers}
    if values:
        state.state[_GLOBAL_WINDOW].update(values)
    state.global_state = global_state
    return state


def holds_nothing(state: Any) -> bool:
    """Whether a keyed state (``InMemoryUnmergedState``) has no timer, no global state and no value.

    Such a state reads exactly as the fresh one the runner creates for a key it does not hold
    (``DirectStepContext.get_keyed_state``): reads leave empty lists behind (a defaultdict), and a
    cleared value is popped. Anything else (a non-list value, another state type) counts as held.
    """
    timers, values, global_state = (getattr(state, a, None) for a in ("timers", "state", "global_state"))
    if timers is None or values is None or global_state is None:
        return False
    if global_state or any(timers.values()):
        return False
    return all(isinstance(v, list) and not v for tags in values.values() for v in tags.values())


# A slice of ~0.15 s of the card step's timer work (see the module's docstring, "The timer scan").
TIMER_KEYS_PER_SCAN = 1_000

_LIVE: weakref.WeakValueDictionary[int, TrackedStates] = weakref.WeakValueDictionary()


def keys_held() -> int:
    """Keys the runner holds state or timers for, over every stateful step of every live pipeline."""
    return sum(len(states) for states in list(_LIVE.values()))


def _refresh_holding_timers(self: Any) -> bool:
    """``_TransformWatermarks.refresh`` with the step's output watermark held at its earliest event-time timer
    (see the module's docstring, "The read between timer slices"), among the step's keyed holds."""
    states = self._keyed_states
    if isinstance(states, TrackedStates):
        with self._lock:
            states.index_noted()
            # A completed slice (its timers no longer among the fired ones) holds nothing: Beam refreshes
            # before it commits the slice's states, which this index sees only at the next refresh.
            completed = {f.encoded_key for f in states.in_flight if f not in self._fired_timers}
            states.in_flight = [f for f in states.in_flight if f in self._fired_timers]
            earliest = states.earliest(skip=completed)
            if earliest is None:
                self._keyed_earliest_holds.pop(_TIMERS_HOLD, None)
            else:  # a timer not yet due is after the input watermark: only due ones hold anything back
                self._keyed_earliest_holds[_TIMERS_HOLD] = Timestamp(micros=earliest)
    return internals.original("watermark-held-by-timers")(self)  # type: ignore[no-any-return]


def _indexed_extract_transform_timers(self: Any) -> tuple[list[Any], bool]:
    """``_TransformWatermarks.extract_transform_timers`` over the index of :class:`TrackedStates`."""
    from apache_beam.runners.direct.util import TimerFiring

    states = self._keyed_states
    if not isinstance(states, TrackedStates):
        return internals.original("timer-scan-index")(self)  # type: ignore[no-any-return]
    with self._lock:
        states.index_noted()
        # The monitor's shutdown check asks only whether processing-time timers are set; and one slice in
        # flight at a time: until the bundle of the timers fired last has completed, none fire (see the
        # module's docstring, "The read between timer slices").
        if getattr(_SHUTDOWN_CHECK, "active", False) or self._fired_timers:
            return [], bool(states.realtime)
        candidates = dict(states.due(self._input_watermark, TIMER_KEYS_PER_SCAN))
        candidates.update(states.realtime)
        fired_timers = []
        has_realtime_timer = bool(states.realtime)
        now = self._clock.time()
        for encoded_key, state in candidates.items():
            timers, _ = state.get_timers(watermark=self._input_watermark, processing_time=now)
            for window, (name, time_domain, timestamp, dynamic_timer_tag) in timers:
                fired_timers.append(
                    TimerFiring(encoded_key, window, name, time_domain, timestamp, dynamic_timer_tag=dynamic_timer_tag)
                )
        self._fired_timers.update(fired_timers)
        states.in_flight.extend(fired_timers)
        return fired_timers, has_realtime_timer


def _read_between_timers(self: Any, timers_fired: bool) -> None:
    """``_MonitorTask._add_work_if_necessary`` that schedules the roots' pending bundles in a cycle where
    timers fired too (see the module's docstring, "The read between timer slices")."""
    if not timers_fired:
        internals.original("monitor-reads-between-timers")(self, timers_fired)
        return
    executor = self._executor
    for applied_ptransform in executor.root_nodes:
        if executor.evaluation_context.is_done(applied_ptransform):
            continue
        pending = executor.node_to_pending_bundles.get(applied_ptransform, [])
        executor.node_to_pending_bundles[applied_ptransform] = []
        for bundle in pending:
            executor.schedule_consumption(applied_ptransform, bundle, [], executor.default_completion_callback)


_TIMERS_HOLD = ("fraudscore", "timers")  # the index's entry among a step's keyed watermark holds
_SHUTDOWN_CHECK = threading.local()  # set while the monitor's shutdown check runs, in the monitor's thread


def _shutdown_check_fires_nothing(self: Any) -> bool:
    """``_MonitorTask._should_shutdown``, whose timer scan (when the runner is idle) hands out no timers: Beam
    scans there only to learn whether processing-time timers are set, and the timers it extracted stayed
    in the step's set of fired timers, never scheduled, so one slice in flight would never complete."""
    _SHUTDOWN_CHECK.active = True
    try:
        return internals.original("monitor-shutdown-check")(self)  # type: ignore[no-any-return]
    finally:
        _SHUTDOWN_CHECK.active = False


def _tracked_keyed_states(self: Any, root_transforms: Any, value_to_consumers: Any) -> dict[Any, TrackedStates]:
    """``EvaluationContext._initialize_keyed_states`` with a :class:`TrackedStates` per step."""
    states: dict[Any, TrackedStates] = {transform: TrackedStates() for transform in root_transforms}
    for consumers in value_to_consumers.values():
        for consumer in consumers:
            states[consumer] = TrackedStates()
    return states


_SPECS: dict[type, tuple[frozenset[Any], frozenset[Any]]] = {}


def _specs_per_class(dofn: Any) -> tuple[set[Any], set[Any]]:
    """``userstate.get_dofn_specs``, kept per DoFn class (see the module's docstring)."""
    if any(isinstance(v, types.MethodType) for v in getattr(dofn, "__dict__", {}).values()):
        return internals.original("dofn-specs-per-class")(dofn)  # type: ignore[no-any-return]
    specs = _SPECS.get(type(dofn))
    if specs is None:
        states, timers = internals.original("dofn-specs-per-class")(dofn)
        specs = _SPECS[type(dofn)] = (frozenset(states), frozenset(timers))
    return set(specs[0]), set(specs[1])


def _copy_state(self: Any) -> Any:
    """``InMemoryUnmergedState.copy`` with the timers copied two dict levels deep (see the module's docstring)."""
    from apache_beam.transforms.trigger import InMemoryUnmergedState

    cloned = InMemoryUnmergedState(defensive_copy=self.defensive_copy)
    cloned.timers = collections.defaultdict(dict, {window: dict(t) for window, t in self.timers.items()})
    cloned.global_state = copy.deepcopy(self.global_state) if self.global_state else {}
    for window, tags in self.state.items():
        for tag, values in tags.items():
            cloned.state[window][tag] = copy.copy(values)
    return cloned


def _checkout_keyed_state(self: Any, key: Any) -> Any:
    """``DirectStepContext.get_keyed_state``: the bundle's copy of a key's state, taken once per bundle from a
    :class:`TrackedStates` with :meth:`TrackedStates.checkout` (Beam reads the key twice and copies it)."""
    existing = self.existing_keyed_state
    if not isinstance(existing, TrackedStates):
        return internals.original("keyed-state-checkout")(self, key)
    state = self.partial_keyed_state.get(key)
    if state is None:
        state = self.partial_keyed_state[key] = existing.checkout(key)
    return state
