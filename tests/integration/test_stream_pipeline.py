"""The stream job end to end on the real emulators with a real model.

One streaming run (``fraudscore stream`` in a subprocess, DirectRunner) is
shared by the checks, because starting it costs ~20 s here:

1. phase one: generated normal and fraud transactions arranged into a fraud
   burst, a velocity burst and quiet cards, malformed messages between them
   and redelivered duplicates; expected cases come from scoring the same
   transactions offline with LoadedModel and applying the documented rules;
   each flagged transaction is a member of its card's case, every case
   alerts once per escalation (a burst is one case, one alert);
2. a new model version is published into the model base mid-stream; phase
   two's flagged transactions must carry it;
3. a bounded replay of phase one's input flags the same transactions.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cases.records import Case
from fraudscore import model as fmodel
from fraudscore import schema
from fraudscore.config import Resources
from fraudscore.dev.generate import generate_frame
from fraudscore.dev.processes import free_port, stop_group
from fraudscore.v1.transaction_pb2 import Transaction
from stream.rules import CARD_BURST, CARD_VELOCITY, TX_ANOMALY, RuleConfig
from tests.integration.scorer_support import copy_base
from tests.support import copy_version, phase

ROOT = Path(__file__).resolve().parents[2]
RULES = RuleConfig(burst_min_anomalies=2, velocity_min_count=6)
STARTUP_TIMEOUT_S = 120
RESULT_TIMEOUT_S = 90
SAMPLE_RATE = 1.0  # every scored transaction in the traffic sample, so each one can be checked there


# --- input: transactions arranged into known scenarios ------------------------------------------


@dataclass(frozen=True)
class Scenario:
    transactions: list[Transaction]
    malformed: dict[str, bytes]  # expected dlq_field -> body


def _rows(n: int, fraud: bool, seed: int) -> list[dict[str, str]]:
    frame = generate_frame(4000, fraud_rate=0.05, seed=seed)
    picked = frame[frame["Class"] == (1 if fraud else 0)].head(n)
    return [{k: str(v) for k, v in row.items()} for row in picked.to_dict("records")]


def _tx(row: dict[str, str], tx_id: str, card: str, at: datetime) -> Transaction:
    tx = schema.from_csv_row({**row, "Time": "0", "card_id": card}, row_number=0, epoch=at)
    tx.transaction_id = tx_id
    return tx


def scenario(prefix: str, anchor: datetime, seed: int) -> Scenario:
    """Quiet cards (2 txs each), one card with 4 frauds among 2 normals, one card with 7 normals in 35 s."""
    normals, frauds = iter(_rows(40, False, seed)), iter(_rows(4, True, seed))
    txs: list[Transaction] = []
    for card in range(8):
        for j in range(2):
            txs.append(
                _tx(next(normals), f"{prefix}-q{card}-{j}", f"{prefix}-quiet-{card}", anchor + timedelta(seconds=j))
            )
    for j in range(6):
        row, kind = (next(frauds), "f") if j % 3 else (next(normals), "n")
        txs.append(_tx(row, f"{prefix}-b{kind}{j}", f"{prefix}-burst", anchor + timedelta(seconds=5 * j)))
    for j in range(7):
        txs.append(_tx(next(normals), f"{prefix}-v{j}", f"{prefix}-fast", anchor + timedelta(seconds=5 * j)))
    good = json.loads(schema.to_json(txs[0]))
    malformed = {
        "<body>": b'{"transactionId": "broken"',  # bad JSON
        "card_id": json.dumps({k: v for k, v in good.items() if k != "cardId"}).encode(),
        "amount": json.dumps({**good, "amount": "NaN"}).encode(),
        "v": json.dumps({**good, "v": "not a list"}).encode(),
        "transaction_id": json.dumps({**good, "transactionId": 42}).encode(),
    }
    return Scenario(txs, malformed)


def expected_cases(txs: list[Transaction], loaded: fmodel.LoadedModel) -> dict[str, tuple[str, ...]]:
    """The documented rules applied offline: each card's transactions fall in one 10-minute window."""
    scores = loaded.score(np.array([schema.feature_row(tx, loaded.features) for tx in txs]))
    anomalous = {tx.transaction_id for tx, flag in zip(txs, scores.is_anomaly, strict=True) if flag}
    expected: dict[str, tuple[str, ...]] = {tx_id: (TX_ANOMALY,) for tx_id in anomalous}
    for card in {tx.card_id for tx in txs}:
        members = [tx.transaction_id for tx in txs if tx.card_id == card]
        reasons = []
        if sum(m in anomalous for m in members) >= RULES.burst_min_anomalies:
            reasons.append(CARD_BURST)
        if len(members) >= RULES.velocity_min_count:
            reasons.append(CARD_VELOCITY)
        for m in members:
            if m not in anomalous and reasons:
                expected[m] = tuple(reasons)
    return expected


