"""``fraudscore publish``: replay a CSV of transactions into the Pub/Sub transactions topic.

The CSV may be plain, ``.csv.gz`` or Kaggle's ``.zip`` (:mod:`fraudscore.csvfiles`).

Each valid row becomes one message: the Transaction's proto3 JSON as the body
(:func:`fraudscore.schema.to_json`), with ``transaction_id``, ``card_id`` and
``event_time`` (RFC 3339) as attributes.

Time mapping: the file's ``Time`` column (seconds since its first transaction)
is played back from an anchor. Row ``i`` gets the event time
``anchor + (Time_i - Time_0) / speedup``. Anchored at now (the default), a row is
also not sent before its event time comes, so the stream sees live traffic:
``--speedup`` compresses the file's timeline and ``--rate`` caps messages per
second on top. Anchored at an explicit ``--start`` (a backfill with historic
times) only ``--rate`` paces the replay.

Transaction ids are ``<id prefix>-<row number>``; the default prefix names the
file and the anchor, so a redelivered message keeps its id while a second
replay of the same file (with new event times) makes new transactions.
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudscore import csvfiles, features

if TYPE_CHECKING:
    from fraudscore.v1.transaction_pb2 import Transaction

log = logging.getLogger(__name__)

DEFAULT_RATE = 100.0
_LOGGED_REJECTIONS = 5
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


class PublishError(Exception):
    """The input cannot be replayed (missing file, not a CSV, an unreadable archive, missing columns)."""


# --- pacing and time mapping ------------------------------------------------------------


class Pacer:
    """Spaces sends at most ``rate`` per second and no earlier than each one's due time.

    ``clock`` and ``sleep`` are injectable so tests run on a fake clock. A sender
    that falls behind (slow broker, full flow control) may catch up in a burst of
    at most ``max_lag`` seconds' worth of messages, then the schedule restarts.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_lag: float = 1.0,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._interval = 0.0 if rate is None else 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._max_lag = max_lag
        self._start = clock()
        self._next = 0.0  # seconds after start when the next send may happen

    def wait(self, due: float = 0.0) -> None:
        """Blocks until a message due ``due`` seconds after the start may be sent."""
        now = self._clock() - self._start
        if now - self._next > self._max_lag:
            self._next = now
        slot = max(self._next, due)
        if slot > now:
            self._sleep(slot - now)
        self._next = slot + self._interval

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start


def parse_rate(text: str) -> float:
    """``100``, ``100/s``, ``6000/min`` -> messages per second."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*([a-z]+))?\s*", text.lower())
    if not match or (match.group(2) and match.group(2) not in _RATE_UNITS):
        raise argparse.ArgumentTypeError(f"rate {text!r}: expected N/s, N/min or N/h, e.g. 100/s")
    value = float(match.group(1)) / _RATE_UNITS[match.group(2) or "s"]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"rate {text!r}: must be positive")
    return value


def parse_start(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"start {text!r}: expected ISO 8601, e.g. 2026-01-31T12:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


# --- reading the file -------------------------------------------------------------------


@dataclass
class ReadStats:
    """Rows read and rows rejected, by the field that made them invalid."""

    rows: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


def open_csv(path: Path) -> tuple[Any, csv.DictReader[str]]:
    """Opens a CSV and checks its header; raises PublishError naming what is wrong."""
    if not path.exists():
        raise PublishError(f"{path}: no such file")
    if not path.is_file():
        raise PublishError(f"{path}: not a file")
    try:
        handle = csvfiles.open_text(path)
    except csvfiles.CsvFileError as exc:
        raise PublishError(str(exc)) from None
    except OSError as exc:
        raise PublishError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
    except csvfiles.CsvFileError as exc:
        handle.close()
        raise PublishError(str(exc)) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        handle.close()
        raise PublishError(f"{path}: not a readable CSV file ({exc})") from None
    if not header:
        handle.close()
        raise PublishError(f"{path}: empty file, expected a CSV header with {', '.join(features.REQUIRED_COLUMNS)}")
    missing = [c for c in features.REQUIRED_COLUMNS if c not in header]
    if missing:
        handle.close()
        hint = "" if len(header) > 1 else " (is this a comma-separated file with a header row?)"
        raise PublishError(f"{path}: missing columns {', '.join(missing)}{hint}")
    return handle, reader


def count_rows(path: Path) -> int:
    """Data rows in the file (newlines minus the header, decompressed), for the progress bar's total."""
    try:
        with csvfiles.open_binary(path) as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except csvfiles.CsvFileError as exc:
        raise PublishError(str(exc)) from None
    return max(lines - 1, 0)


