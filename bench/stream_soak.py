"""Soak of the stream job with card-episode cases (issue 20): ``python -m bench.stream --soak``.

Paced traffic at ``rate`` tx/s for ``seconds`` over a realistic card population (each transaction on a
card drawn from ``cards``) plus ``busy`` cards that pay every ``busy_every_s`` seconds (a transit or
corporate card: the velocity rule holds for them all the time). Measured against the real job on the
emulators:

- alerts per busy card and per case (goal: at most 2 per episode);
- every anomalous transaction of the other cards is a member of a case that alerted (none suppressed);
- event time -> alert received for the alerts that open a TX_ANOMALY case (goal: p99 < 2 s at 500 tx/s);
- whether the job kept up (scored/s while sending, backlog at the end);
- the baseline from the same run: flagged transactions, each of which was an alert before cases were
  card episodes, next to the alerts published and the cases opened.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SOAK_RESULTS = Path(__file__).resolve().parent / "results" / "stream_soak.json"


def _pool(seed: int, n: int = 20_000) -> tuple[list[Any], list[Any]]:
    """Transactions to cycle through (features only: ids, cards and times are set per send): all, and normals."""
    from fraudscore import schema
    from fraudscore.dev.generate import generate_frame

    frame = generate_frame(n, fraud_rate=0.02, seed=seed, cards=n)
    now = datetime.now(UTC)
    txs, normals = [], []
    for i, row in enumerate(frame.to_dict("records")):
        tx = schema.from_csv_row({k: str(v) for k, v in row.items()} | {"Time": "0"}, row_number=i, epoch=now)
        txs.append(tx)
        if int(row["Class"]) == 0:
            normals.append(tx)
    return txs, normals


def send(
    res: Any, seconds: float, rate: float, cards: int, busy: int, busy_every_s: float, seed: int = 41
) -> tuple[dict[str, float], dict[str, str]]:
    """Publishes the soak's traffic, paced; returns what was sent: id -> event time, id -> card."""
    from google.cloud import pubsub_v1

    from fraudscore import schema
    from fraudscore.v1.transaction_pb2 import Transaction

    pool, normals = _pool(seed)
    rng = np.random.default_rng(seed)
    client = pubsub_v1.PublisherClient()
    topic = res.topic_path(res.transactions_topic)
    sent: dict[str, float] = {}
    card_of: dict[str, str] = {}
    busy_at = sorted(
        (j * busy_every_s / busy + k * busy_every_s, j)
        for j in range(busy)
        for k in range(int(seconds // busy_every_s) + 1)
    )
    n = int(seconds * rate)
    busy_i = 0
    pending: list[Any] = []
    start = time.perf_counter()

    def publish(tx: Any) -> None:
        tx.event_time.FromDatetime(datetime.now(UTC))
        sent[tx.transaction_id] = tx.event_time.ToDatetime(tzinfo=UTC).timestamp()
        card_of[tx.transaction_id] = tx.card_id
        pending.append(client.publish(topic, schema.to_json(tx), transaction_id=tx.transaction_id))

    for i in range(n):
        due = i / rate
        while busy_i < len(busy_at) and busy_at[busy_i][0] <= due:
            _, j = busy_at[busy_i]
            tx = Transaction()
            tx.CopyFrom(normals[(busy_i * 7) % len(normals)])
            tx.transaction_id, tx.card_id = f"soak-busy-{j}-{busy_i}", f"soak-busy-{j}"
            publish(tx)
            busy_i += 1
        delay = start + due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        tx = Transaction()
        tx.CopyFrom(pool[i % len(pool)])
        tx.transaction_id, tx.card_id = f"soak-{i}", f"soak-card-{int(rng.integers(cards))}"
        publish(tx)
        if len(pending) >= 2_000:
            for f in pending:
                f.result(timeout=60)
            pending.clear()
    for f in pending:
        f.result(timeout=60)
    return sent, card_of


def soak(
    argv: list[str],
    port: int,
    res: Any,
    log: Path,
    *,
    seconds: float,
    rate: float,
    cards: int,
    busy: int,
    busy_every_s: float,
) -> dict[str, Any]:
    from bench.stream import paced, read_alerts
    from cases.store import CaseStore

    card_of: dict[str, str] = {}

    def traffic() -> dict[str, float]:
        sent, cards_sent = send(res, seconds, rate, cards, busy, busy_every_s)
        card_of.update(cards_sent)
        return sent

    def job_figures() -> dict[str, Any]:
        names = ("alerts_published", "cases_opened", "cases_escalated", "case_members")
        return {
            "job_metrics": {n: _metric_sum(port, f"fraudscore_stream_{n}_total") for n in names},
            "flagged_transactions_by_reason": _by_label(port, "fraudscore_stream_flagged_total", "reason"),
            "job_rss_mb_at_end": _rss_mb(port),
        }

    sent, figures, alerts_file = paced(argv, port, res, log, traffic, catch_up_s=120, settle_s=10, at_end=job_figures)
    alerts = [
        a["attributes"] | {"received": a["received"], "published": a["published"]} for a in read_alerts(alerts_file)
    ]
    with CaseStore(res) as store:
        members = [c for c in store.flagged_transactions() if c.transaction_id in sent]
    return {
        "rate_tx_per_s": rate,
        "seconds": seconds,
        "cards_drawn_from": cards,
        "busy_cards": busy,
        "busy_every_s": busy_every_s,
        **figures,
        **summarize(alerts, members, sent, card_of),
    }


def summarize(
    alerts: list[dict[str, Any]], members: list[Any], sent: dict[str, float], card_of: dict[str, str]
) -> dict[str, Any]:
    """The soak's figures from the alerts received and the member rows stored."""
    busy_cards = {c for c in card_of.values() if c.startswith("soak-busy-")}
    per_case = Counter(a["case_id"] for a in alerts)
    busy_alerts: dict[str, list[int]] = defaultdict(list)  # card -> alerts per case
    for case_id, n in per_case.items():
        card = next(a["card_id"] for a in alerts if a["case_id"] == case_id)
        if card in busy_cards:
            busy_alerts[card].append(n)
    alerted = set(per_case)
    anomalous_other = [m for m in members if "TX_ANOMALY" in m.reasons and m.card_id not in busy_cards]
    unalerted = [m.transaction_id for m in anomalous_other if m.episode_id not in alerted]
    opening = [
        a["received"] - sent[a["transaction_id"]]
        for a in alerts
        if a.get("kind") == "opened" and "TX_ANOMALY" in a.get("reasons", "") and a.get("transaction_id") in sent
    ]
    to_publish = [
        a["published"] - sent[a["transaction_id"]]
        for a in alerts
        if a.get("kind") == "opened" and "TX_ANOMALY" in a.get("reasons", "") and a.get("transaction_id") in sent
    ]
    lags = np.array(opening)
    return {
        "sent": len(sent),
        "distinct_cards": len(set(card_of.values())),
        "alerts": len(alerts),
        "cases_alerted": len(alerted),
        "flagged_transactions_stored": len(members),
        "busy_card_alerts_per_case_max": max((max(v) for v in busy_alerts.values()), default=0),
        "busy_card_cases": {card: len(v) for card, v in sorted(busy_alerts.items())},
        "busy_card_alerts": {card: sum(v) for card, v in sorted(busy_alerts.items())},
        "busy_card_flagged_transactions": sum(1 for m in members if m.card_id in busy_cards),
        "anomalous_transactions_other_cards": len(anomalous_other),
        "anomalous_other_without_an_alerted_case": len(unalerted),
        "opening_alerts_measured": len(opening),
        "opening_alert_p50_s": float(np.percentile(lags, 50)) if len(lags) else None,
        "opening_alert_p99_s": float(np.percentile(lags, 99)) if len(lags) else None,
        "opening_alert_max_s": float(lags.max()) if len(lags) else None,
        "opening_to_publish_p99_s": float(np.percentile(to_publish, 99)) if to_publish else None,
    }


def _scrape(port: int) -> str:
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def _by_label(port: int, name: str, label: str) -> dict[str, float]:
    """A metric's samples by one label's value ("" for a sample without labels)."""
    out: dict[str, float] = {}
    for line in _scrape(port).splitlines():
        if line.startswith((name + "{", name + " ")):
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0] if label and f'{label}="' in line else ""
            out[value] = out.get(value, 0.0) + float(line.split()[-1])
    return out


def _metric_sum(port: int, name: str) -> float:
    return sum(_by_label(port, name, "").values())


def _rss_mb(port: int) -> float | None:
    """The job's resident memory, from its process_resident_memory_bytes (prometheus-client's process collector)."""
    for line in _scrape(port).splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[-1]) / 2**20
    return None
