"""Card windows, flag rules and case de-duplication under TestStream (event time, early and late data)."""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from stream.flag_cases import AGGREGATIONS, FlagCases
from stream.records import ScoredTransaction
from stream.rules import CARD_BURST, CARD_VELOCITY, TX_ANOMALY, RuleConfig, window_cases
from stream.windows import CardWindows, WindowConfig, summarize

WINDOWS = WindowConfig(size_s=600, period_s=60, early_fire_s=1, allowed_lateness_s=120)
RULES = RuleConfig(burst_min_anomalies=2, velocity_min_count=3, dedupe_ttl_s=3600)
T0 = 1_800_000_000  # a multiple of 600 s: window boundaries are easy to reason about


def scored(tx_id: str, card: str, t: float, anomaly: bool = False, error: float | None = None) -> ScoredTransaction:
    return ScoredTransaction(
        transaction_id=tx_id,
        card_id=card,
        merchant_id="m",
        event_time=float(T0 + t),
        amount=10.0,
        reconstruction_error=error if error is not None else (0.9 if anomaly else 0.01),
        is_anomaly=anomaly,
        top_features=(("V14", 0.5),),
        out_of_range=0,
        model_name="test",
        model_version=1,
        threshold=0.5,
    )


def stamped(items: Iterable[ScoredTransaction]) -> list[TimestampedValue]:
    return [TimestampedValue(s, s.event_time) for s in items]


def streaming_pipeline() -> BeamTestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return BeamTestPipeline(options=options)


def case_keys(cases: beam.PCollection) -> beam.PCollection:
    return cases | beam.Map(lambda c: (c.transaction_id, c.reasons))


def test_summarize_counts_each_transaction_once() -> None:
    a, b = scored("a", "c1", 1, anomaly=True, error=0.8), scored("b", "c1", 2, error=0.2)
    w = summarize("c1", T0, T0 + 600, [a, b, a])
    assert (w.count, w.anomalies, w.max_error) == (2, 1, 0.8)
    assert w.mean_error == pytest.approx(0.5)
    assert [m.transaction_id for m in w.members] == ["a", "b"]


def test_card_rules_attach_to_the_non_anomalous_transactions() -> None:
    txs = [scored("a", "c1", 1, anomaly=True), scored("b", "c1", 2, anomaly=True), scored("c", "c1", 3)]
    cases = list(window_cases(summarize("c1", T0, T0 + 600, txs), RULES))
    assert [(c.transaction_id, c.reasons) for c in cases] == [("c", (CARD_BURST, CARD_VELOCITY))]
    assert cases[0].window_stats["anomalies"] == 2.0
    quiet = summarize("c1", T0, T0 + 600, txs[2:])
    assert list(window_cases(quiet, RULES)) == []


