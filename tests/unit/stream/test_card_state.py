"""The card step's state value and incremental evaluation: same state after a coder round trip, same cases."""

from __future__ import annotations

import math

from apache_beam.coders import PickleCoder

from stream.card_state import CardState, cleanup_spread, last_close
from stream.records import ScoredTransaction
from stream.rules import RuleConfig, window_cases
from stream.windows import WindowConfig, summarize, window_starts

T0 = 1_800_000_000


def scored(tx_id: str, t: float, anomaly: bool = False) -> ScoredTransaction:
    return ScoredTransaction(
        transaction_id=tx_id,
        card_id="c1",
        merchant_id="m",
        event_time=T0 + t,
        amount=12.5,
        reconstruction_error=0.9 if anomaly else 0.01,
        is_anomaly=anomaly,
        top_features=(("V14", 0.5), ("V4", 0.25)),
        out_of_range=1,
        model_name="test",
        model_version=3,
        threshold=0.5,
        ack_ids=("a1",),
    )


def test_state_survives_the_coder_round_trip() -> None:
    card = CardState(
        recent={s.transaction_id: s for s in (scored("t1", 1.5), scored("t2", 70.25, anomaly=True))},
        emitted={"t0": T0 + 3600.0},
        watermark=T0 - 10.0,
    )
    coder = PickleCoder()
    back = coder.decode(coder.encode(card))
    assert back == card
    assert list(back.recent) == list(card.recent)
    assert coder.decode(coder.encode(CardState())) == CardState()


def test_last_close_is_the_newest_window_holding_the_time() -> None:
    windows = WindowConfig(size_s=600, period_s=60, allowed_lateness_s=120)
    for t in (T0, T0 + 0.5, T0 + 59.999, T0 + 60, T0 - 0.001, 1_700_000_123.456):
        expected = window_starts(t, windows.size_s, windows.period_s)[-1] + windows.size_s + windows.allowed_lateness_s
        assert last_close(t, windows) == expected
    assert math.isinf(CardState().watermark)


def test_cards_of_one_period_are_forgotten_evenly_over_the_next() -> None:
    # The cards whose transactions arrived in the same minute have their windows close at the same instant;
    # their cleanup timers must not come due together (a burst of ~30,000 at 500 tx/s held the alerts).
    windows = WindowConfig(size_s=600, period_s=60, allowed_lateness_s=300)
    spreads = [cleanup_spread(f"card-{i:07d}", windows) for i in range(6_000)]
    assert all(0 <= x < windows.period_s for x in spreads)
    per_tenth = [sum(1 for x in spreads if k * 6 <= x < (k + 1) * 6) for k in range(10)]
    assert min(per_tenth) > 500 and max(per_tenth) < 700, per_tenth  # ~600 each
    assert cleanup_spread("card-0000042", windows) == spreads[42]  # the same card, the same offset, every time


def test_a_spread_cleanup_forgets_only_what_its_windows_closed_on() -> None:
    windows = WindowConfig(size_s=600, period_s=60, allowed_lateness_s=300)
    card = CardState(recent={s.transaction_id: s for s in (scored("t1", 10), scored("t2", 70))})
    closes = last_close(T0 + 10, windows)
    spread = cleanup_spread("c1", windows)
    when = card.next_cleanup(windows, spread)
    assert when == closes + spread  # never before the oldest transaction's last window closes
    card.forget_until(when, windows)
    assert list(card.recent) == ["t2"]  # t2's last window closes a period later: kept
    assert card.next_cleanup(windows, spread) == last_close(T0 + 70, windows) + spread


def test_window_cases_skips_the_given_case_ids() -> None:
    rules = RuleConfig(velocity_min_count=2)
    w = summarize("c1", T0, T0 + 600, [scored("t1", 1), scored("t2", 2), scored("t3", 3, anomaly=True)])
    assert [c.case_id for c in window_cases(w, rules)] == ["t1", "t2"]
    assert [c.case_id for c in window_cases(w, rules, skip={"t1"})] == ["t2"]


def test_the_card_step_keeps_no_key_once_its_cards_windows_closed() -> None:
    """Every card's state is cleared by its timer, and the runner then forgets the card (stream.direct_runner).

    The late transaction is of a card with no state, so it is not recognised as late (module docstring):
    it is kept until its timer, already due, fires.
    """
    import dataclasses

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.testing.util import assert_that, equal_to
    from apache_beam.transforms.window import TimestampedValue

    from cases.records import Case
    from fraudscore import internals
    from stream.card_state import CardStateCases
    from stream.direct_runner import TrackedStates

    internals.install_local_runner()
    windows = WindowConfig(size_s=120, period_s=60, early_fire_s=1, allowed_lateness_s=30)
    rules = RuleConfig(velocity_min_count=3, dedupe_ttl_s=300)
    busy = [dataclasses.replace(scored(f"b{i}", i), card_id="busy") for i in range(3)]
    quiet = [dataclasses.replace(scored(f"q{i}", 10 + i), card_id=f"quiet-{i}") for i in range(5)]
    late = dataclasses.replace(scored("late", 0), card_id="late-card")  # arrives after its windows closed
    stream = (
        TestStream()
        .advance_watermark_to(T0)
        .add_elements([TimestampedValue(s, s.event_time) for s in busy + quiet])
        .advance_watermark_to(T0 + 1_000)
        .add_elements([TimestampedValue(late, late.event_time)])
        .advance_watermark_to(T0 + 2_000)
    )
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    p = beam.Pipeline(options=options)
    cases = p | stream | "Cards" >> CardStateCases(windows, rules) | beam.Filter(lambda c: isinstance(c, Case))
    assert_that(cases | beam.Map(lambda c: c.transaction_id), equal_to(["b0", "b1", "b2"]))  # semantics unchanged
    result = p.run()
    result.wait_until_finish()
    states = result._evaluation_context._transform_keyed_states
    card_states = next(s for step, s in states.items() if step.full_label == "Cards/CardState")
    assert isinstance(card_states, TrackedStates)
    assert len(card_states) == 0 and card_states.freed >= 7
