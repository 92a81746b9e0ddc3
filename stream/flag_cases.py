"""FlagCases: the flag rules (:mod:`stream.rules`) applied to scored transactions, one case per flagged transaction.

One alert per case: the same transaction appears in up to size/period
overlapping windows and in every early, on-time and late firing of each.
:class:`DedupeCases` keeps, per case id, a "seen" flag in keyed state that an
event-time timer clears ``dedupe_ttl_s`` after the case's timestamp; only the
first emission passes to the sinks. A case's reasons are those of that first
emission. If the state is lost (job replaced), a repeat rewrites the same
Bigtable row.

Above :mod:`stream.card_state` and :mod:`stream.windows` (it chooses between
them), below :mod:`stream.pipeline`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.transforms import userstate, window
from apache_beam.utils.timestamp import Duration

from stream import metrics
from stream.card_state import CardStateCases
from stream.records import Case
from stream.rules import RuleConfig, keyed_transaction_cases, transaction_cases, window_cases
from stream.windows import CardWindows, WindowConfig

_SEEN = userstate.ReadModifyWriteStateSpec("seen", BooleanCoder())
_EXPIRY = userstate.TimerSpec("expiry", userstate.TimeDomain.WATERMARK)
_SEEN_PARAM = beam.DoFn.StateParam(_SEEN)
_EXPIRY_PARAM = beam.DoFn.TimerParam(_EXPIRY)


class _DedupeFn(beam.DoFn):
    def __init__(self, ttl_s: int) -> None:
        self._ttl = Duration(seconds=ttl_s)

    def process(
        self,
        element: tuple[str, Case],
        timestamp: Any = beam.DoFn.TimestampParam,
        seen: Any = _SEEN_PARAM,
        expiry: Any = _EXPIRY_PARAM,
    ) -> Iterator[Case]:
        _, case = element
        if seen.read():
            metrics.duplicate_case()
            return
        seen.write(True)
        expiry.set(timestamp + self._ttl)
        metrics.case_emitted(case.reasons, case.event_time.timestamp())
        yield case

    @userstate.on_timer(_EXPIRY)
    def expire(self, seen: Any = _SEEN_PARAM) -> None:
        seen.clear()


class DedupeCases(beam.PTransform):
    """Passes only the first case per case id (within ``ttl_s`` of event time)."""

    def __init__(self, ttl_s: int) -> None:
        super().__init__()
        self._ttl_s = ttl_s

    def expand(self, cases: beam.PCollection) -> beam.PCollection:
        return (
            cases
            | "KeyByCaseId" >> beam.Map(lambda c: (c.case_id, c))
            | "FirstPerCase" >> beam.ParDo(_DedupeFn(self._ttl_s)).with_input_types(tuple[str, Any])
        )


def _first_case(element: tuple[str, Iterable[Case]]) -> Iterator[Case]:
    _, cases = element
    it = iter(cases)
    first = next(it)
    for _ in it:
        metrics.duplicate_case()
    metrics.case_emitted(first.reasons, first.event_time.timestamp())
    yield first


class FirstCasePerId(beam.PTransform):
    """Bounded DedupeCases: the first case per case id, by grouping instead of keyed state.

    In a bounded run the batch runner feeds a stateful DoFn all of a key's elements before any timer,
    so the TTL never clears a flag and DedupeCases passes exactly the first case of each id, which is
    what a GroupByKey (arrival order kept) and taking the first value also does. Keyed state on the
    FnApiRunner measures every cached value with objsize, a walk over all loaded modules per call,
    which cost more than the rest of case handling in a replay.
    """

    def expand(self, cases: beam.PCollection) -> beam.PCollection:
        return (
            cases
            | "KeyByCaseId" >> beam.Map(lambda c: (c.case_id, c))
            | "GroupByCaseId" >> beam.GroupByKey()
            | "FirstPerCase" >> beam.FlatMap(_first_case)
        )


# How card windows are computed in streaming: one stateful DoFn per card with one timer
# (stream.card_state, the default) or Beam sliding windows with triggers + DedupeCases. Bounded
# replay always sweeps each card's windows in memory (stream.windows.sliding_windows).
AGGREGATIONS = ("state", "windows")


class FlagCases(beam.PTransform):
    """PCollection[ScoredTransaction] -> PCollection[Case], at most one per transaction."""

    def __init__(
        self,
        windows: WindowConfig | None = None,
        rules: RuleConfig | None = None,
        *,
        streaming: bool = True,
        aggregation: str = "state",
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"card aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
        self._windows = windows or WindowConfig()
        self._rules = rules or RuleConfig()
        self._streaming = streaming
        self._aggregation = aggregation

    def expand(self, scored: beam.PCollection) -> beam.PCollection:
        rules = self._rules
        if self._streaming and self._aggregation == "state":
            # TX_ANOMALY cases get their own de-dup step, not queued behind the card state (which sees
            # every transaction): their ids never meet card cases' (those are non-anomalous ones). Made
            # and keyed in one step: the DirectRunner pays a fixed cost per step and bundle of <= 10
            # messages, which is most of the job's CPU. ``scored`` is in the global window already.
            tx_first = (
                scored
                | "TxAnomalyByCaseId" >> beam.FlatMap(keyed_transaction_cases)
                | "FirstPerCase" >> beam.ParDo(_DedupeFn(rules.dedupe_ttl_s)).with_input_types(tuple[str, Any])
            )
            return (
                tx_first,
                scored | "CardStateCases" >> CardStateCases(self._windows, rules),
            ) | "AllCases" >> beam.Flatten()
        tx_cases = (
            scored
            | "TxAnomaly" >> beam.FlatMap(transaction_cases)
            | "TxCasesGlobal" >> beam.WindowInto(window.GlobalWindows())
        )
        card_cases = (
            scored
            | "CardWindows"
            >> CardWindows(
                self._windows, streaming=self._streaming, keep=None if self._streaming else rules.flags_window
            )
            | "CardRules" >> beam.FlatMap(window_cases, rules)
            | "CardCasesGlobal" >> beam.WindowInto(window.GlobalWindows())
        )
        dedupe = DedupeCases(rules.dedupe_ttl_s) if self._streaming else FirstCasePerId()
        return (tx_cases, card_cases) | "AllCases" >> beam.Flatten() | "DedupeCases" >> dedupe