def test_early_firing_before_the_window_closes() -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0)
        .add_elements(stamped([scored("a", "c1", 10), scored("b", "c1", 20)]))
        .advance_processing_time(5)
        .advance_watermark_to(T0 + 30)
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        windows = p | stream | CardWindows(WINDOWS)
        # The window [T0, T0+600) holds both; its first firing is EARLY (watermark was at T0+30, far from its end).
        first = windows | beam.Filter(lambda w: w.window_start == T0) | beam.Map(lambda w: (w.timing, w.count))
        assert_that(first, equal_to([("EARLY", 2), ("ON_TIME", 2)]))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_overlapping_windows_and_repeated_firings_make_one_case_per_transaction(aggregation: str) -> None:
    burst = [scored("v1", "c2", 100), scored("v2", "c2", 110), scored("v3", "c2", 120), scored("x", "c2", 130, True)]
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0)
        .add_elements(stamped(burst[:2]))
        .advance_processing_time(5)
        .add_elements(stamped(burst[2:]))
        .add_elements(stamped(burst[:1]))  # a redelivered message
        .advance_processing_time(5)
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        cases = p | stream | FlagCases(WINDOWS, RULES, aggregation=aggregation)
        # Each transaction sits in 10 sliding windows with early and on-time firings: still one case each.
        assert_that(
            case_keys(cases),
            equal_to(
                [("v1", (CARD_VELOCITY,)), ("v2", (CARD_VELOCITY,)), ("v3", (CARD_VELOCITY,)), ("x", (TX_ANOMALY,))]
            ),
        )


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_late_data_within_allowed_lateness_still_counts(aggregation: str) -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0)
        .add_elements(stamped([scored("l1", "c3", 30), scored("l2", "c3", 40)]))
        .advance_watermark_to(T0 + 700)  # [T0, T0+600) is past its end but within 120 s of lateness
        .add_elements(stamped([scored("l3", "c3", 50)]))
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        scored_txs = p | stream
        cases = scored_txs | FlagCases(WINDOWS, RULES, aggregation=aggregation)
        assert_that(
            case_keys(cases),
            equal_to([("l1", (CARD_VELOCITY,)), ("l2", (CARD_VELOCITY,)), ("l3", (CARD_VELOCITY,))]),
            label="CasesFromLatePane",
        )
        if aggregation == "state":
            return  # no panes: the state path re-computes the open windows on each arrival
        late_panes = (
            scored_txs
            | "Windows" >> CardWindows(WINDOWS)
            | beam.Filter(lambda w: w.timing == "LATE")
            | beam.Map(lambda w: (w.window_start - T0, w.count))
        )
        assert_that(late_panes, equal_to([(0.0, 3)]), label="OnlyTheOpenWindowTakesIt")


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_data_beyond_allowed_lateness_leaves_windows_but_is_still_a_tx_case(aggregation: str) -> None:
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0)
        .add_elements(stamped([scored("d1", "c4", 30), scored("d2", "c4", 40)]))
        .advance_watermark_to(T0 + 800)  # every window holding T0+50 is closed for good (600 + 120 < 800)
        .add_elements(stamped([scored("d3", "c4", 50, anomaly=True)]))
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        cases = p | stream | FlagCases(WINDOWS, RULES, aggregation=aggregation)
        # d3 would make a velocity window of 3; dropped from the windows, it only counts on its own.
        assert_that(case_keys(cases), equal_to([("d3", (TX_ANOMALY,))]))


def test_replay_windows_match_beams_sliding_windows() -> None:
    from apache_beam.transforms.window import SlidingWindows, WindowFn

    from stream.windows import sliding_windows

    times = [0.0, 59.9, 60.0, 599.5, 600.0, 1234.5, 1801.0]
    txs = [scored(f"t{i}", "c9", t) for i, t in enumerate(times)]
    ours = {
        (w.window_start, w.window_end, tuple(m.transaction_id for m in w.members))
        for w in sliding_windows(("c9", txs), 600, 60)
    }
    beams: dict[tuple[float, float], list[str]] = {}
    for s in txs:
        for w in SlidingWindows(600, 60).assign(WindowFn.AssignContext(s.event_time)):
            beams.setdefault((float(w.start), float(w.end)), []).append(s.transaction_id)
    assert ours == {(start, end, tuple(ids)) for (start, end), ids in beams.items()}


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_late_data_counts_only_in_the_windows_still_open(aggregation: str) -> None:
    # a's windows all close at T0+720; b's last at T0+780. Late c and e (after the watermark passed T0+720,
    # and c5's cleanup, spread after it) join only [T0+60, T0+660): b, c, e make a velocity window of 3
    # there; a, gone, is no case.
    from stream.card_state import cleanup_spread

    assert 720 + cleanup_spread("c5", WINDOWS) < 760 < 780
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0)
        .add_elements(stamped([scored("a", "c5", 30), scored("b", "c5", 100)]))
        .advance_watermark_to(T0 + 760)
        .add_elements(stamped([scored("c", "c5", 70)]))
        .add_elements(stamped([scored("e", "c5", 110)]))
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        cases = p | stream | FlagCases(WINDOWS, RULES, aggregation=aggregation)
        windows = cases | beam.Map(lambda c: (c.transaction_id, c.reasons, c.window_start.timestamp() - T0))
        assert_that(
            windows,
            equal_to([("b", (CARD_VELOCITY,), 60.0), ("c", (CARD_VELOCITY,), 60.0), ("e", (CARD_VELOCITY,), 60.0)]),
        )


