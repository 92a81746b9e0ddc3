"""ParseTransactions routing: valid messages are event-time stamped, everything else is a dead letter with a reason."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue

from fraudscore import schema
from fraudscore.v1.transaction_pb2 import Transaction
from stream.parse import DEAD_LETTERS, _ParseCsvFn, _ParseJsonFn, event_seconds, json_line_message
from stream.records import DeadLetter
from tests.unit.csv_forms import BAD_CASES, bad_archives, write_forms

NOW = 1_800_000_100.0


def good_tx(tx_id: str = "t1") -> dict[str, Any]:
    return {
        "transactionId": tx_id,
        "cardId": "card-1",
        "merchantId": "m-1",
        "eventTime": "2027-01-15T08:00:00Z",
        "amount": 12.5,
        "v": [0.1 * i for i in range(28)],
    }


def parse(data: bytes, attributes: dict[str, str] | None = None) -> list[Any]:
    return list(_ParseJsonFn(clock=lambda: NOW).process(PubsubMessage(data, attributes or {"k": "v"})))


def dead(outputs: list[Any]) -> DeadLetter:
    assert len(outputs) == 1 and isinstance(outputs[0], TaggedOutput) and outputs[0].tag == DEAD_LETTERS
    value = outputs[0].value
    assert isinstance(value, DeadLetter)
    return value


def test_valid_message_is_stamped_with_its_event_time() -> None:
    (out,) = parse(json.dumps(good_tx()).encode())
    assert isinstance(out, TimestampedValue) and isinstance(out.value, Transaction)
    assert out.value.transaction_id == "t1"
    assert float(out.timestamp) == pytest.approx(event_seconds(out.value))
    assert out.value.event_time.ToDatetime().year == 2027


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (b"{not json", "<body>", "malformed_body"),
        (b"\xff\xfe", "<body>", "bad_encoding"),
        (b"[1, 2]", "<body>", "malformed_body"),
        (json.dumps({k: v for k, v in good_tx().items() if k != "cardId"}).encode(), "card_id", "invalid_field"),
        (json.dumps({**good_tx(), "amount": "NaN"}).encode(), "amount", "invalid_field"),
        (json.dumps({**good_tx(), "amount": "twelve"}).encode(), "amount", "invalid_field"),
        (json.dumps({**good_tx(), "v": [0.0] * 27}).encode(), "v", "invalid_field"),
        (json.dumps({**good_tx(), "cardId": 7}).encode(), "card_id", "invalid_field"),
        (b" " * (schema.MAX_MESSAGE_BYTES + 1), "<body>", "oversized"),
    ],
)
def test_bad_messages_become_dead_letters_with_field_and_reason(body: bytes, field: str, code: str) -> None:
    letter = dead(parse(body, {"event_time": "x", "origin": "test"}))
    assert letter.payload == body  # the original bytes, untouched, so it can be fixed and replayed
    assert (letter.stage, letter.field, letter.code) == ("parse", field, code)
    assert letter.reason
    attrs = letter.dlq_attributes()
    assert attrs["origin"] == "test" and attrs["dlq_field"] == field and attrs["dlq_stage"] == "parse"
    assert attrs["dlq_reason"] == letter.reason[:900]


def test_long_reasons_fit_in_a_pubsub_attribute() -> None:
    letter = DeadLetter(b"x", {}, "score", "<model>", "e" * 5000, "score_error")
    assert len(letter.dlq_attributes()["dlq_reason"].encode()) <= 1024


def test_json_lines_become_messages() -> None:
    message = json_line_message('{"a": 1}', "file.jsonl")
    assert message.data == b'{"a": 1}' and message.attributes == {"source": "file.jsonl"}


class _Readable:
    """The two things _ParseCsvFn uses of fileio.ReadableFile."""

    def __init__(self, text: str | bytes, path: str = "mem.csv") -> None:
        self._data = text.encode() if isinstance(text, str) else text
        self.metadata = type("Meta", (), {"path": path})()

    def open(self, compression_type: str) -> io.BytesIO:
        assert compression_type == CompressionTypes.UNCOMPRESSED  # fraudscore.csvfiles decompresses
        return io.BytesIO(self._data)


def test_csv_rows_parse_and_bad_rows_are_dead_letters() -> None:
    header = ",".join(["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class", "card_id"])
    good = ",".join(["10", *["0.5"] * 28, "3.25", "0", "card-9"])
    bad = ",".join(["11", *["0.5"] * 28, "abc", "0", "card-9"])
    outputs = list(
        _ParseCsvFn(schema.DEFAULT_EPOCH, clock=lambda: NOW).process(_Readable(f"{header}\n{good}\n{bad}\n"))
    )
    assert len(outputs) == 2
    tx = outputs[0].value
    assert (tx.card_id, tx.amount, tx.transaction_id) == ("card-9", 3.25, "row-1")
    assert float(outputs[0].timestamp) == schema.DEFAULT_EPOCH.timestamp() + 10
    letter = dead(outputs[1:])
    assert (letter.field, letter.attributes["row"]) == ("Amount", "2")
    assert b"abc" in letter.payload


def _parsed(readable: _Readable) -> list[Any]:
    return list(_ParseCsvFn(schema.DEFAULT_EPOCH, clock=lambda: NOW).process(readable))


def test_csv_gz_and_zip_replay_the_same_transactions(tmp_path: Path) -> None:
    header = ",".join(["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"])
    rows = [",".join([str(t), *[f"{(t * j) % 5 - 2:g}" for j in range(28)], f"{t}.25", "0"]) for t in range(20)]
    plain = tmp_path / "t.csv"
    plain.write_text("\n".join([header, *rows]) + "\n")
    expected = [(o.value, o.timestamp) for o in _parsed(_Readable(plain.read_bytes(), str(plain)))]
    assert len(expected) == 20
    for path in write_forms(plain)[1:]:
        assert [(o.value, o.timestamp) for o in _parsed(_Readable(path.read_bytes(), str(path)))] == expected


@pytest.mark.parametrize("case", BAD_CASES)
def test_unreadable_archive_is_one_dead_letter_naming_the_file(tmp_path: Path, case: str) -> None:
    path, reason = bad_archives(tmp_path)[case]
    letter = dead(_parsed(_Readable(path.read_bytes(), str(path))))
    assert (letter.stage, letter.field, letter.code) == ("parse", "<file>", "unreadable_file")
    assert letter.reason.startswith(str(path)) and reason in letter.reason and "\n" not in letter.reason
    assert letter.attributes["source"] == str(path)
