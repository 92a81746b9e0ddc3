"""CardStateCases: the card rules and their cases' de-duplication in one stateful DoFn keyed by card.

The Beam-windows path (:class:`stream.windows.CardWindows` + :class:`stream.flag_cases.DedupeCases`)
puts each transaction in size/period sliding windows, each with an early-firing and an end-of-window
timer, and keeps a "seen" flag and an expiry timer per case id. On the Python DirectRunner that is
~20 timers per card, and the runner re-scans its pending timers and re-creates DoFns for every
keyed bundle: most of the streaming job's CPU.

Here each card has one small state value: its transactions still inside some window that can
change (event time within the window size plus allowed lateness), the case ids already emitted
(kept ``dedupe_ttl_s``), and the newest watermark its timer has seen; and one event-time timer,
set to the next moment something can be forgotten. Each arriving transaction:

- is dropped if the card already holds it (a redelivery changes no window);
- joins the card's transactions unless every sliding window holding it is already closed for good
  (window end + allowed lateness at or before the watermark the card has seen), the same rule that
  makes Beam drop data beyond allowed lateness;
- re-computes the aggregates of the open windows holding it (count, amount sum, mean and max
  error, anomalies: :func:`stream.windows.summarize`) and, where a card rule holds, emits a case
  for each non-anomalous member not emitted before. Re-computing on every arrival is the early
  firing, with no delay; as aggregates only change when a transaction arrives, no other firing
  could see anything new. The work per arrival is one sort of the card's transactions and a count per
  open window; only a window that meets a rule and still holds a transaction with no case out is
  summarized, and only its new cases are built (re-summarizing every open window and rebuilding
  every member's case on each arrival made the step's cost grow with the card's state).

Lateness is judged against the watermark as the card's own timer last saw it, so a late
transaction of a card with no retained state is not recognised as late; it is still counted only
in the windows holding it. The timer fires up to a period after the card's windows close
(:func:`cleanup_spread`), so a transaction later than the allowed lateness that arrives in that
stretch is counted too, as for a card with no state.

Card cases are for non-anomalous members only, so they never share a case id with a TX_ANOMALY
case; those take their own, lighter path (:class:`stream.flag_cases.FlagCases`): on the DirectRunner a
stateful step runs its bundles one at a time, newest first, and TX_ANOMALY alerts must not queue
behind every transaction of every card. The outputs are the same cases, one per transaction, as the
windows path; a card case's reasons and window are those of the first window that flagged it.
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import accumulate
from operator import attrgetter
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import userstate
from apache_beam.utils.timestamp import Timestamp

from cases.records import Case
from stream import ingest, metrics
from stream.ack_parts import CARD
from stream.records import Release, ScoredTransaction
from stream.rules import RuleConfig, window_cases
from stream.windows import WindowConfig, summarize, window_starts


@dataclass
class CardState:
    """One card's retained state (pickled as a single value: one read and one write per element)."""

    recent: dict[str, ScoredTransaction] = field(default_factory=dict)  # tx id -> tx, inside an open window
    emitted: dict[str, float] = field(default_factory=dict)  # case id -> forget after (event seconds)
    watermark: float = float("-inf")  # the newest watermark the card's timer has fired at

    # Read and written (pickled) on every element of the card: its transactions go as plain tuples of their
    # fields (~3x cheaper to pickle than dataclass instances) and come back as the same ScoredTransactions.
    def __getstate__(self) -> tuple[tuple[tuple[Any, ...], ...], dict[str, float], float]:
        return tuple(map(_fields_of, self.recent.values())), self.emitted, self.watermark

    def __setstate__(self, state: tuple[tuple[tuple[Any, ...], ...], dict[str, float], float]) -> None:
        rows, self.emitted, self.watermark = state
        self.recent = {row[0]: _scored(row) for row in rows}

    def next_cleanup(self, windows: WindowConfig, spread_s: float) -> float | None:
        """When something can next be forgotten: the oldest retained transaction's last close plus the card's
        ``spread_s`` (:func:`cleanup_spread`), or the earliest de-duplication expiry."""
        # last_close is monotone in the event time: the oldest retained transaction closes first.
        times = [last_close(min(s.event_time for s in self.recent.values()), windows) + spread_s] if self.recent else []
        if self.emitted:
            times.append(min(self.emitted.values()))
        return min(times) if times else None

    def forget_until(self, watermark: float, windows: WindowConfig) -> None:
        self.watermark = max(self.watermark, watermark)
        self.recent = {k: s for k, s in self.recent.items() if last_close(s.event_time, windows) > self.watermark}
        self.emitted = {k: t for k, t in self.emitted.items() if t > self.watermark}


def last_close(event_time: float, windows: WindowConfig) -> float:
    """When the last window holding ``event_time`` closes for good (its end + allowed lateness)."""
    # The newest window holding it starts at the period boundary at or before it (window_starts' last).
    return math.floor(event_time / windows.period_s) * windows.period_s + windows.size_s + windows.allowed_lateness_s


def cleanup_spread(card_id: str, windows: WindowConfig) -> float:
    """A card's own delay in [0, period) between its windows closing for good and its state being forgotten.

    Window closes fall on period boundaries, so without it the cleanup timers of every card whose transactions
    arrived in the same period come due at the same instant: ~30,000 at each minute mark at 500 tx/s, fired
    as a burst that held the alerts of the next 15-25 s up to 4-5 s (the soak, from minute 14, when the first
    cards' windows closed). Spread by a hash of the card id, they come due evenly over the period. Forgetting
    later than the close is always safe (nothing can change a closed window); it keeps a card's state half a
    period longer on average.
    """
    return zlib.crc32(card_id.encode()) % (windows.period_s * 1000) / 1000