# --- Pub/Sub and Bigtable helpers ---------------------------------------------------------------


def publish(res: Resources, bodies: list[tuple[bytes, dict[str, str]]]) -> None:
    from google.cloud import pubsub_v1

    client = pubsub_v1.PublisherClient()
    topic = res.topic_path(res.transactions_topic)
    for future in [client.publish(topic, data, **attrs) for data, attrs in bodies]:
        future.result(timeout=30)


def tx_message(tx: Transaction) -> tuple[bytes, dict[str, str]]:
    return schema.to_json(tx), {"transaction_id": tx.transaction_id, "event_time": tx.event_time.ToJsonString()}


class Puller:
    """Collects every message of a subscription seen so far."""

    def __init__(self, res: Resources, subscription: str) -> None:
        from google.cloud import pubsub_v1

        self._client = pubsub_v1.SubscriberClient()
        self._path = res.subscription_path(subscription)
        self.messages: list[Any] = []

    def poll(self) -> list[Any]:
        from google.api_core import exceptions

        try:
            response = self._client.pull(subscription=self._path, max_messages=500, timeout=2)
        except exceptions.DeadlineExceeded:
            return self.messages
        if response.received_messages:
            self._client.acknowledge(subscription=self._path, ack_ids=[m.ack_id for m in response.received_messages])
            self.messages.extend(m.message for m in response.received_messages)
        return self.messages

    def settle(self, quiet_s: float, timeout: float) -> list[Any]:
        """Polls until no new message has come for ``quiet_s`` seconds."""
        deadline = time.monotonic() + timeout
        seen, quiet_since = len(self.messages), time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            assert time.monotonic() < deadline, f"messages still arriving after {timeout:.0f} s"
            if len(self.poll()) != seen:
                seen, quiet_since = len(self.messages), time.monotonic()
            time.sleep(0.5)
        return self.messages

    def until(self, done: Any, timeout: float, what: str, log: Path | None = None) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not done(self.poll()):
            if time.monotonic() > deadline:
                tail = log.read_text()[-4000:] if log else ""
                raise AssertionError(f"timed out waiting for {what}; got {len(self.messages)} messages\n{tail}")
            time.sleep(0.5)
        return self.messages


def alerts_by_case(messages: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """The alerts (JSON) by case id, in arrival order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        alert = json.loads(m.data)
        out.setdefault(alert["case_id"], []).append(alert)
    return out


def alerted_components(messages: list[Any]) -> Counter[tuple[str, str]]:
    """How many alerts carried each (case, escalation component): one each when nothing repeats."""
    return Counter((a["case_id"], c) for m in messages for a in [json.loads(m.data)] for c in a["escalation"])


def stored_members(res: Resources) -> dict[str, Case]:
    """Every flagged transaction's row (the members of the cases), by transaction id."""
    from cases.store import CaseStore

    with CaseStore(res) as store:
        return {c.transaction_id: c for c in store.flagged_transactions()}


def stored_cases(res: Resources) -> dict[str, tuple[str, ...]]:
    """Flagged transactions by id with their reasons."""
    return {tx: c.reasons for tx, c in stored_members(res).items()}


def wait_for_members(res: Resources, ids: set[str], timeout: float, log: Path | None = None) -> dict[str, Case]:
    """Polls the case store until every id in ``ids`` has its member row; returns all member rows."""
    deadline = time.monotonic() + timeout
    while not ids <= set(found := stored_members(res)):
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log else ""
            raise AssertionError(f"{len(ids - set(found))} flagged transactions without a case row\n{tail}")
        time.sleep(0.5)
    return found


def sample_records(res: Resources) -> dict[str, dict[str, Any]]:
    """The traffic sample's records by transaction id."""
    from cases.store import CaseStore

    with CaseStore(res) as store:
        return {r["transaction_id"]: r for r in store.sample_records()}


def wait_for_sample(res: Resources, ids: set[str], timeout: float, log: Path) -> dict[str, dict[str, Any]]:
    """Polls the traffic sample until it holds every id in ``ids``; returns all its records."""
    deadline = time.monotonic() + timeout
    while not ids <= set(records := sample_records(res)):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(ids - set(records))} transactions not in the traffic sample\n" + log.read_text()[-3000:]
            )
        time.sleep(0.5)
    return records


