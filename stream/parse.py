"""ParseTransactions: raw messages (Pub/Sub or replayed files) to validated Transactions.

Validation is fraudscore.schema's; this module only routes. A message that
cannot be used becomes a :class:`DeadLetter` carrying the original payload and
attributes plus the field and reason, on the ``dead_letters`` output. Nothing
is dropped and nothing raises.

Each valid transaction is re-timestamped with its own ``event_time`` so the
per-card windows run in event time. The message's Pub/Sub publish time stays
the timestamp of anything that cannot be parsed (the fallback). Why not
ReadFromPubSub's ``timestamp_attribute``: a malformed attribute value makes the
reader raise (DirectRunner) or retry forever (Dataflow), so one bad producer
could stall the job; the body's event time is validated here like every other
field instead.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.window import TimestampedValue

from fraudscore import csvfiles, schema
from fraudscore.v1.transaction_pb2 import Transaction
from stream import ingest, metrics
from stream.records import DeadLetter

TRANSACTIONS = "transactions"
DEAD_LETTERS = "dead_letters"
SOURCE_MESSAGE_ID = "source_message_id"  # dead letters: the Pub/Sub message id of the original


def reason_code(exc: schema.InvalidTransaction) -> str:
    """Buckets a parse failure into a few codes (metric labels must stay few)."""
    if exc.field != "<body>":
        return "invalid_field"
    if ("bytes" in exc.reason and "limit" in exc.reason) or "exceeds" in exc.reason:
        return "oversized"
    if exc.reason.startswith("not UTF-8"):
        return "bad_encoding"
    return "malformed_body"


def event_seconds(tx: Transaction) -> float:
    return tx.event_time.seconds + tx.event_time.nanos / 1e9


def event_datetime(tx: Transaction) -> datetime:
    return tx.event_time.ToDatetime(tzinfo=schema.UTC)


class _ParseJsonFn(beam.DoFn):
    """One Pub/Sub message (or JSON line) in; a Transaction or a DeadLetter out."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def process(self, message: PubsubMessage) -> Iterator[Any]:
        attributes = dict(message.attributes or {})
        ack_id = attributes.pop(ingest.ACK_ATTRIBUTE, "")
        try:
            tx = schema.parse_json(message.data)
        except schema.InvalidTransaction as exc:
            code = reason_code(exc)
            metrics.dead_letter(code)
            if message.message_id:  # what a DLQ consumer de-duplicates a redelivered letter on
                attributes[SOURCE_MESSAGE_ID] = message.message_id
            letter = DeadLetter(
                message.data, attributes, "parse", exc.field, exc.reason, code, (ack_id,) if ack_id else ()
            )
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        else:
            if ack_id:
                ingest.carry(tx.transaction_id, ack_id)
            metrics.parsed(self._clock() - event_seconds(tx))
            yield TimestampedValue(tx, event_seconds(tx))


class ParseTransactions(beam.PTransform):
    """PCollection[PubsubMessage] -> {transactions: Transaction, dead_letters: DeadLetter}."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock

    def expand(self, messages: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return messages | "Parse" >> beam.ParDo(_ParseJsonFn(self._clock)).with_outputs(DEAD_LETTERS, main=TRANSACTIONS)


class _ParseCsvFn(beam.DoFn):
    """One readable CSV file in (Kaggle or generated schema); Transactions and DeadLetters out.

    The file may be plain, ``.csv.gz`` or Kaggle's ``.zip`` (:mod:`fraudscore.csvfiles`). A file
    that cannot be read (an unreadable archive, not UTF-8, damage part-way through) becomes one
    DeadLetter with field ``<file>`` and code ``unreadable_file``, after any rows read before it.
    """

    def __init__(self, epoch: datetime, clock: Callable[[], float] = time.time) -> None:
        self._epoch = epoch
        self._clock = clock

    def process(self, readable: Any) -> Iterator[Any]:
        name = readable.metadata.path
        row_number = 0
        try:
            # Beam decompresses nothing here: csvfiles does, so .gz and .zip are read alike everywhere.
            with (
                readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as raw,
                csvfiles.open_text(name, raw) as text,
            ):
                for row_number, row in enumerate(csv.DictReader(text), start=1):
                    yield from self._row(name, row_number, row)
        except (csvfiles.CsvFileError, UnicodeDecodeError, csv.Error) as exc:
            reason = str(exc) if isinstance(exc, csvfiles.CsvFileError) else f"{name}: not a readable CSV file ({exc})"
            metrics.dead_letter("unreadable_file")
            attributes = {"source": name, "row": str(row_number + 1)}
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, DeadLetter(b"", attributes, "parse", "<file>", reason, "unreadable_file")
            )

    def _row(self, name: str, row_number: int, row: dict[str, str | None]) -> Iterator[Any]:
        attributes = {"source": name, "row": str(row_number)}
        try:
            tx = schema.from_csv_row(row, row_number=row_number, epoch=self._epoch)
        except schema.InvalidTransaction as exc:
            metrics.dead_letter("invalid_field")
            payload = ",".join("" if v is None else str(v) for v in row.values()).encode("utf-8")
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, DeadLetter(payload, attributes, "parse", exc.field, exc.reason)
            )
            return
        seconds = event_seconds(tx)
        metrics.parsed(self._clock() - seconds)
        yield TimestampedValue(tx, seconds)


class ParseCsvFiles(beam.PTransform):
    """PCollection[ReadableFile] of CSVs (.csv, .csv.gz, .zip) -> {transactions, dead_letters}."""

    def __init__(self, epoch: datetime = schema.DEFAULT_EPOCH, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._epoch = epoch
        self._clock = clock

    def expand(self, files: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return files | "ParseRows" >> beam.ParDo(_ParseCsvFn(self._epoch, self._clock)).with_outputs(
            DEAD_LETTERS, main=TRANSACTIONS
        )


def json_line_message(line: str | bytes, source: str = "") -> PubsubMessage:
    """A replayed JSON line, shaped like the Pub/Sub message it stands for."""
    data = line.encode("utf-8") if isinstance(line, str) else line
    return PubsubMessage(data, {"source": source} if source else {})
