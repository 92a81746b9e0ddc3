"""CardWindows: per-card sliding windows over scored transactions.

Each card's transactions are grouped in event-time sliding windows (default
10 minutes, every minute). A window fires early (after ``early_fire_s`` of
processing time, or after ``early_fire_count`` new transactions) so a card
does not wait ten minutes for its first aggregate, fires again when the
watermark passes its end, and once more for each late transaction that
arrives within ``allowed_lateness_s``; later transactions are dropped from
the windows (they are still scored and can still be TX_ANOMALY cases, which
never wait for a window). Panes accumulate, so every firing carries the whole
window so far.

A window's members are de-duplicated by transaction id, so a redelivered
Pub/Sub message never counts twice towards a card's velocity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from stream.records import CardWindow, ScoredTransaction


@dataclass(frozen=True)
class WindowConfig:
    """Window shape and firing; all in seconds."""

    size_s: int = 600
    period_s: int = 60
    early_fire_s: int = 5  # whole seconds: Beam serializes the delay as integer milliseconds of seconds*1000
    early_fire_count: int = 0  # 0: early firings by processing time only
    allowed_lateness_s: int = 300

    def __post_init__(self) -> None:
        if self.size_s <= 0 or self.period_s <= 0 or self.size_s % self.period_s:
            raise ValueError(f"window size {self.size_s}s must be a positive multiple of the period {self.period_s}s")
        if self.early_fire_s <= 0 or self.early_fire_count < 0 or self.allowed_lateness_s < 0:
            raise ValueError("early firing delay must be > 0; early count and allowed lateness >= 0")

    def trigger(self) -> trigger.TriggerFn:
        early: trigger.TriggerFn = trigger.AfterProcessingTime(self.early_fire_s)
        if self.early_fire_count:
            early = trigger.AfterAny(early, trigger.AfterCount(self.early_fire_count))
        return trigger.AfterWatermark(early=early, late=trigger.AfterCount(1))


def summarize(
    card_id: str, start: float, end: float, scored: Iterable[ScoredTransaction], timing: str = "ON_TIME"
) -> CardWindow:
    """Aggregates one card's transactions in one window (duplicates by transaction id count once)."""
    unique = {s.transaction_id: s for s in scored}
    members = tuple(sorted(unique.values(), key=lambda s: (s.event_time, s.transaction_id)))
    errors = [m.reconstruction_error for m in members]
    return CardWindow(
        card_id=card_id,
        window_start=start,
        window_end=end,
        count=len(members),
        amount_sum=sum(m.amount for m in members),
        mean_error=sum(errors) / len(errors) if errors else 0.0,
        max_error=max(errors, default=0.0),
        anomalies=sum(1 for m in members if m.is_anomaly),
        members=members,
        timing=timing,
    )


def window_starts(event_time: float, size_s: int, period_s: int) -> list[int]:
    """Starts of the sliding windows [start, start + size) holding ``event_time``, oldest first."""
    last = math.floor(event_time / period_s) * period_s
    return list(range(last - size_s + period_s, last + 1, period_s))


def sliding_windows(
    element: tuple[str, Iterable[ScoredTransaction]],
    size_s: int,
    period_s: int,
    keep: Callable[[int, int], bool] | None = None,
) -> Iterator[CardWindow]:
    """One card's windows [k*period, k*period + size) holding any of its transactions, as SlidingWindows has them.

    ``keep(count, anomalies)``, if given, drops the windows it rejects before they are summarized: replay
    asks only for the windows a card rule flags, and summarizing every one of the ~size/period windows
    of every transaction was the largest cost of a replay.
    """
    card_id, scored = element
    # Per window, its members by transaction id (a later duplicate replaces an earlier one, as in summarize).
    by_start: dict[int, dict[str, ScoredTransaction]] = {}
    for s in scored:
        for start in window_starts(s.event_time, size_s, period_s):
            members = by_start.get(start)
            if members is None:
                members = by_start[start] = {}
            members[s.transaction_id] = s
    for start in sorted(by_start):
        members = by_start[start]
        if keep is not None and not keep(len(members), sum(1 for m in members.values() if m.is_anomaly)):
            continue
        yield summarize(card_id, float(start), float(start + size_s), members.values())


class _SummarizeFn(beam.DoFn):
    def process(
        self,
        element: tuple[str, Iterable[ScoredTransaction]],
        win: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[CardWindow]:
        card_id, scored = element
        timing = {0: "EARLY", 1: "ON_TIME", 2: "LATE"}.get(int(pane.timing), "UNKNOWN")
        yield summarize(card_id, float(win.start), float(win.end), scored, timing)


class CardWindows(beam.PTransform):
    """PCollection[ScoredTransaction] -> PCollection[CardWindow], one per card, window and firing."""

    def __init__(
        self,
        config: WindowConfig | None = None,
        *,
        streaming: bool = True,
        keep: Callable[[int, int], bool] | None = None,
    ) -> None:
        """``keep(count, anomalies)``: bounded only, emit just the windows it accepts (see sliding_windows)."""
        super().__init__()
        self._config = config or WindowConfig()
        self._streaming = streaming
        self._keep = keep

    def expand(self, scored: beam.PCollection) -> beam.PCollection:
        c = self._config
        keyed = scored | "KeyByCard" >> beam.Map(lambda s: (s.card_id, s))
        if not self._streaming:
            # Bounded replay: everything is on time, so each window fires once. Grouping per card and
            # sweeping its sliding windows in memory gives the same windows as SlidingWindows + GroupByKey,
            # which on the batch runner goes through Beam's per-key trigger driver (much slower: README, Benchmarks).
            return (
                keyed
                | "GroupByCard" >> beam.GroupByKey()
                | "SlidingWindows" >> beam.FlatMap(sliding_windows, c.size_s, c.period_s, self._keep)
            )
        return (
            keyed
            | "SlidingWindows"
            >> beam.WindowInto(
                window.SlidingWindows(c.size_s, c.period_s),
                trigger=c.trigger(),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=Duration(seconds=c.allowed_lateness_s),
            )
            | "GroupByCard" >> beam.GroupByKey()
            | "Summarize" >> beam.ParDo(_SummarizeFn())
        )
