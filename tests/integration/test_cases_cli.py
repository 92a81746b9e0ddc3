"""``fraudscore cases`` against the Bigtable emulator: list, get, label, errors.

The command reads the default table names, so these tests use the session's
default resources and keep to their own card ids, transaction ids and times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cases.records import Case
from cases.store import CaseStore
from fraudscore.cli import main as cli_main
from fraudscore.config import Resources
from stream.rules import TX_ANOMALY

pytestmark = pytest.mark.integration


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def store(emulators: object, resources: Resources) -> Iterator[CaseStore]:
    with CaseStore(resources) as case_store:
        yield case_store


@pytest.fixture
def cases(store: CaseStore, tag: str) -> list[Case]:
    # A time range no other test writes to: a year far ahead, offset by this test's tag.
    start = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(hours=int(tag, 16) % 100_000)
    written = [
        Case(
            transaction_id=f"{tag}-tx-{i}",
            card_id=f"{tag}-card-{i % 2}",
            merchant_id="m-1",
            event_time=start + timedelta(minutes=i),
            amount=20.0 * (i + 1),
            reconstruction_error=0.8 + i / 100,
            threshold=0.6,
            model_version=2,
            reasons=(TX_ANOMALY,),
            top_features=(("V14", 0.5),),
        )
        for i in range(5)
    ]
    store.write(written)
    return written


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(["cases", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_by_card_prints_newest_first(capsys: pytest.CaptureFixture[str], cases: list[Case], tag: str) -> None:
    code, out, _ = run_cli(capsys, "list", "--card", f"{tag}-card-0")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "CARD", "TRANSACTION", "SCORE", "THRESHOLD", "REASONS", "DECISION"]
    assert [line.split()[3] for line in lines[1:]] == [f"{tag}-tx-4", f"{tag}-tx-2", f"{tag}-tx-0"]
    assert lines[1].split()[4:] == ["0.84", "0.6", "TX_ANOMALY", "-"]


def test_list_time_range_as_json(capsys: pytest.CaptureFixture[str], cases: list[Case]) -> None:
    since = cases[1].event_time.isoformat()
    until = cases[4].event_time.isoformat()
    code, out, _ = run_cli(capsys, "list", "--since", since, "--until", until, "--json")
    assert code == 0
    listed = json.loads(out)
    assert [c["transaction_id"] for c in listed] == [c.transaction_id for c in cases[1:4]]
    assert listed[0]["decision"] is None and listed[0]["top_features"] == [{"name": "V14", "share": 0.5}]


def test_list_since_relative_duration(capsys: pytest.CaptureFixture[str], store: CaseStore, tag: str) -> None:
    recent = Case(
        f"{tag}-now", f"{tag}-card", "m", datetime.now(UTC) - timedelta(minutes=5), 1.0, 2.0, 1.0, 1, (TX_ANOMALY,)
    )
    old = Case(
        f"{tag}-old", f"{tag}-card", "m", datetime.now(UTC) - timedelta(hours=2), 1.0, 2.0, 1.0, 1, (TX_ANOMALY,)
    )
    store.write([recent, old])
    code, out, _ = run_cli(capsys, "list", "--since", "15m", "--limit", "10000", "--json")
    ids = {c["transaction_id"] for c in json.loads(out)}
    assert code == 0 and f"{tag}-now" in ids and f"{tag}-old" not in ids


def test_label_and_get_round_trip_in_subprocesses(cases: list[Case], tag: str) -> None:
    env = {**os.environ, "USER": "carol"}
    tx = cases[3].transaction_id
    labelled = subprocess.run(
        [sys.executable, "-m", "fraudscore.cli", "cases", "label", tx, "--fraud", "--note", "card reported stolen"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert labelled.returncode == 0, labelled.stderr
    assert f"{tx}: labelled fraud by carol" in labelled.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "fraudscore.cli", "cases", "get", tx],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"transaction   {tx}" in shown.stdout
    assert "score         0.830000 (threshold 0.600000, 1.38x)" in shown.stdout
    decision_line = next(line for line in shown.stdout.splitlines() if line.startswith("decision"))
    assert "fraud by carol at " in decision_line and decision_line.endswith(": card reported stolen")


def test_label_legit_overrides_and_keeps_history(capsys: pytest.CaptureFixture[str], cases: list[Case]) -> None:
    tx = cases[0].transaction_id
    assert run_cli(capsys, "label", tx, "--fraud", "--analyst", "ann")[0] == 0
    assert run_cli(capsys, "label", tx, "--legit", "--analyst", "bob", "--note", "cardholder travelling")[0] == 0
    code, out, _ = run_cli(capsys, "get", tx, "--json")
    shown = json.loads(out)
    assert code == 0
    assert [(d["verdict"], d["analyst"]) for d in shown["decisions"]] == [("legit", "bob"), ("fraud", "ann")]
    assert shown["decision"]["note"] == "cardholder travelling"
    code, out, _ = run_cli(capsys, "list", "--card", cases[0].card_id)
    assert "legit (bob)" in out.splitlines()[-1]


def test_errors_exit_1_with_a_message(capsys: pytest.CaptureFixture[str], emulators: object, tag: str) -> None:
    code, out, err = run_cli(capsys, "get", f"{tag}-missing")
    assert (code, out) == (1, "") and f"no flagged case for transaction '{tag}-missing'" in err
    code, _, err = run_cli(capsys, "label", f"{tag}-missing", "--legit")
    assert code == 1 and "no flagged case" in err
    code, _, err = run_cli(capsys, "list", "--since", "yesterday")
    assert code == 1 and "'yesterday': expected a duration" in err
    code, _, err = run_cli(capsys, "list", "--since", "1h", "--until", "2h")
    assert code == 1 and "must be after --since" in err
