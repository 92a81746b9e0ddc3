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
from tests.support import open_cases

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


@pytest.fixture
def burst(store: CaseStore, tag: str) -> dict[str, Case]:
    """Three flagged transactions of one card within 20 s, one of them a velocity member: one case."""
    start = datetime(2032, 1, 1, tzinfo=UTC) + timedelta(hours=int(tag, 16) % 100_000)
    flagged = [
        Case(f"{tag}-b{i}", f"{tag}-burst", "m", start + timedelta(seconds=10 * i), 5.0, err, 1.0, 3, reasons,
             top_features=(("V14", 0.6), ("V4", 0.2)))
        for i, (err, reasons) in enumerate(((1.5, (TX_ANOMALY,)), (0.5, ("CARD_VELOCITY",)), (4.5, (TX_ANOMALY,))))
    ]  # fmt: skip
    return open_cases(store, flagged)


def test_old_style_cases_are_listed_by_priority_and_marked(
    capsys: pytest.CaptureFixture[str], cases: list[Case], tag: str
) -> None:
    code, out, err = run_cli(capsys, "list", "--card", f"{tag}-card-0")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["CASE", "CARD", "OPENED", "(UTC)"]
    assert [line.split()[0] for line in lines[1:]] == [f"{tag}-tx-4", f"{tag}-tx-2", f"{tag}-tx-0"]
    assert lines[1].split()[-5:] == ["0.84", "(1.4x)", "TX_ANOMALY", "old-style", "-"]


def test_list_time_range_as_json(capsys: pytest.CaptureFixture[str], cases: list[Case]) -> None:
    since = cases[1].event_time.isoformat()
    until = cases[4].event_time.isoformat()
    code, out, _ = run_cli(capsys, "list", "--since", since, "--until", until, "--json")
    assert code == 0
    listed = json.loads(out)
    # By priority: the higher score first.
    assert [c["case_id"] for c in listed] == [c.transaction_id for c in cases[3:0:-1]]
    assert listed[0]["decision"] is None and listed[0]["style"] == "old-style" and listed[0]["members"] == 1


def test_list_since_relative_duration(capsys: pytest.CaptureFixture[str], store: CaseStore, tag: str) -> None:
    recent = Case(
        f"{tag}-now", f"{tag}-card", "m", datetime.now(UTC) - timedelta(minutes=5), 1.0, 2.0, 1.0, 1, (TX_ANOMALY,)
    )
    old = Case(
        f"{tag}-old", f"{tag}-card", "m", datetime.now(UTC) - timedelta(hours=2), 1.0, 2.0, 1.0, 1, (TX_ANOMALY,)
    )
    store.write([recent, old])
    code, out, _ = run_cli(capsys, "list", "--since", "15m", "--limit", "10000", "--json")
    ids = {c["case_id"] for c in json.loads(out)}
    assert code == 0 and f"{tag}-now" in ids and f"{tag}-old" not in ids


def test_a_burst_is_one_case_listed_shown_labelled_and_closed_in_subprocesses(
    burst: dict[str, Case], tag: str, store: CaseStore
) -> None:
    env = {**os.environ, "USER": "carol"}
    case_id = next(iter(burst.values())).episode_id

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fraudscore.cli", "cases", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("list", "--card", f"{tag}-burst", "--json")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr  # no library warnings on the terminal
    (case,) = json.loads(listed.stdout)
    assert (case["case_id"], case["members"], case["status"], case["band"]) == (case_id, 3, "open", 3)
    assert case["reasons"] == [TX_ANOMALY, "CARD_VELOCITY"] and case["total_amount"] == 15.0
    shown = cli("get", case_id)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert f"case          {case_id}" in shown.stdout and "members       3" in shown.stdout
    assert sum(f"{tag}-b" in line and "V14 60%" in line for line in shown.stdout.splitlines()) == 3
    labelled = cli("label", case_id, "--legit", "--note", "commuter card")
    assert labelled.returncode == 0, labelled.stderr
    assert f"{case_id}: 3 member(s) labelled legit by carol" in labelled.stdout
    again = cli("close", case_id)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith(f"error: case {case_id} is already closed (at ")
    assert "by carol" in again.stderr
    # Every member's own row carries the label: what calibrate and train --labels-from-cases read.
    labels = {
        c.transaction_id: d[0].verdict for c, d in store.labelled() if c is not None and c.card_id.startswith(tag)
    }
    assert labels == dict.fromkeys(burst, "legit")


