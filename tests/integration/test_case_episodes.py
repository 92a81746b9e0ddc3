"""Card-episode cases through DeliverCases on the Bigtable and Pub/Sub emulators: one case per episode, one
alert per (case, escalation), across re-runs and concurrent writers; a legit close snoozes the card."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam

from cases.casebook import Casebook
from cases.episodes import EpisodeConfig
from cases.records import Case
from cases.store import CaseStore
from fraudscore.config import Resources
from tests.integration.test_stream_pipeline import Puller

T0 = datetime(2026, 3, 4, 5, 0, 0, tzinfo=UTC)


def flagged(tx: str, card: str, seconds: float, error: float = 3.0, reasons: tuple[str, ...] = ("TX_ANOMALY",)) -> Case:
    return Case(
        transaction_id=tx,
        card_id=card,
        merchant_id="m",
        event_time=T0 + timedelta(seconds=seconds),
        amount=10.0,
        reconstruction_error=error,
        threshold=1.0,
        model_version=1,
        reasons=reasons,
        top_features=(("V14", 0.5),),
    )


def deliver(res: Resources, cases: list[Case], tag: str, **kw: Any) -> None:
    from stream.case_sink import DeliverCases

    with beam.Pipeline() as p:
        _ = p | f"Cases{tag}" >> beam.Create(cases) | DeliverCases(res, **kw)


def alerts_of(messages: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in messages]


def test_a_burst_on_one_card_is_one_case_with_one_alert_across_reruns(unique_resources: Resources) -> None:
    """6 anomalous transactions of one card in 6 s (same band) -> one case, 6 members, one alert; a re-run adds none."""
    res = unique_resources
    burst = [flagged(f"b-{i}", "card-burst", i) for i in range(6)]
    other = [flagged("o-1", "card-other", 2)]
    deliver(res, [*burst, *other], "1", batch_size=4)  # the burst spans two batches
    deliver(res, [*burst, *other], "2", batch_size=4)  # a restart re-publishing everything
    alerts = alerts_of(Puller(res, res.alerts_subscription).settle(2, 30))
    per_card = Counter(a["card_id"] for a in alerts)
    assert per_card == {"card-burst": 1, "card-other": 1}, alerts
    with CaseStore(res) as store:
        episodes = Casebook(store)
        burst_case = next(a for a in alerts if a["card_id"] == "card-burst")
        assert burst_case["kind"] == "opened" and burst_case["transaction"]["top_features"]
        listed = episodes.list_card("card-burst")
        assert [e.case_id for e in listed] == [burst_case["case_id"]]
        assert sorted(listed[0].members) == sorted(c.transaction_id for c in burst)
        # Each member keeps its own row (labels and retraining read them), found by transaction id.
        member = store.get("b-3")
        assert member.case.episode_id == burst_case["case_id"] and member.case.transaction_id == "b-3"


def test_escalation_alerts_once_more_and_idle_opens_a_new_case(unique_resources: Resources) -> None:
    res = unique_resources
    cfg = EpisodeConfig(idle_s=600)
    first = [flagged("e-1", "card-e", 0, error=1.5)]  # band 1
    same = [flagged("e-2", "card-e", 60, error=1.8)]  # band 1 again: no alert
    velocity = [flagged("e-3", "card-e", 90, error=0.5, reasons=("CARD_VELOCITY",))]  # a new reason: escalates
    higher = [flagged("e-4", "card-e", 120, error=9.0)]  # band 4: escalates
    later = [flagged("e-5", "card-e", 120 + 601, error=1.5)]  # quiet for longer than idle: a new case
    for i, batch in enumerate((first, same, velocity, higher, later, higher)):
        deliver(res, batch, str(i), episodes=cfg)
    alerts = alerts_of(Puller(res, res.alerts_subscription).settle(2, 30))
    kinds = [(a["kind"], tuple(a["escalation"])) for a in sorted(alerts, key=lambda a: a["last_activity"])]
    assert kinds == [
        ("opened", ("band-1", "reason-TX_ANOMALY")),
        ("escalated", ("reason-CARD_VELOCITY",)),
        ("escalated", ("band-4",)),
        ("opened", ("band-1", "reason-TX_ANOMALY")),
    ], kinds
    assert len({a["case_id"] for a in alerts}) == 2


def test_two_writers_of_one_card_open_one_case(unique_resources_factory: Any) -> None:
    """Two concurrent sinks get the same card's transactions: one case, each escalation alerted once."""
    res = unique_resources_factory("race")
    cases = [flagged(f"r-{i}", "card-race", i * 0.5) for i in range(20)]
    threads = [
        threading.Thread(target=deliver, args=(res, cases[w::2], f"w{w}"), kwargs={"batch_size": 2}) for w in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    alerts = alerts_of(Puller(res, res.alerts_subscription).settle(2, 30))
    assert len({a["case_id"] for a in alerts}) == 1
    components = Counter(c for a in alerts for c in a["escalation"])
    assert all(n == 1 for n in components.values()), components
    with CaseStore(res) as store:
        (episode,) = Casebook(store).list_card("card-race")
        assert len(episode.members) == 20


def test_a_legit_close_snoozes_the_same_reasons_but_not_a_higher_band(unique_resources: Resources) -> None:
    res = unique_resources
    cfg = EpisodeConfig(idle_s=60, snooze_s=24 * 3600)
    deliver(res, [flagged("s-1", "card-s", 0, error=1.5)], "1", episodes=cfg)
    with CaseStore(res, clock=lambda: T0 + timedelta(seconds=30)) as store:
        episodes = Casebook(store)
        (case,) = episodes.list_card("card-s")
        episodes.label(case.case_id, fraud=False, note="known commuter", analyst="ana")
    deliver(res, [flagged("s-2", "card-s", 40, error=1.7)], "2", episodes=cfg)  # same reason, same band: snoozed
    deliver(res, [flagged("s-3", "card-s", 50, error=5.0)], "3", episodes=cfg)  # band 3: alerts
    alerts = alerts_of(Puller(res, res.alerts_subscription).settle(2, 30))
    assert [(a["kind"], a["escalation"]) for a in sorted(alerts, key=lambda a: a["last_activity"])] == [
        ("opened", ["band-1", "reason-TX_ANOMALY"]),
        ("escalated", ["band-3"]),
    ]
    with CaseStore(res) as store:
        listed = Casebook(store).list_card("card-s")
    assert [e.status for e in listed] == ["open", "closed"]  # newest first: the snoozed case, then the closed one
    assert len(listed[0].members) == 2
    # The stream's label scan: one case closed (opened by TX_ANOMALY), 30 s from opening to the analyst's decision.
    from stream.label_scan import scan

    with CaseStore(res) as store:
        found = scan(store, T0 - timedelta(hours=1))
        assert (found.closed_by_reason, found.decision_seconds) == ({"TX_ANOMALY": 1}, [30.0])  # not the open one
        assert (found.counts.cases, found.counts.legit) == (2, 1)
        assert scan(store, T0 + timedelta(hours=1)).closed_by_reason == {}  # opened before the window


def test_the_closed_cases_of_a_window_are_found_in_bigtable_as_a_full_read_finds_them(
    unique_resources: Resources,
) -> None:
    # list_since(status="closed") reads in full only the rows Bigtable finds a close or a label on: it must list
    # what reading every case of the window and keeping the closed ones lists (closed, labelled, an old-style
    # case labelled; not open, reopened, an old-style case unlabelled).
    res = unique_resources
    deliver(res, [flagged(f"w-{i}", f"card-w{i}", i) for i in range(5)], "1")
    with CaseStore(res, clock=lambda: T0 + timedelta(minutes=5)) as store:
        store.write([flagged("old-1", "card-old1", 6), flagged("old-2", "card-old2", 7)])
        book = Casebook(store)
        ids = {e.card_id: e.case_id for e in book.list_since(T0, limit=100)}
        book.close(ids["card-w0"], "ana")
        book.label(ids["card-w1"], fraud=True, note="", analyst="ana")
        book.close(ids["card-w2"], "ana")
        book.reopen(ids["card-w2"], "ana")
        book.label_transaction("old-1", fraud=False, note="", analyst="ana")
        closed = {e.case_id for e in book.list_since(T0, limit=100, status="closed")}
        every = {e.case_id: e.status for e in book.list_since(T0, limit=100)}
    assert closed == {i for i, status in every.items() if status == "closed"}
    assert closed == {ids["card-w0"], ids["card-w1"], ids["card-old1"]}
    assert len(every) == 7


def test_the_decision_index_holds_what_the_case_rows_hold_and_a_backfill_rebuilds_it(
    unique_resources: Resources,
) -> None:
    """The feedback gauges read the decision index (cases.decision_index); it must say what the case rows say:
    the latest verdict whichever row it was written on, closes, reopens, old-style cases; and a backfill from
    the case rows (cases decided before the index) must rebuild it."""
    from cases import decision_index
    from cases.store import REF_FAMILY, latest_cells
    from stream.label_scan import scan
    from tests.integration.test_cases_store import StepClock

    res = unique_resources
    deliver(res, [flagged(f"d-{i}", f"card-d{i}", i) for i in range(6)], "1")
    start = T0 - timedelta(hours=1)
    with CaseStore(res, clock=StepClock()) as store:
        store.write([flagged("old-1", "card-old1", 7), flagged("old-2", "card-old2", 8)])
        book = Casebook(store)
        ids = {e.card_id: e.case_id for e in book.list_since(start, limit=100)}
        book.close(ids["card-d0"], "ana")
        book.label(ids["card-d1"], fraud=True, note="", analyst="ana")  # labels and closes
        book.close(ids["card-d2"], "ana")
        book.reopen(ids["card-d2"], "ana")
        book.label(ids["card-d3"], fraud=False, note="", analyst="ana")
        book.label(ids["card-d3"], fraud=True, note="second look", analyst="bob")  # the latest wins
        book.label_transaction("d-4", fraud=False, note="", analyst="ana")  # one member: the case counts
        book.label_transaction("old-1", fraud=False, note="", analyst="ana")
        found = scan(store, start)

        # What the case rows say, read the old way (every labelled row; the window's cases in full).
        latest: dict[str, Any] = {}
        for case, decisions in store.labelled():
            assert case is not None
            if case.case_id not in latest or decisions[0].decided_at > latest[case.case_id].decided_at:
                latest[case.case_id] = decisions[0]
        verdicts = Counter(d.verdict for d in latest.values())
        closed = [e for e in book.list_since(start, limit=100) if e.closed_ms is not None]  # old-style: no close
        assert (found.counts.cases, found.counts.fraud, found.counts.legit) == (8, verdicts["fraud"], verdicts["legit"])
        assert (found.counts.fraud, found.counts.legit) == (2, 2)
        assert found.closed_by_reason == {"TX_ANOMALY": len(closed)} == {"TX_ANOMALY": 3}
        assert sorted(found.decision_seconds) == sorted((e.closed_ms - e.opened_ms) / 1000 for e in closed)
        assert scan(store, T0 + timedelta(hours=1)).counts == type(found.counts)(0, 0, 0)  # opened before

        # Cases decided before the index: its rows gone, the backfill finds them on the case rows.
        indexed = [decision_index.key(d.opened_ms, d.case_id) for d in decision_index.read_since(store, start)]
        assert len(indexed) == 5  # d0, d1, d3, d4, old-1 (d2 reopened: nothing left to index)
        for key in indexed:
            row = store._index.direct_row(key)
            row.delete()
            row.commit()
        assert scan(store, start).counts.fraud == 0
        assert book.backfill_index() == 5
        rebuilt = scan(store, start)
        assert (rebuilt.counts, rebuilt.closed_by_reason, sorted(rebuilt.decision_seconds)) == (
            found.counts, found.closed_by_reason, sorted(found.decision_seconds),
        )  # fmt: skip
        assert book.backfill_index() is None  # once per table
        marker = store._index.read_row(decision_index.BACKFILLED_KEY, filter_=latest_cells())
        assert marker is not None and REF_FAMILY in marker.cells