def read_transactions(
    reader: Iterable[dict[str, str | None]],
    *,
    anchor: datetime,
    speedup: float,
    id_prefix: str,
    stats: ReadStats,
) -> Iterator[tuple[Transaction, float]]:
    """Valid transactions with event times mapped from Time, and each one's offset from the anchor (s).

    Invalid rows are counted in ``stats`` by field and skipped; the first few are logged.
    """
    from fraudscore.schema import InvalidTransaction, from_csv_row

    time0: float | None = None
    rows = iter(reader)
    number = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except (UnicodeDecodeError, csv.Error) as exc:
            raise PublishError(f"row {number + 1}: not readable as CSV text ({exc})") from None
        except csvfiles.CsvFileError as exc:  # damage part-way through an archive
            raise PublishError(f"{exc} (after row {number})") from None
        number += 1
        stats.rows += 1
        try:
            tx = from_csv_row(row, row_number=number, epoch=anchor, id_prefix=id_prefix)
        except InvalidTransaction as exc:
            stats.rejected[exc.field] += 1
            if sum(stats.rejected.values()) <= _LOGGED_REJECTIONS:
                log.warning("row %d rejected: %s", number, exc)
            continue
        time_s = float(row[features.TIME] or 0.0)  # validated by from_csv_row
        time0 = time_s if time0 is None else time0
        offset = (time_s - time0) / speedup
        tx.event_time.FromDatetime(anchor + timedelta(seconds=offset))
        yield tx, offset


# --- publishing -------------------------------------------------------------------------


def make_publisher() -> Any:
    """A PublisherClient that batches for throughput and blocks instead of buffering without bound."""
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1 import types

    return pubsub_v1.PublisherClient(
        batch_settings=types.BatchSettings(max_messages=500, max_bytes=1_000_000, max_latency=0.02),
        publisher_options=types.PublisherOptions(
            flow_control=types.PublishFlowControl(
                message_limit=10_000,
                byte_limit=50_000_000,
                limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK,
            )
        ),
    )


