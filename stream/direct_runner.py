"""Three per-key and per-bundle costs of Beam 2.77's (bundle-based, streaming) DirectRunner, cut at their cause.

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
the scan returns is what Beam's would (``tests/unit/stream/test_direct_runner.py`` compares the two).

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
import threading
import types
from typing import Any

from apache_beam.transforms.timeutil import TimeDomain

from fraudscore import internals


class TrackedStates(dict):  # type: ignore[type-arg]
    """A step's keyed states (encoded key -> state) that notes which keys were set since the last scan."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._noted: set[Any] = set()
        # The index: (earliest event-time timer, tie-breaker, key, state object it was read from).
        self.heap: list[tuple[Any, int, Any, Any]] = []
        self.realtime: dict[Any, Any] = {}  # key -> state object with processing-time timers
        self._seq = itertools.count()

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        with self._lock:
            self._noted.add(key)

    def take_noted(self) -> set[Any]:
        with self._lock:
            noted, self._noted = self._noted, set()
        return noted

    def index(self, key: Any) -> None:
        """(Re-)indexes one key from its current state; older entries of the key become stale."""
        state = self.get(key)
        self.realtime.pop(key, None)
        if state is None:
            return
        earliest = None
        for timers in state.timers.values():
            for (_name, domain, _tag), timestamp in timers.items():
                if domain == TimeDomain.REAL_TIME:
                    self.realtime[key] = state
                elif earliest is None or timestamp < earliest:
                    earliest = timestamp
        if earliest is not None:
            heapq.heappush(self.heap, (earliest, next(self._seq), key, state))

    def due(self, watermark: Any) -> list[tuple[Any, Any]]:
        """(key, state) of every key whose earliest event-time timer is at or before ``watermark``.

        Due entries stay in the index: Beam reports a due timer at every scan until the bundle that
        fires it commits (which replaces the key's state and so re-indexes it).
        """
        found, keep = [], []
        heap = self.heap
        while heap and heap[0][0] <= watermark:
            entry = heapq.heappop(heap)
            _, _, key, state = entry
            if self.get(key) is not state:
                continue  # a newer state of this key was indexed on its own
            found.append((key, state))
            keep.append(entry)
        for entry in keep:
            heapq.heappush(heap, entry)
        return found


def _indexed_extract_transform_timers(self: Any) -> tuple[list[Any], bool]:
    """``_TransformWatermarks.extract_transform_timers`` over the index of :class:`TrackedStates`."""
    from apache_beam.runners.direct.util import TimerFiring

    states = self._keyed_states
    if not isinstance(states, TrackedStates):
        return internals.original("timer-scan-index")(self)  # type: ignore[no-any-return]
    with self._lock:
        for key in states.take_noted():
            states.index(key)
        candidates = dict(states.due(self._input_watermark))
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
        return fired_timers, has_realtime_timer


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