def _event_time(s: ScoredTransaction) -> float:
    return s.event_time


_FIELDS = tuple(f.name for f in fields(ScoredTransaction))  # transaction_id first: the key of CardState.recent
_fields_of = attrgetter(*_FIELDS)


def _scored(row: tuple[Any, ...]) -> ScoredTransaction:
    # What unpickling an instance does (a new object, its __dict__ filled in), without pickle's per-object work.
    s: ScoredTransaction = object.__new__(ScoredTransaction)
    s.__dict__.update(zip(_FIELDS, row, strict=True))
    return s


_STATE = userstate.ReadModifyWriteStateSpec("card", PickleCoder())
_CLEANUP = userstate.TimerSpec("cleanup", userstate.TimeDomain.WATERMARK)
_STATE_PARAM = beam.DoFn.StateParam(_STATE)
_CLEANUP_PARAM = beam.DoFn.TimerParam(_CLEANUP)


class _CardStateFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, windows: WindowConfig, rules: RuleConfig) -> None:
        self._windows = windows
        self._rules = rules

    def process(
        self,
        element: tuple[str, ScoredTransaction],
        state: Any = _STATE_PARAM,
        cleanup: Any = _CLEANUP_PARAM,
    ) -> Iterator[Case | Release]:
        card_id, s = element
        card: CardState = state.read() or CardState()
        cases: list[Case] = []
        # A redelivery (the card holds it already) changes no window, and its case, if any, is out already.
        if s.transaction_id not in card.recent and s.transaction_id not in card.emitted:
            cases = list(self._arrive(card_id, card, s))
            state.write(card)
            when = card.next_cleanup(self._windows, cleanup_spread(card_id, self._windows))
            if when is not None:
                cleanup.set(Timestamp.of(when))
        yield from cases
        if cases and s.ack_ids:  # after its cases, in the same bundle: released once the sink made them durable
            yield Release(s.ack_ids, CARD)
        elif s.ack_ids:  # nothing of its arrival to make durable (most transactions): its part is done
            ingest.release(CARD, s.ack_ids)

    def _arrive(self, card_id: str, card: CardState, s: ScoredTransaction) -> Iterator[Case]:
        c = self._windows
        open_starts = [
            start
            for start in window_starts(s.event_time, c.size_s, c.period_s)
            if start + c.size_s + c.allowed_lateness_s > card.watermark
        ]
        if not open_starts:
            return
        card.recent[s.transaction_id] = s
        # One sort of the card's transactions serves every open window (a window's members are a slice,
        # its count and anomalies two subtractions); only a window that meets a rule and still holds a
        # member with no case out is summarized, and only its new cases are built.
        held = sorted(card.recent.values(), key=_event_time)
        times = [m.event_time for m in held]
        anomalies = list(accumulate((m.is_anomaly for m in held), initial=0))
        unemitted = [m for m in held if not m.is_anomaly and m.transaction_id not in card.emitted]
        for start in open_starts:
            end = start + c.size_s
            lo, hi = bisect_left(times, start), bisect_left(times, end)
            if not self._rules.flags_window(hi - lo, anomalies[hi] - anomalies[lo]):
                continue
            if not any(start <= m.event_time < end and m.transaction_id not in card.emitted for m in unemitted):
                continue  # every case this window can give is out already
            w = summarize(card_id, float(start), float(end), held[lo:hi], "EARLY")
            yield from self._emit(card, window_cases(w, self._rules, skip=card.emitted))

    def _emit(self, card: CardState, cases: Iterator[Case]) -> Iterator[Case]:
        for case in cases:
            if case.case_id in card.emitted:
                continue
            card.emitted[case.case_id] = case.event_time.timestamp() + self._rules.dedupe_ttl_s
            metrics.case_emitted(case.reasons, case.event_time.timestamp())
            yield case

    @userstate.on_timer(_CLEANUP)
    def expire(
        self,
        state: Any = _STATE_PARAM,
        cleanup: Any = _CLEANUP_PARAM,
        fired: Any = beam.DoFn.TimestampParam,
        card_id: Any = beam.DoFn.KeyParam,
    ) -> None:
        card: CardState | None = state.read()
        if card is None:
            return
        card.forget_until(float(fired), self._windows)
        when = card.next_cleanup(self._windows, cleanup_spread(card_id, self._windows))
        if when is None:
            state.clear()
            return
        state.write(card)
        cleanup.set(Timestamp.of(when))


def _by_card(s: ScoredTransaction) -> tuple[str, ScoredTransaction]:
    return s.card_id, s


class CardStateCases(beam.PTransform):  # type: ignore[misc]
    """PCollection[ScoredTransaction] -> PCollection[Case]: CARD_BURST/CARD_VELOCITY cases, each case id once."""

    def __init__(self, windows: WindowConfig | None = None, rules: RuleConfig | None = None) -> None:
        super().__init__()
        self._windows = windows or WindowConfig()
        self._rules = rules or RuleConfig()

    def expand(self, scored: beam.PCollection) -> beam.PCollection:
        return (
            scored
            # Typed output: the state key gets a deterministic string coder (an untyped key gets
            # FastPrimitivesCoder, which Beam warns may not be deterministic).
            | "KeyByCard" >> beam.Map(_by_card).with_output_types(tuple[str, ScoredTransaction])
            | "CardState" >> beam.ParDo(_CardStateFn(self._windows, self._rules))
        )