def test_filters_and_close(capsys: pytest.CaptureFixture[str], burst: dict[str, Case], tag: str) -> None:
    case_id = next(iter(burst.values())).episode_id
    card = ("--card", f"{tag}-burst", "--json")
    assert [c["case_id"] for c in json.loads(run_cli(capsys, "list", *card, "--reason", "CARD_VELOCITY")[1])] == [
        case_id
    ]
    assert json.loads(run_cli(capsys, "list", *card, "--reason", "CARD_BURST")[1]) == []
    assert json.loads(run_cli(capsys, "list", *card, "--status", "closed")[1]) == []
    code, out, _ = run_cli(capsys, "close", case_id, "--analyst", "dan")
    assert code == 0 and out.startswith(f"{case_id}: closed by dan at ")
    assert [c["status"] for c in json.loads(run_cli(capsys, "list", *card, "--status", "closed")[1])] == ["closed"]


def test_reindex_rebuilds_the_decision_index_from_the_case_rows(
    capsys: pytest.CaptureFixture[str], store: CaseStore, burst: dict[str, Case]
) -> None:
    from cases import decision_index

    case_id = next(iter(burst.values())).episode_id
    since = datetime(2032, 1, 1, tzinfo=UTC)  # the bursts' years
    assert run_cli(capsys, "close", case_id, "--analyst", "dan")[0] == 0
    (indexed,) = [d for d in decision_index.read_since(store, since) if d.case_id == case_id]
    row = store._index.direct_row(decision_index.key(indexed.opened_ms, case_id))
    row.delete()
    row.commit()  # as if closed by a version without the index
    assert case_id not in {d.case_id for d in decision_index.read_since(store, since)}
    code, out, _ = run_cli(capsys, "reindex", "--json")
    assert code == 0 and json.loads(out)["indexed"] >= 1
    assert [d for d in decision_index.read_since(store, since) if d.case_id == case_id] == [indexed]


def test_old_style_labels_by_transaction_and_keeps_history(
    capsys: pytest.CaptureFixture[str], cases: list[Case]
) -> None:
    tx = cases[0].transaction_id
    assert run_cli(capsys, "label", "--transaction", tx, "--fraud", "--analyst", "ann")[0] == 0
    assert run_cli(capsys, "label", "--transaction", tx, "--legit", "--analyst", "bob", "--note", "travelling")[0] == 0
    code, out, _ = run_cli(capsys, "get", tx, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["style"] == "old-style"
    assert [(d["verdict"], d["analyst"]) for d in shown["decisions"]] == [("legit", "bob"), ("fraud", "ann")]
    assert shown["member_records"][0]["transaction_id"] == tx
    code, out, _ = run_cli(capsys, "get", tx)
    assert "old-style: one transaction" in out and "decision      legit by bob" in out
    code, out, _ = run_cli(capsys, "list", "--card", cases[0].card_id)
    assert "legit (bob)" in next(line for line in out.splitlines() if line.startswith(tx))


def test_errors_exit_1_with_a_one_line_message_and_write_nothing(
    capsys: pytest.CaptureFixture[str], cases: list[Case], burst: dict[str, Case], tag: str, store: CaseStore
) -> None:
    def error(*argv: str) -> str:
        code, out, err = run_cli(capsys, *argv)
        assert (code, out) == (1, "") and err.count("\n") == 1, (code, out, err)
        return err

    assert f"no case or flagged transaction '{tag}-missing'" in error("get", f"{tag}-missing")
    assert "no case or flagged transaction" in error("label", f"{tag}-missing", "--legit")
    assert "no case or flagged transaction" in error("close", f"{tag}-missing")
    old = cases[1].transaction_id
    assert f"'{old}' is an old-style case" in error("label", old, "--fraud")
    assert "--transaction" in error("close", old)
    member = f"{tag}-b0"
    case_id = burst[member].episode_id
    assert f"'{member}' is a transaction of case {case_id}" in error("label", member, "--fraud")
    assert f"'{case_id}' is a case id, not a transaction" in error("label", "--transaction", case_id, "--fraud")
    assert "'yesterday': expected a duration" in error("list", "--since", "yesterday")
    assert "must be after --since" in error("list", "--since", "1h", "--until", "2h")
    # Nothing was written by any of them: no decision anywhere on these rows.
    assert not [c for c, _ in store.labelled() if c is not None and c.transaction_id.startswith(tag)]
