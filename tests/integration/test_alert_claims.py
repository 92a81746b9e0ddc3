"""The durable one-alert-per-(case, component) claim (CaseStore.claim_targets) and DeliverCases on the Bigtable and
Pub/Sub emulators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import apache_beam as beam

from cases.episode_rows import alerted_column, claim_column
from cases.records import Case
from cases.store import ALERTED, HELD, MINE, WON, CaseStore, ClaimTarget
from fraudscore.config import Resources
from tests.integration.test_stream_pipeline import Puller


def _case(tx: str, card: str = "card-1") -> Case:
    return Case(
        transaction_id=tx,
        card_id=card,
        merchant_id="m",
        event_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        amount=12.5,
        reconstruction_error=3.0,
        threshold=1.0,
        model_version=1,
        reasons=("TX_ANOMALY",),
    )


def _target(key: str, component: str = "reason-TX_ANOMALY") -> ClaimTarget:
    """The claim of one alert component on a case row (cases.episode_store claims these)."""
    return ClaimTarget(key.encode(), claim_column(component), alerted_column(component))


def _alerted(store: CaseStore, target: ClaimTarget, message_id: str) -> None:
    from cases.row_writes import SetCell

    cell = SetCell("case", target.alerted_column, 1_000, message_id.encode())
    store._write_rows(store._case_writes, store._cases_name, [(target.key, [cell])])


def _cells(store: CaseStore, target: ClaimTarget) -> dict[bytes, bytes]:
    return store._latest_case_cells([target.key]).get(target.key, {})


def test_first_claim_wins_then_alerted_then_takeover_after_lease(unique_resources: Resources) -> None:
    res = unique_resources
    with CaseStore(res) as store:
        target = _target("row-1")
        assert store.claim_targets([target], "aaaa")[0][0] == WON
        assert store.claim_targets([target], "aaaa")[0][0] == MINE
        outcome, wait = store.claim_targets([target], "bbbb", lease_s=30)[0]
        assert outcome == HELD and 0 < wait <= 30
        # The holder died before recording "alerted": after the lease exactly one taker wins.
        assert store.claim_targets([target], "cccc", lease_s=0)[0][0] == WON
        assert store.claim_targets([target], "dddd", lease_s=30)[0][0] == HELD
        # Another component of the same row is a claim of its own.
        assert store.claim_targets([_target("row-1", "band-2")], "dddd")[0][0] == WON
        _alerted(store, target, "msg-1")
        assert store.claim_targets([target], "eeee", lease_s=0)[0][0] == ALERTED
        cells = _cells(store, target)
        assert cells[target.claim_column].startswith(b"cccc@") and cells[target.alerted_column] == b"msg-1"


def test_deliver_cases_alerts_once_across_runs(unique_resources: Resources) -> None:
    """Two pipeline runs (a restart) and a duplicate in one batch: one alert per case, with its case_id attribute."""
    from cases.casebook import Casebook
    from cases.episodes import case_id_for
    from stream.case_sink import DeliverCases

    res = unique_resources
    cases = [_case(f"tx-{i}", f"card-{i}") for i in range(5)]  # one card each: five cases
    for run in range(2):
        with beam.Pipeline() as p:
            _ = p | f"Cases{run}" >> beam.Create([*cases, cases[0]]) | DeliverCases(res, batch_size=3)
    alerts = Puller(res, res.alerts_subscription).settle(2, 30)
    ids = sorted(m.attributes["case_id"] for m in alerts)
    assert ids == sorted(case_id_for(c.card_id, c.transaction_id) for c in cases)
    with CaseStore(res) as store:
        for c in cases:
            episode = Casebook(store).find(case_id_for(c.card_id, c.transaction_id))
            assert episode.alerted == {"reason-TX_ANOMALY", "band-2"}  # error 3 x the threshold
            assert store.get(c.transaction_id).case.transaction_id == c.transaction_id


def test_two_claimers_of_one_bulk_round_never_both_win(unique_resources: Resources) -> None:
    """Two writers claim the same 300 components at the same moment; a minute later two others take them over."""
    import threading
    from datetime import timedelta

    res = unique_resources
    targets = [_target(f"row-race-{i // 3}", f"band-{i % 3}") for i in range(300)]

    def now() -> datetime:
        return datetime.now(UTC)

    def later() -> datetime:  # past the first claims' lease
        return now() + timedelta(seconds=60)

    for tokens, clock in ((("aa01", "bb02"), now), (("cc03", "dd04"), later)):
        stores = [CaseStore(res, clock=clock) for _ in tokens]
        outcomes: dict[str, list[tuple[str, float]]] = {}
        start = threading.Barrier(2)

        def claim(store: CaseStore, token: str, start: threading.Barrier, outcomes: dict[str, Any]) -> None:
            start.wait()
            outcomes[token] = store.claim_targets(targets, token, lease_s=30)

        threads = [
            threading.Thread(target=claim, args=(s, t, start, outcomes)) for s, t in zip(stores, tokens, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        first, second = (outcomes[t] for t in tokens)
        for target, a, b in zip(targets, first, second, strict=True):
            # Exactly one winner per component; the other sees a live claim (or, taking over, lost the race).
            assert sorted([a[0], b[0]]) == [HELD, WON], (target, a, b)
        # The claim cell names the winner.
        for target, a in zip(targets[:20], first, strict=False):
            winner = tokens[0] if a[0] == WON else tokens[1]
            assert _cells(stores[0], target)[target.claim_column].startswith(winner.encode() + b"@")
        for s in stores:
            s.close()


def test_a_component_twice_in_one_round_is_won_once(unique_resources: Resources) -> None:
    res = unique_resources
    twice, once = _target("row-twice"), _target("row-once")
    with CaseStore(res) as store:
        outcomes = [o for o, _ in store.claim_targets([twice, once, twice], "ee05")]
        assert sorted(outcomes[::2]) == [MINE, WON] and outcomes[1] == WON
        _alerted(store, twice, "msg-7")
        assert [o for o, _ in store.claim_targets([twice, _target("row-new")], "ff06", lease_s=0)] == [ALERTED, WON]


def test_bulk_writes_report_the_rows_bigtable_refused(unique_resources: Resources) -> None:
    from cases.row_writes import BulkWrite, SetCell

    res = unique_resources
    with CaseStore(res) as store:
        writer = BulkWrite(store._client, store._cases)
        good = (b"row-ok", [SetCell("case", b"alerted", 1_000, b"m-1")])
        bad = (b"row-bad", [SetCell("no-such-family", b"x", 1_000, b"v")])
        failures = writer.write([good, bad])
        assert [key for key, _ in failures] == [b"row-bad"] and "code" in failures[0][1]
        assert writer.write([good]) == []
        row = store._cases.read_row(b"row-ok")
        assert row is not None and row.cells["case"][b"alerted"][0].value == b"m-1"