class _Outcomes:
    """Counts publish results as futures complete (callbacks run on the client's threads)."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.first_error: BaseException | None = None
        self._lock = threading.Lock()
        self.pending: set[futures.Future[Any]] = set()

    def track(self, future: futures.Future[Any]) -> None:
        with self._lock:
            self.pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: futures.Future[Any]) -> None:
        error = future.exception()
        with self._lock:
            self.pending.discard(future)
            if error is None:
                self.ok += 1
            else:
                self.failed += 1
                self.first_error = self.first_error or error

    def wait(self) -> None:
        with self._lock:
            pending = list(self.pending)
        futures.wait(pending)


def attributes(tx: Transaction) -> dict[str, str]:
    return {
        "transaction_id": tx.transaction_id,
        "card_id": tx.card_id,
        "event_time": tx.event_time.ToJsonString(),
    }


def _publish_paced(
    publisher: Any,
    topic_path: str,
    items: Iterable[tuple[Transaction, float]],
    pacer: Pacer,
    progress: Any = None,
) -> _Outcomes:
    from fraudscore.schema import to_json

    outcomes = _Outcomes()
    for tx, due in items:
        pacer.wait(due)
        outcomes.track(publisher.publish(topic_path, to_json(tx), **attributes(tx)))
        if progress is not None:
            progress.update(1)
    outcomes.wait()
    return outcomes


def publish_transactions(publisher: Any, topic_path: str, transactions: Iterable[Transaction], rate: float) -> int:
    """Publishes transactions at most ``rate`` per second; returns how many the broker accepted.

    Waits for every publish future. Event times are taken as they are.
    """
    outcomes = _publish_paced(publisher, topic_path, ((tx, 0.0) for tx in transactions), Pacer(rate))
    if outcomes.failed:
        log.error("%d publishes failed; first error: %s", outcomes.failed, outcomes.first_error)
    return outcomes.ok


# --- command line -----------------------------------------------------------------------


@dataclass(frozen=True)
class PublishConfig:
    data: Path
    topic_path: str
    rate: float
    speedup: float
    limit: int | None
    start: datetime | None  # None: anchored at now, paced by event time
    id_prefix: str | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fraudscore.config import DEFAULT_PROJECT, Resources

    parser.add_argument("--data", type=Path, required=True, help="CSV in the Kaggle creditcard.csv schema")
    parser.add_argument(
        "--rate",
        type=parse_rate,
        default=DEFAULT_RATE,
        help=f"cap on messages per second, e.g. 100/s or 6000/min (default {DEFAULT_RATE:g}/s)",
    )
    parser.add_argument(
        "--speedup",
        type=_positive_float,
        default=1.0,
        help="play the file's Time column this many times faster: event-time gaps shrink by this factor (default 1)",
    )
    parser.add_argument("--limit", type=int, default=None, help="publish at most this many transactions")
    parser.add_argument(
        "--start",
        type=parse_start,
        default=None,
        help="anchor event times at this ISO 8601 time and send as fast as --rate allows "
        "(default: anchor at now and send each row when its event time comes)",
    )
    parser.add_argument(
        "--id-prefix",
        default=None,
        help="transaction ids are PREFIX-<row>; default <file stem>-<anchor time>, new ids for each replay",
    )
    parser.add_argument("--topic", default=Resources().transactions_topic, help="topic id (default %(default)s)")
    parser.add_argument(
        "--project",
        default=None,
        help=f"Google Cloud project (default $FRAUDSCORE_PROJECT or {DEFAULT_PROJECT})",
    )


def config_from_args(args: argparse.Namespace) -> PublishConfig:
    from fraudscore.config import Resources

    resources = Resources.from_env()
    project = args.project or resources.project
    if args.limit is not None and args.limit < 0:
        raise PublishError(f"--limit must be >= 0, got {args.limit}")
    return PublishConfig(
        data=args.data,
        topic_path=f"projects/{project}/topics/{args.topic}",
        rate=args.rate,
        speedup=args.speedup,
        limit=args.limit,
        start=args.start,
        id_prefix=args.id_prefix,
    )


def run(config: PublishConfig, publisher: Any, *, now: datetime | None = None) -> tuple[int, int, ReadStats]:
    """Replays the file; returns (published, failed, read stats)."""
    from itertools import islice

    from tqdm import tqdm

    handle, reader = open_csv(config.data)
    anchor = config.start or now or datetime.now(UTC)
    prefix = config.id_prefix or f"{csvfiles.stem(config.data)}-{anchor:%Y%m%dT%H%M%S}"
    stats = ReadStats()
    total = count_rows(config.data)
    if config.limit is not None:
        total = min(total, config.limit)
    live = config.start is None
    if live:
        log.info(
            "live replay from %s: each row is sent when its event time comes (file Time / %g), at most %g/s; "
            "--speedup compresses the timeline, --start sends as fast as --rate allows",
            anchor.isoformat(timespec="seconds"),
            config.speedup,
            config.rate,
        )
    try:
        items = read_transactions(reader, anchor=anchor, speedup=config.speedup, id_prefix=prefix, stats=stats)
        paced = ((tx, offset if live else 0.0) for tx, offset in items)
        with tqdm(total=total, unit="tx", desc="publish", disable=None) as progress:
            outcomes = _publish_paced(
                publisher, config.topic_path, islice(paced, config.limit), Pacer(config.rate), progress
            )
    finally:
        handle.close()
    if outcomes.failed:
        log.error("%d publishes failed; first error: %s", outcomes.failed, outcomes.first_error)
    return outcomes.ok, outcomes.failed, stats


def main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        publisher = make_publisher()
        started = time.monotonic()
        try:
            published, failed, stats = run(config, publisher)
        finally:
            publisher.stop()
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    seconds = time.monotonic() - started
    print(
        f"published {published} transactions to {config.topic_path} in {seconds:.1f} s "
        f"({published / max(seconds, 1e-9):.0f} tx/s); {stats.rows} rows read"
    )
    rejected = sum(stats.rejected.values())
    if rejected:
        by_field = ", ".join(f"{name}: {n}" for name, n in stats.rejected.most_common())
        print(f"rejected {rejected} rows ({by_field})")
    if failed:
        print(f"error: {failed} publishes failed", file=sys.stderr)
    return 1 if failed or (published == 0 and rejected) else 0
