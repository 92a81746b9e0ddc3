"""The durable one-alert-per-case record (CaseStore.claim) and DeliverCases on the Bigtable and Pub/Sub emulators."""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam

from fraudscore.config import Resources
from stream.cases.store import ALERTED, HELD, MINE, WON, CaseStore
from stream.records import Case
from tests.integration.test_stream_pipeline import Puller


def _case(tx: str) -> Case:
    return Case(
        transaction_id=tx,
        card_id="card-1",
        merchant_id="m",
        event_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        amount=12.5,
        reconstruction_error=3.0,
        threshold=1.0,
        model_version=1,
        reasons=("TX_ANOMALY",),
    )


def test_first_claim_wins_then_alerted_then_takeover_after_lease(unique_resources: Resources) -> None:
    res = unique_resources
    with CaseStore(res.project, res.bigtable_instance, res) as store:
        case = _case("tx-1")
        assert store.claim(case, "aaaa")[0] == WON
        assert store.claim(case, "aaaa")[0] == MINE
        outcome, wait = store.claim(case, "bbbb", lease_s=30)
        assert outcome == HELD and 0 < wait <= 30
        # The holder died before recording "alerted": after the lease exactly one taker wins.
        assert store.claim(case, "cccc", lease_s=0)[0] == WON
        assert store.claim(case, "dddd", lease_s=30)[0] == HELD
        store.write_index([case])
        store.mark_alerted([(case, "msg-1")])
        assert store.claim(case, "eeee", lease_s=0)[0] == ALERTED
        claim, alerted = store.alert_state("tx-1")
        assert claim is not None and claim.startswith(b"cccc@") and alerted == b"msg-1"
        assert store.get("tx-1").case == case  # the record came with the claim


def test_deliver_cases_alerts_once_across_runs(unique_resources: Resources) -> None:
    """Two pipeline runs (a restart) and a duplicate in one batch: one alert per case, with its case_id attribute."""
    from stream.cases.sink import DeliverCases

    res = unique_resources
    cases = [_case(f"tx-{i}") for i in range(5)]
    for run in range(2):
        with beam.Pipeline() as p:
            _ = (
                p
                | f"Cases{run}" >> beam.Create([*cases, cases[0]])
                | DeliverCases(res.project, res.bigtable_instance, res, batch_size=3)
            )
    alerts = Puller(res, res.alerts_subscription).settle(2, 30)
    ids = sorted(m.attributes["case_id"] for m in alerts)
    assert ids == sorted(c.case_id for c in cases)
    with CaseStore(res.project, res.bigtable_instance, res) as store:
        for c in cases:
            assert store.alert_state(c.case_id)[1] is not None
            assert store.get(c.case_id).case == c
