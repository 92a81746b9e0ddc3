"""FlagCases: the flag rules (:mod:`stream.rules`) applied to scored transactions, one case per flagged transaction.

One alert per case: the same transaction appears in up to size/period
overlapping windows and in every early, on-time and late firing of each.
With Beam windows, :class:`DedupeCases` keeps, per case id, a "seen" flag in
keyed state that an event-time timer clears ``dedupe_ttl_s`` after the case's
timestamp; only the first emission passes to the sinks (the card-state path
keeps the same in its card's state). A case's reasons are those of that first
emission. These in-memory filters are cheap; the guarantee is DeliverCases'
durable claim on the case row (:mod:`stream.case_sink`), which also drops the
repeats a lost state or a re-published message lets through.

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

from cases.records import Case
from stream import metrics
from stream.ack_parts import CARD, TX_ANOMALY_CASE
from stream.card_state import CardStateCases
from stream.records import Release, ScoredTransaction
from stream.rules import RuleConfig, transaction_cases, window_cases
from stream.windows import CardWindows, WindowConfig

_SEEN = userstate.ReadModifyWriteStateSpec("seen", BooleanCoder())
_EXPIRY = userstate.TimerSpec("expiry", userstate.TimeDomain.WATERMARK)
_SEEN_PARAM = beam.DoFn.StateParam(_SEEN)
_EXPIRY_PARAM = beam.DoFn.TimerParam(_EXPIRY)


class _DedupeFn(beam.DoFn):
    """(case id, (case, ack ids)) -> the case if it is the first with its id, then a Release of the ack ids."""

    def __init__(self, ttl_s: int) -> None:
        self._ttl = Duration(seconds=ttl_s)

    def process(
        self,
        element: tuple[str, tuple[Case, tuple[str, ...]]],
        timestamp: Any = beam.DoFn.TimestampParam,
        seen: Any = _SEEN_PARAM,
        expiry: Any = _EXPIRY_PARAM,
    ) -> Iterator[Case | Release]:
        _, (case, ack_ids) = element
        if seen.read():
            metrics.duplicate_case()
        else:
            seen.write(True)
            expiry.set(timestamp + self._ttl)
            metrics.case_emitted(case.reasons, case.event_time.timestamp())
            yield case
        if ack_ids:  # after the case, in the same bundle: released once the sink made it durable
            yield Release(ack_ids, CARD)

    @userstate.on_timer(_EXPIRY)
    def expire(self, seen: Any = _SEEN_PARAM) -> None:
        seen.clear()


def _keyed(case: Case) -> tuple[str, tuple[Case, tuple[str, ...]]]:
    return case.case_id, (case, ())


def _tx_cases_then_release(s: ScoredTransaction) -> Iterator[Case | Release]:
    """The TX_ANOMALY case of an anomalous transaction, then the Release of its part (same bundle)."""
    for case in transaction_cases(s):
        metrics.case_emitted(case.reasons, case.event_time.timestamp())
        yield case
        if s.ack_ids:
            yield Release(s.ack_ids, TX_ANOMALY_CASE)


def _card_part_released(s: ScoredTransaction) -> Iterator[Release]:
    """With Beam windows, a transaction's card part is done once scored: window firings come later."""
    if s.ack_ids:
        yield Release(s.ack_ids, CARD)


_CASE_KEY = tuple[str, tuple[Case, tuple[str, ...]]]


class DedupeCases(beam.PTransform):
    """Passes only the first case per case id (within ``ttl_s`` of event time)."""

    def __init__(self, ttl_s: int) -> None:
        super().__init__()
        self._ttl_s = ttl_s

    def expand(self, cases: beam.PCollection) -> beam.PCollection:
        return (
            cases
            | "KeyByCaseId" >> beam.Map(_keyed).with_output_types(_CASE_KEY)
            | "FirstPerCase" >> beam.ParDo(_DedupeFn(self._ttl_s))
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
    """PCollection[ScoredTransaction] -> PCollection[Case | Release], at most one case per transaction.

    In streaming, each transaction's ack ids (pulled ingest) follow its cases as :class:`Release`
    markers in the same bundle; the sink releases them once those cases are durable.
    """

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
        if self._streaming:
            # TX_ANOMALY cases go straight to the sink, not queued behind the card step (which sees every
            # transaction) nor behind a keyed de-dup step: on the DirectRunner a stateful step runs one
            # bundle per key, which at 500 tx/s held alerts for seconds. A TX_ANOMALY case is one
            # transaction, so its only repeats are redeliveries and re-publishes, which DeliverCases' durable
            # claim drops; its id never meets a card case's (those are non-anomalous transactions).
            tx_first = scored | "TxAnomalyCases" >> beam.FlatMap(_tx_cases_then_release)
            if self._aggregation == "state":
                card = scored | "CardStateCases" >> CardStateCases(self._windows, rules)
                return (tx_first, card) | "AllCases" >> beam.Flatten()
            card_first = (
                scored
                | "CardWindows" >> CardWindows(self._windows, streaming=True)
                | "CardRules" >> beam.FlatMap(window_cases, rules)
                | "CardCasesGlobal" >> beam.WindowInto(window.GlobalWindows())
                | "DedupeCases" >> DedupeCases(rules.dedupe_ttl_s)
            )
            card_done = scored | "CardPartDone" >> beam.FlatMap(_card_part_released)
            return (tx_first, card_first, card_done) | "AllCases" >> beam.Flatten()
        tx_cases = (
            scored
            | "TxAnomaly" >> beam.FlatMap(transaction_cases)
            | "TxCasesGlobal" >> beam.WindowInto(window.GlobalWindows())
        )
        card_cases = (
            scored
            | "CardWindows" >> CardWindows(self._windows, streaming=False, keep=rules.flags_window)
            | "CardRules" >> beam.FlatMap(window_cases, rules)
            | "CardCasesGlobal" >> beam.WindowInto(window.GlobalWindows())
        )
        return (tx_cases, card_cases) | "AllCases" >> beam.Flatten() | "DedupeCases" >> FirstCasePerId()
