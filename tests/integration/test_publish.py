"""``fraudscore publish`` against the Pub/Sub emulator: every valid row arrives once, intact."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fraudscore import features
from fraudscore.config import Resources
from fraudscore.dev.generate import generate_frame, write_csv
from fraudscore.dev.publish import PublishConfig, make_publisher, run
from fraudscore.schema import parse_json
from fraudscore.v1.transaction_pb2 import Transaction

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def pull_all(resources: Resources, expected: int) -> list[tuple[Transaction, dict[str, str]]]:
    """Pulls and acks until ``expected`` messages arrived, then checks that nothing more comes."""
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = resources.subscription_path(resources.transactions_subscription)
    received: list[tuple[Transaction, dict[str, str]]] = []
    try:
        empty_pulls = 0
        while empty_pulls < (1 if len(received) >= expected else 5):
            try:
                response = subscriber.pull(request={"subscription": path, "max_messages": 1000}, timeout=2)
            except exceptions.DeadlineExceeded:
                response = None
            messages = response.received_messages if response else []
            if not messages:
                empty_pulls += 1
                continue
            subscriber.acknowledge(request={"subscription": path, "ack_ids": [m.ack_id for m in messages]})
            received += [(parse_json(m.message.data), dict(m.message.attributes)) for m in messages]
    finally:
        subscriber.close()
    return received


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_frame(120, fraud_rate=0.05, seed=11)


def test_publishes_every_row_once_with_attributes(
    tmp_path: Path, frame: pd.DataFrame, unique_resources: Resources
) -> None:
    data = tmp_path / "small.csv"
    write_csv(frame, data)
    config = PublishConfig(
        data=data,
        topic_path=unique_resources.topic_path(unique_resources.transactions_topic),
        rate=5000.0,
        speedup=60.0,
        limit=None,
        start=START,
        id_prefix="it",
    )
    publisher: Any = make_publisher()
    try:
        published, failed, stats = run(config, publisher)
    finally:
        publisher.stop()
    assert (published, failed, stats.rows, sum(stats.rejected.values())) == (120, 0, 120, 0)

    received = pull_all(unique_resources, 120)
    assert len(received) == 120
    by_id = {tx.transaction_id: (tx, attrs) for tx, attrs in received}
    assert sorted(by_id) == sorted(f"it-{i}" for i in range(1, 121))
    time0 = float(frame[features.TIME].iloc[0])
    for number, source in enumerate(frame.itertuples(index=False), start=1):
        tx, attrs = by_id[f"it-{number}"]
        assert attrs == {
            "transaction_id": tx.transaction_id,
            "card_id": tx.card_id,
            "event_time": tx.event_time.ToJsonString(),
        }
        assert tx.card_id == source.card_id and tx.merchant_id == source.merchant_id
        assert tx.amount == pytest.approx(source.Amount) and tx.label == source.Class
        # Event time: anchored at --start, the file's Time gaps compressed 60x.
        offset = (tx.event_time.ToDatetime(tzinfo=UTC) - START).total_seconds()
        assert offset == pytest.approx((source.Time - time0) / 60.0, abs=1e-3)


def test_cli_publishes_limit_and_reports_rejections(
    tmp_path: Path, frame: pd.DataFrame, unique_resources: Resources
) -> None:
    bad = frame.head(30).astype({features.AMOUNT: object, "V5": object})
    bad.loc[3, features.AMOUNT] = "twelve"
    bad.loc[7, "V5"] = "inf"
    data = tmp_path / "with_bad_rows.csv"
    bad.to_csv(data, index=False)
    cli = [sys.executable, "-m", "fraudscore.cli", "publish", "--data", str(data), "--rate", "2000/s"]
    result = subprocess.run(
        [
            *cli,
            *("--start", "2026-06-01T12:00:00Z", "--limit", "20"),
            *("--topic", unique_resources.transactions_topic, "--project", unique_resources.project),
        ],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "published 20 transactions" in result.stdout
    # 22 rows read to find 20 valid ones; the two bad ones are reported by field.
    assert "22 rows read" in result.stdout and "rejected 2 rows (Amount: 1, V5: 1)" in result.stdout
    assert "row 4 rejected: Amount: not a number: 'twelve'" in result.stderr
    assert len(pull_all(unique_resources, 20)) == 20


def test_cli_rejects_unreadable_files(tmp_path: Path, emulators: object) -> None:
    incomplete = tmp_path / "incomplete.csv"
    incomplete.write_text("Time,V1,V2,Amount\n0,1,2,3\n")
    result = subprocess.run(
        [sys.executable, "-m", "fraudscore.cli", "publish", "--data", str(incomplete)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    missing = ", ".join(f"V{i}" for i in range(3, 29))
    assert f"error: {incomplete}: missing columns {missing}" in result.stderr