def resource_flags(res: Resources) -> list[str]:
    return [f"--{name.replace('_', '-')}={value}" for name, value in vars(res).items() if name != "project"] + [
        f"--project={res.project}"
    ]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def model_base(tmp_path: Path, trained_model_base: Path) -> Path:
    return copy_base(Path(trained_model_base), tmp_path / "models")


@pytest.fixture
def stream_job(
    emulators: Any, unique_resources: Resources, model_base: Path, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    port = free_port()
    log_path = tmp_path / "stream.log"
    argv = [
        sys.executable, "-m", "fraudscore.cli", "stream",
        f"--model-base={model_base}", *resource_flags(unique_resources),
        f"--metrics-port={port}", "--model-watch=1", "--early-fire=1", "--allowed-lateness=3600",
        f"--burst-min-anomalies={RULES.burst_min_anomalies}", f"--velocity-min-count={RULES.velocity_min_count}",
        f"--sample-rate={SAMPLE_RATE}",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield {"proc": proc, "port": port, "log": log_path}
    finally:
        stop_group(proc)


def wait_for_metrics(job: dict[str, Any], needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        assert job["proc"].poll() is None, "stream job exited:\n" + job["log"].read_text()[-3000:]
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{job['port']}/metrics", timeout=2).read().decode()
            if needle in text:
                return text
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no {needle!r} in /metrics; log:\n" + job["log"].read_text()[-3000:])
        time.sleep(0.5)


def wait_for_model(job: dict[str, Any], res: Resources, probe: Transaction, needle: str) -> None:
    """Publishes a copy of a normal transaction, on a card of its own, each second until /metrics has ``needle``.

    The job looks for a new model version only when a batch arrives, at most every --model-watch
    seconds; a lone normal transaction on a new card makes no case.
    """
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    for i in itertools.count():
        tx = Transaction()
        tx.CopyFrom(probe)
        tx.transaction_id, tx.card_id = f"probe-{i}", f"probe-card-{i}"
        publish(res, [tx_message(tx)])
        try:
            wait_for_metrics(job, needle, 1.0)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


# --- the test -----------------------------------------------------------------------------------


def test_stream_end_to_end(
    stream_job: dict[str, Any], unique_resources: Resources, model_base: Path, tmp_path: Path
) -> None:
    res = unique_resources
    v1 = fmodel.load(model_base)
    wait_for_metrics(stream_job, "fraudscore_stream_transactions_total", STARTUP_TIMEOUT_S)  # the job is up

    with phase("one: transactions, malformed messages, duplicates"):
        # Phase one: good transactions, malformed messages between them, then duplicates of some good ones.
        one = scenario("p1", datetime.now(UTC), seed=11)
        expected = expected_cases(one.transactions, v1)
        assert any(r != (TX_ANOMALY,) for r in expected.values()), "scenario must exercise a card rule"
        messages = [tx_message(tx) for tx in one.transactions]
        bad = [(body, {"origin": f"bad-{field}"}) for field, body in one.malformed.items()]
        bad.append((b"x" * (schema.MAX_MESSAGE_BYTES + 10), {"origin": "bad-oversized"}))
        for i, item in enumerate(bad):
            messages.insert(3 * i + 1, item)
        publish(res, messages)
        publish(res, [tx_message(tx) for tx in one.transactions[-10:]])  # redelivered duplicates

        alerts = Puller(res, res.alerts_subscription)
        members = wait_for_members(res, set(expected), RESULT_TIMEOUT_S, stream_job["log"])
        dlq = Puller(res, res.dlq_subscription).until(
            lambda ms: len(ms) >= len(bad), 30, "dead letters", stream_job["log"]
        )
        case_ids = {members[i].episode_id for i in expected}
        alerts.until(lambda ms: case_ids <= set(alerts_by_case(ms)), RESULT_TIMEOUT_S, "phase one alerts")
        alerts.settle(3, RESULT_TIMEOUT_S)  # room for any (wrong) extra alert from later firings to show up
        by_case = alerts_by_case(alerts.messages)

        # Every flagged transaction is a member of a card's case; every case alerted, each escalation once.
        assert set(stored_members(res)) == set(expected)
        assert set(by_case) == case_ids
        assert all(n == 1 for n in alerted_components(alerts.messages).values()), "one alert per (case, escalation)"
        assert all([a["kind"] for a in v].count("opened") == 1 for v in by_case.values())
        # The burst card (frauds and normals within 30 s): one case holding every flagged transaction of it.
        burst = [tx for tx in expected if members[tx].card_id == "p1-burst"]
        assert len(burst) >= 4 and len({members[tx].episode_id for tx in burst}) == 1
        assert len(by_case[members[burst[0]].episode_id]) <= 1 + 4, "an opening plus at most one escalation per reason"
        for tx, reasons in expected.items():
            if reasons == (TX_ANOMALY,):
                assert members[tx].reasons == reasons
            else:  # card-level: the first firing's card reasons, never TX_ANOMALY
                assert set(members[tx].reasons) <= {CARD_BURST, CARD_VELOCITY}
        # Scores agree with the offline LoadedModel score of the same transaction.
        txs = {tx.transaction_id: tx for tx in one.transactions}
        ids = sorted(expected)
        offline = v1.score(np.array([schema.feature_row(txs[i], v1.features) for i in ids])).reconstruction_error
        online = [members[i].reconstruction_error for i in ids]
        np.testing.assert_allclose(online, offline, rtol=1e-5, atol=1e-7)
        from trainer.evaluate import offline_errors  # the trainer's own evaluation path

        rows = np.array([schema.feature_row(txs[i], v1.features) for i in ids])
        np.testing.assert_allclose(online, offline_errors(rows, model_base / str(v1.version)), rtol=1e-4, atol=1e-6)
        triggers = [a["transaction"] for v in by_case.values() for a in v]
        assert all(t["reconstruction_error"] == members[t["transaction_id"]].reconstruction_error for t in triggers)
        assert {t["model_version"] for t in triggers} == {members[i].model_version for i in ids} == {v1.version}

        # Dead letters: original payloads with field and reason; good messages around them were scored.
        by_origin = {m.attributes["origin"]: m for m in dlq}
        assert len(dlq) == len(bad)
        for field, body in one.malformed.items():
            letter = by_origin[f"bad-{field}"]
            assert letter.data == body
            assert letter.attributes["dlq_field"] == field and letter.attributes["dlq_reason"]
        assert by_origin["bad-oversized"].attributes["dlq_code"] == "oversized"

        # The traffic sample (rate 1 here): one row per scored transaction, duplicates rewriting the same row,
        # none for a malformed message, each with the raw features as published and the online score.
        sample = wait_for_sample(res, set(txs), RESULT_TIMEOUT_S, stream_job["log"])
        phase_one = {i: r for i, r in sample.items() if i.startswith("p1-")}
        assert set(phase_one) == set(txs)
        sampled_ids = sorted(phase_one)
        for tx_id in sampled_ids:
            record = phase_one[tx_id]
            assert record["feature_names"] == list(v1.features)
            assert record["model_version"] == v1.version and record["sampling_rate"] == SAMPLE_RATE
            np.testing.assert_array_equal(
                np.asarray(record["raw_features"], dtype=np.float32),
                np.asarray(schema.feature_row(txs[tx_id], v1.features), dtype=np.float32),
            )
        sampled_rows = np.array([schema.feature_row(txs[tx_id], v1.features) for tx_id in sampled_ids])
        np.testing.assert_allclose(
            [phase_one[tx_id]["reconstruction_error"] for tx_id in sampled_ids],
            v1.score(sampled_rows).reconstruction_error,
            rtol=1e-5,
            atol=1e-7,
        )

        # Prometheus names the dashboard relies on.
        text = wait_for_metrics(
            stream_job, f'fraudscore_model_info{{model="{v1.card.name}",version="{v1.version}"}} 1.0', 10
        )
        for name in (
            "fraudscore_stream_transactions_total",
            "fraudscore_stream_flagged_total",
            "fraudscore_stream_cases_opened_total",
            "fraudscore_stream_case_members_total",
            "fraudscore_stream_dead_letters_total",
            "fraudscore_reconstruction_error_bucket",
            "fraudscore_stream_event_lag_seconds_bucket",
        ):
            assert name in text

    with phase("two: a new model version without a restart"):
        # Phase two: a new model version appears; the job scores with it without a restart.
        copy_version(model_base, v1.version, v1.version + 1)
        v2 = fmodel.load(model_base)
        probe = next(tx for tx in one.transactions if tx.transaction_id not in expected)  # not anomalous
        v2_info = f'fraudscore_model_info{{model="{v2.card.name}",version="{v2.version}"}} 1.0'
        wait_for_model(stream_job, res, probe, v2_info)
        two = scenario("p2", datetime.now(UTC), seed=12)
        expected_two = {k: v for k, v in expected_cases(two.transactions, v2).items() if v == (TX_ANOMALY,)}
        publish(res, [tx_message(tx) for tx in two.transactions])
        members_two = wait_for_members(res, set(expected_two), RESULT_TIMEOUT_S, stream_job["log"])
        assert {members_two[i].model_version for i in expected_two} == {v2.version}
        wait_for_metrics(stream_job, f'fraudscore_model_info{{model="{v2.card.name}",version="{v2.version}"}} 1.0', 10)

    with phase("three: replay of phase one"):
        # Replay of phase one's input (JSON lines, duplicates included) gives the same cases.
        replay_res = _replay_resources(res)
        lines = tmp_path / "phase1.jsonl"
        lines.write_bytes(b"\n".join(data for data, _ in messages) + b"\n")
        _run_replay(lines, model_base, v1.version, replay_res)
        streamed = {k: v for k, v in stored_cases(res).items() if k.startswith("p1-")}
        replayed = stored_cases(replay_res)
        assert set(replayed) == set(streamed) == set(expected)
        assert {k for k, v in replayed.items() if v == (TX_ANOMALY,)} == {
            k for k, v in streamed.items() if v == (TX_ANOMALY,)
        }


def _replay_resources(res: Resources) -> Resources:
    from dataclasses import replace

    from fraudscore.resources import create_resources

    fresh = replace(
        res,
        alerts_topic=res.alerts_topic + "-replay",
        alerts_subscription=res.alerts_subscription + "-replay",
        dlq_topic=res.dlq_topic + "-replay",
        dlq_subscription=res.dlq_subscription + "-replay",
        cases_table=res.cases_table + "-replay",
        cases_by_time_table=res.cases_by_time_table + "-replay",
    )
    create_resources(fresh)
    return fresh


def _run_replay(path: Path, model_base: Path, version: int, res: Resources) -> None:
    """Replays with the phase-one model version (a copy holding only that version)."""
    import shutil

    from stream.pipeline import StreamConfig, run_with
    from stream.windows import WindowConfig

    only_v1 = path.parent / "replay-models"
    shutil.copytree(model_base / str(version), only_v1 / str(version))
    config = StreamConfig(
        model_base=str(only_v1),
        resources=res,
        rules=RULES,
        windows=WindowConfig(allowed_lateness_s=3600),
        replay=str(path),
    )
    state = run_with(config, ["--runner=DirectRunner"]).wait_until_finish()
    assert str(state).endswith("DONE")
