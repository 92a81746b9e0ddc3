"""`fraudscore score` against a real server: one JSON transaction, a CSV file with a bad row."""

from __future__ import annotations

import argparse
import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudscore import schema
from scorer import client
from tests.integration.scorer_support import ServerThread, config, source_model, transactions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    thread = ServerThread(config(source_model(request)))
    thread.wait_serving()
    yield thread
    thread.close()


def _args(target: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    return parser.parse_args(["--target", target, *argv])


def test_json_transaction_is_scored(server, request: pytest.FixtureRequest, capsys) -> None:
    tx = transactions(Path(request.getfixturevalue("train_csv")), 1)[0]
    assert client.main(_args(server.target, "--json", schema.to_json(tx).decode())) == 0
    line, *explanation = capsys.readouterr().out.strip().splitlines()
    # Then each top feature against the training normals' range: "  V13 = 3.031 (normals p1..p99 ...), 28% ...".
    assert explanation and all(
        re.fullmatch(r"  \w+ = \S+ \(normals p1\.\.p99 \S+\), \d+% of the score", e) for e in explanation
    )
    assert re.fullmatch(
        rf"{tx.transaction_id} +error=\S+ +threshold=\S+ +(normal|ANOMALY) +v1 .*top: \w+ \d+%.*", line
    ), line


def test_invalid_json_is_reported_naming_the_field(server, capsys) -> None:
    assert client.main(_args(server.target, "--json", '{"transactionId": "t", "v": [1, 2]}')) == 1
    assert "invalid transaction" in capsys.readouterr().err


def test_csv_rows_are_scored_and_a_bad_row_is_reported(server, request, tmp_path: Path, capsys) -> None:
    source = Path(request.getfixturevalue("train_csv"))
    with source.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [next(reader) for _ in range(6)]
        fields = reader.fieldnames
    rows[2]["V3"] = "oops"
    path = tmp_path / "few.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields or [])
        writer.writeheader()
        writer.writerows(rows)
    assert client.main(_args(server.target, "--csv", str(path), "--limit", "5", "--batch-size", "2")) == 1
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 4
    assert "row 3: V3: not a number: 'oops'" in err and "scored 4, anomalies" in err and "rejected 1" in err


def test_unreachable_server_is_reported(capsys) -> None:
    args = _args("127.0.0.1:1", "--json", '{"transactionId": "t"}', "--timeout", "1")
    assert client.main(args) == 1
    assert "fraudscore score:" in capsys.readouterr().err