class _FakeState:
    def __init__(self) -> None:
        self.value: object = None

    def read(self) -> object:
        return self.value

    def write(self, value: object) -> None:
        self.value = value

    def clear(self) -> None:
        self.value = None


class _FakeTimer:
    def __init__(self) -> None:
        self.at: list[float] = []

    def set(self, ts: object) -> None:
        self.at.append(float(ts))  # type: ignore[arg-type]


def test_state_path_emits_cases_on_arrival_with_one_timer_per_card() -> None:
    from stream.card_state import _CardStateFn, cleanup_spread

    fn, state, timer = _CardStateFn(WINDOWS, RULES), _FakeState(), _FakeTimer()

    def arrive(s: ScoredTransaction) -> list[tuple[str, tuple[str, ...]]]:
        return [(c.transaction_id, c.reasons) for c in fn.process((s.card_id, s), state, timer)]

    assert arrive(scored("x", "c6", 5, anomaly=True)) == []  # a TX_ANOMALY case, made by FlagCases' own step
    assert arrive(scored("y", "c6", 10)) == []
    # The third transaction makes the velocity window (the early firing): y and z are cases at once, no timer.
    assert arrive(scored("z", "c6", 20)) == [("y", (CARD_VELOCITY,)), ("z", (CARD_VELOCITY,))]
    assert arrive(scored("z", "c6", 20)) == []  # redelivered
    assert arrive(scored("w", "c6", 30)) == [("w", (CARD_VELOCITY,))]  # overlapping windows: only the new one
    # One timer per card, re-set to the same instant: when x, y, z and w have left their last window, at the
    # card's own offset into the period after it.
    forget_at = T0 + 600 + WINDOWS.allowed_lateness_s + cleanup_spread("c6", WINDOWS)
    assert set(timer.at) == {forget_at}
    fn.expire(state, timer, forget_at, "c6")
    card = state.read()
    assert card is not None and not card.recent  # type: ignore[attr-defined]
    assert card.emitted  # type: ignore[attr-defined]  # case ids stay remembered for the de-dup TTL
    assert timer.at[-1] == T0 + 10 + RULES.dedupe_ttl_s  # y, the first card case


def test_replay_keeps_only_the_windows_a_card_rule_flags() -> None:
    from stream.rules import window_reasons
    from stream.windows import sliding_windows

    # A velocity run (with a duplicate that must count once), a lone burst pair later, quiet time between.
    txs = [scored(f"v{i}", "c7", 10.0 * i) for i in range(3)] + [scored("v0", "c7", 0.0)]
    txs += [scored("a1", "c7", 3000, True), scored("a2", "c7", 3030, True), scored("q", "c7", 5000)]
    every = list(sliding_windows(("c7", txs), 600, 60))
    kept = list(sliding_windows(("c7", txs), 600, 60, keep=RULES.flags_window))
    assert kept == [w for w in every if window_reasons(w, RULES)]
    assert kept and len(kept) < len(every)


def test_bounded_cases_are_one_per_transaction_with_the_earliest_flagged_window() -> None:
    burst = [scored("v1", "c2", 100), scored("v2", "c2", 110), scored("v3", "c2", 120), scored("x", "c2", 130, True)]
    with BeamTestPipeline() as p:
        cases = p | beam.Create(stamped(burst + burst[:1])) | FlagCases(WINDOWS, RULES, streaming=False)
        firsts = cases | beam.Map(
            lambda c: (c.transaction_id, c.reasons, c.window_start and c.window_start.timestamp())
        )
        # v1..v3 sit together in 9 flagged windows; the case is the first of them, [T0-420, T0+180).
        assert_that(
            firsts,
            equal_to(
                [
                    ("v1", (CARD_VELOCITY,), T0 - 420.0),
                    ("v2", (CARD_VELOCITY,), T0 - 420.0),
                    ("v3", (CARD_VELOCITY,), T0 - 420.0),
                    ("x", (TX_ANOMALY,), None),
                ]
            ),
        )
