"""Flagged cases in Bigtable: row keys, idempotent writes, lookups and analyst labels.

Cases are card episodes (:mod:`cases.episodes`); their case, member and pointer rows are in
:mod:`cases.episode_rows`, written by :mod:`cases.episode_store` and read by :mod:`cases.casebook`.
This module has the client, the shared keys and the rows every flagged transaction has: below is
the original one-row-per-transaction layout, which case members share (their ``case:record``) and
which *old-style* cases (written before episodes, case id = transaction id) still use.

Row-key design (two tables from :class:`fraudscore.config.Resources`):

``flagged`` (old-style: one row per flagged transaction)
    ``<h4(card)>#<card_id>#<reverse_ms>#<transaction_id>``. ``h4`` is the first
    four hex digits of SHA-256 of the card id: sequential card ids land on
    different tablets instead of one hot range. ``reverse_ms`` is
    ``9999999999999 - event_time_ms``, so a prefix scan of one card returns its
    cases newest first. Families: ``case`` (``record``: the Case as JSON,
    max_versions=1) and ``decision`` (``verdict``, ``note``, ``analyst``; one
    cell version per label, max_versions=5, newest first).

``flagged-by-time`` (index and lookup rows, family ``ref``, max_versions=1)
    ``<bucket>#<event_ms>#<transaction_id>`` with ``bucket = h(tx) % buckets``
    (two digits): time-ordered writes spread over ``buckets`` ranges instead of
    one hot tail. A time-range query scans every bucket's range and merges.
    ``ref:key`` holds the ``flagged`` row key.
    ``id#<h4(tx)>#<transaction_id>``: the point lookup behind :meth:`CaseStore.get`
    (the time index needs the event time, which a caller holding only a
    transaction id does not have). Also ``ref:key``.

Idempotency: keys and cell timestamps derive from the case alone (event time,
card, transaction id), so a redelivered message rewrites the same cells and
never makes a second case. Decisions live in their own family, so a rewrite of
the case never touches the analyst's labels.

Key components are escaped (``%`` -> ``%25``, ``#`` -> ``%23``) so an id holding
the separator cannot reach into another card's range.

``traffic-sample`` (the uniform sample of all scored traffic, :mod:`stream.sampling`)
    ``<bucket>#<event_ms>#<transaction_id>`` like the time index (spread writes, time-range
    scans); family ``sample``, ``record``: JSON with the raw features, both scores, the
    model version, the event time and the sampling rate. The key derives from the
    transaction, so a redelivery rewrites the same row; the cell time is the write time,
    from which the family's 90-day GC counts.

Labels: :meth:`CaseStore.labelled` scans ``flagged`` for rows with a ``decision`` cell
(a server-side condition filter) and returns each case with its latest decision: the
latest label wins (:mod:`cases.labels`). The stream job's feedback gauges read the
decided cases of a window from ``flagged-by-time`` instead: ``decided#<opened ms>#<case id>``
rows, one per decided case (:mod:`cases.decision_index`).
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cases.records import Case, Decision, SampledTransaction, StoredCase
from fraudscore.config import Resources
from fraudscore.resources import close_bigtable_client

DEFAULT_BUCKETS = 8
FRAUD = "fraud"
LEGIT = "legit"
VERDICTS = (FRAUD, LEGIT)

CASE_FAMILY = "case"
DECISION_FAMILY = "decision"
REF_FAMILY = "ref"
SAMPLE_FAMILY = "sample"
RECORD_COLUMN = b"record"
KEY_COLUMN = b"key"
CLAIM_LEASE_S = 10.0  # an unconfirmed claim older than this is taken over (its holder is presumed dead)

# Outcomes of CaseStore.claim.
WON = "won"  # this caller publishes the alert (first claim, or a dead holder's taken over)
ALERTED = "alerted"  # the alert is out already
MINE = "mine"  # claimed earlier with the same token (the same case twice in one batch)
HELD = "held"  # another live holder is publishing: ask again later
DECISION_COLUMNS = (b"verdict", b"note", b"analyst")

MAX_MS = 10**13 - 1  # 13 digits of milliseconds: up to the year 2286
_ID_PREFIX = "id#"


class CaseStoreError(Exception):
    """Root of the case store's errors."""


class CaseNotFound(CaseStoreError, LookupError):
    """No case or flagged transaction is stored under this id."""

    def __init__(self, transaction_id: str) -> None:
        super().__init__(f"no case or flagged transaction {transaction_id!r}")
        self.transaction_id = transaction_id


class CaseWriteError(CaseStoreError):
    """Bigtable refused some mutations; retrying the same cases is safe (idempotent)."""

    def __init__(self, table: str, failures: Sequence[tuple[str, str]]) -> None:
        first_key, first_msg = failures[0]
        super().__init__(f"{len(failures)} row(s) of {table} not written; first {first_key}: {first_msg}")
        self.table = table
        self.failures = tuple(failures)


# --- row keys -------------------------------------------------------------------------


def escape(part: str) -> str:
    return part.replace("%", "%25").replace("#", "%23")


def unescape(part: str) -> str:
    return part.replace("%23", "#").replace("%25", "%")


def _hash4(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:4]


def epoch_ms(when: datetime) -> int:
    """Milliseconds since the epoch; Bigtable cell timestamps have millisecond granularity."""
    if when.tzinfo is None:
        raise ValueError(f"event time {when} has no timezone; cases carry UTC times")
    ms = int(when.timestamp() * 1000)
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"event time {when.isoformat()} outside the key range (1970..2286)")
    return ms


def card_prefix(card_id: str) -> str:
    """The key prefix of every case of one card."""
    return f"{_hash4(card_id)}#{escape(card_id)}#"


def case_key(case: Case) -> str:
    """The ``flagged`` row key: card's hashed prefix, then newest first."""
    return f"{card_prefix(case.card_id)}{MAX_MS - epoch_ms(case.event_time):013d}#{escape(case.transaction_id)}"


def bucket_of(transaction_id: str, buckets: int) -> int:
    return int(hashlib.sha256(transaction_id.encode("utf-8")).hexdigest()[:8], 16) % buckets


def time_key(case: Case, buckets: int) -> str:
    """The ``flagged-by-time`` index key: a hash bucket, then event time ascending."""
    bucket = bucket_of(case.transaction_id, buckets)
    return f"{bucket:02d}#{epoch_ms(case.event_time):013d}#{escape(case.transaction_id)}"


def id_key(transaction_id: str) -> str:
    """The lookup row key that finds a case from its transaction id alone."""
    return f"{_ID_PREFIX}{_hash4(transaction_id)}#{escape(transaction_id)}"


def sample_key(transaction_id: str, event_ms: int, buckets: int) -> str:
    """The ``traffic-sample`` row key: a hash bucket, then event time ascending (as :func:`time_key`)."""
    return f"{bucket_of(transaction_id, buckets):02d}#{event_ms:013d}#{escape(transaction_id)}"


def _time_range(bucket: int, start_ms: int, end_ms: int | None) -> tuple[bytes, bytes]:
    start = f"{bucket:02d}#{start_ms:013d}".encode()
    # '$' sorts right after '#': the end of this bucket's key range.
    end = f"{bucket:02d}#{end_ms:013d}".encode() if end_ms is not None else f"{bucket:02d}$".encode()
    return start, end


def prefix_end(prefix: str) -> bytes:
    raw = prefix.encode("utf-8")
    return raw[:-1] + bytes([raw[-1] + 1])


# --- records --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimTarget:
    """One alert to claim: a row, its claim and alerted columns (``case`` family), cells the first claim writes."""

    key: bytes
    claim_column: bytes
    alerted_column: bytes
    cells: tuple[Any, ...] = ()  # cases.row_writes.SetCell


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CaseStore:
    """Reads and writes flagged cases; one Bigtable client per store.

    The client finds the emulator through ``BIGTABLE_EMULATOR_HOST`` by itself,
    so the same code runs against Cloud Bigtable.
    """

    def __init__(
        self,
        resources: Resources,
        *,
        buckets: int = DEFAULT_BUCKETS,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        from google.cloud import bigtable

        if not 1 <= buckets <= 100:
            raise ValueError(f"buckets must be 1..100 (two key digits), got {buckets}")
        self.buckets = buckets
        self._clock = clock
        # The project, the instance and the tables all come from ``resources``: one place names them.
        self._client = bigtable.Client(project=resources.project, admin=False)
        inst = self._client.instance(resources.bigtable_instance)
        self._cases = inst.table(resources.cases_table)
        self._index = inst.table(resources.cases_by_time_table)
        self._cases_name = resources.cases_table
        self._index_name = resources.cases_by_time_table
        self._conditional_writes: Any = None
        self._sample = inst.table(resources.sample_table)
        self._sample_name = resources.sample_table

    @property
    def _conditional(self) -> Any:
        """Check-and-mutate rounds on ``flagged`` (made on first use: reading commands never claim)."""
        if self._conditional_writes is None:
            from cases.row_writes import CheckAndMutate

            self._conditional_writes = CheckAndMutate(self._client, self._cases)
        return self._conditional_writes

    @functools.cached_property
    def _index_conditional(self) -> Any:
        """Check-and-mutate rounds on ``flagged-by-time``: the cards' ``open#`` pointers (cases.episode_store)."""
        from cases.row_writes import CheckAndMutate

        return CheckAndMutate(self._client, self._index)

    def read_rows(self, table: Any, keys: list[bytes], *, latest: bool = True) -> dict[bytes, Any]:
        """The rows of ``keys`` that exist, by key, in one multi-row read (newest cell per column if ``latest``)."""
        if not keys:
            return {}
        rows = table.read_rows(row_set=row_set_of(keys), filter_=latest_cells() if latest else None)
        return {row.row_key: row for row in rows}

    def keys_holding(self, table: Any, keys: list[bytes], columns: Sequence[tuple[str, bytes | None]]) -> list[bytes]:
        """Those of ``keys`` whose row holds a cell of any of ``columns`` ((family, qualifier); None: any).

        The test runs in Bigtable (one multi-row read with a filter, values stripped): rows without such a
        cell never leave it, so a caller after a few rows among many reads only those (the closed cases
        among a window's). Order is Bigtable's.
        """
        from google.cloud.bigtable.row_filters import (
            CellsRowLimitFilter,
            ColumnQualifierRegexFilter,
            FamilyNameRegexFilter,
            RowFilterChain,
            RowFilterUnion,
            StripValueTransformerFilter,
        )

        if not keys or not columns:
            return []
        wanted: list[Any] = []
        for family, column in columns:
            chain: list[Any] = [FamilyNameRegexFilter(f"^{re.escape(family)}$")]
            if column is not None:
                chain.append(ColumnQualifierRegexFilter(b"^" + re.escape(column) + b"$"))
            wanted.append(RowFilterChain(chain))
        any_of = wanted[0] if len(wanted) == 1 else RowFilterUnion(wanted)
        only_keys = RowFilterChain([any_of, CellsRowLimitFilter(1), StripValueTransformerFilter(True)])
        return [row.row_key for row in table.read_rows(row_set=row_set_of(keys), filter_=only_keys)]

    @functools.cached_property
    def _case_writes(self) -> Any:
        from cases.row_writes import BulkWrite

        return BulkWrite(self._client, self._cases)

    @functools.cached_property
    def _index_writes(self) -> Any:
        from cases.row_writes import BulkWrite

        return BulkWrite(self._client, self._index)

    def close(self) -> None:
        """Closes the gRPC clients too: the legacy client's close() only closes its HTTP session."""
        close_bigtable_client(self._client)

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes ---

    def write(self, cases: Iterable[Case]) -> int:
        """Writes old-style case rows (one per transaction) and their index rows; returns how many were written.

        What the job wrote before cases were card episodes: kept to write such rows in compatibility tests
        and imports; the job's cases go through :class:`cases.episode_store.EpisodeStore`.

        The case rows go first: an index row never points at a case that was not
        written. On a partial failure the caller retries the same cases, which
        rewrites identical cells.
        """
        case_rows = []
        index_rows = []
        for case in cases:
            key = case_key(case)
            cell_time = datetime.fromtimestamp(epoch_ms(case.event_time) / 1000, UTC)
            row = self._cases.direct_row(key)
            row.set_cell(CASE_FAMILY, RECORD_COLUMN, json.dumps(case.to_json_dict(), sort_keys=True), cell_time)
            case_rows.append(row)
            for ikey in (time_key(case, self.buckets), id_key(case.transaction_id)):
                irow = self._index.direct_row(ikey)
                irow.set_cell(REF_FAMILY, KEY_COLUMN, key, cell_time)
                index_rows.append(irow)
        if not case_rows:
            return 0
        self._mutate(self._cases, self._cases_name, case_rows)
        self._mutate(self._index, self._index_name, index_rows)
        return len(case_rows)

    def claim_targets(
        self, targets: Sequence[ClaimTarget], token: str, lease_s: float = CLAIM_LEASE_S
    ) -> list[tuple[str, float]]:
        """Claims the right to publish each target's alert: one conditional mutation per target, all at once.

        Returns ``(outcome, retry_after_s)`` per target, in order. A claim is a check-and-mutate on the
        target's row: "if the row has no cell in the claim column, set it (and the target's cells)";
        Bigtable has no multi-row condition, so a batch is one round of per-row ones in flight together
        (:mod:`cases.row_writes`), and the rows already claimed are read back in one scan. A claim without
        its ``alerted`` cell after ``lease_s`` is taken over by a second check-and-mutate that matches the
        old claim's exact value, so of several callers taking over only one wins. A target twice in
        ``targets`` is won once and ``MINE`` the other time.
        """
        from cases.row_writes import SetCell, chain

        now_ms = epoch_ms(self._clock())
        value = f"{token}@{now_ms}".encode()
        cells = [(SetCell(CASE_FAMILY, t.claim_column, now_ms, value), *t.cells) for t in targets]
        matched = self._conditional.if_absent(
            [(t.key, chain(family=CASE_FAMILY, column=t.claim_column), c) for t, c in zip(targets, cells, strict=True)]
        )
        outcomes: list[tuple[str, float]] = [(WON, 0.0)] * len(targets)
        contested = [i for i, m in enumerate(matched) if m]
        if not contested:
            return outcomes
        found = self._latest_case_cells([targets[i].key for i in contested])
        takeovers: list[tuple[int, bytes]] = []
        for i in contested:
            row = found.get(targets[i].key, {})
            if targets[i].alerted_column in row:
                outcomes[i] = (ALERTED, 0.0)
                continue
            current = row.get(targets[i].claim_column, b"")
            holder, _, at = current.decode("utf-8").partition("@")
            age_s = (now_ms - int(at or 0)) / 1000
            if holder == token:
                outcomes[i] = (MINE, 0.0)
            elif age_s < lease_s:
                outcomes[i] = (HELD, lease_s - age_s)
            else:
                takeovers.append((i, current))
        if takeovers:
            rows = [
                (targets[i].key, chain(family=CASE_FAMILY, column=targets[i].claim_column, latest_value=old), cells[i])
                for i, old in takeovers
            ]
            taken = self._conditional.if_present(rows)
            for (i, _), won in zip(takeovers, taken, strict=True):
                outcomes[i] = (WON, 0.0) if won else (HELD, 0.1)
        return outcomes

    def _latest_case_cells(self, keys: list[bytes]) -> dict[bytes, dict[bytes, bytes]]:
        """Row key -> {column: newest value} of the rows' ``case`` family, in one scan."""
        from google.cloud.bigtable.row_filters import FamilyNameRegexFilter, RowFilterChain

        out: dict[bytes, dict[bytes, bytes]] = {}
        only_case = RowFilterChain([FamilyNameRegexFilter(CASE_FAMILY), latest_cells()])
        for row in self._cases.read_rows(row_set=row_set_of(keys), filter_=only_case):
            family = row.cells.get(CASE_FAMILY, {})
            out[row.row_key] = {col: cells[0].value for col, cells in family.items()}
        return out

    @staticmethod
    def _write_rows(writer: Any, name: str, rows: list[Any]) -> None:
        # The alert path's bulk writes (cases.row_writes): one MutateRows, plain protobuf.
        if rows:
            failures = writer.write(rows)
            if failures:
                raise CaseWriteError(name, [(key.decode("utf-8"), message) for key, message in failures])

    @staticmethod
    def _mutate(table: Any, name: str, rows: list[Any]) -> None:
        statuses = table.mutate_rows(rows)
        failures = [
            (row.row_key.decode("utf-8"), status.message)
            for row, status in zip(rows, statuses, strict=True)
            if status.code != 0
        ]
        if failures:
            raise CaseWriteError(name, failures)

    # --- reads ---

    def get(self, transaction_id: str) -> StoredCase:
        """The case of a transaction, with its full decision history; raises CaseNotFound."""
        row = self._cases.read_row(self._main_key(transaction_id))
        if row is None:
            raise CaseNotFound(transaction_id)
        return stored_case(row)

    def list_by_card(self, card_id: str, limit: int = 50) -> list[StoredCase]:
        """The card's transaction rows (old-style cases and case members), newest first."""
        from google.cloud.bigtable.row_set import RowSet

        prefix = card_prefix(card_id)
        row_set = RowSet()
        row_set.add_row_range_from_keys(start_key=prefix.encode("utf-8"), end_key=prefix_end(prefix))
        rows = self._cases.read_rows(row_set=row_set, filter_=latest_cells())
        return [stored_case(row) for row in rows if _has_record(row)][:limit]

    def list_since(self, start: datetime, end: datetime | None = None, limit: int = 50) -> list[StoredCase]:
        """Transaction rows (old-style cases) with ``start <= event_time < end`` in event-time order (oldest first).

        The time index also holds card-episode cases, by opening time (:mod:`cases.casebook` lists those).
        """
        return self._read_cases(self.time_keys(start, end, limit))

    def time_keys(self, start: datetime, end: datetime | None, limit: int) -> list[str]:
        """The ``flagged`` keys of the first ``limit`` time-index rows in ``[start, end)``, oldest first."""
        start_ms = epoch_ms(start)
        end_ms = epoch_ms(end) if end is not None else None
        merged = heapq.merge(*(self._scan_bucket(b, start_ms, end_ms, limit) for b in range(self.buckets)))
        return [main_key for _, (_, main_key) in zip(range(limit), merged, strict=False)]

    def _scan_bucket(self, bucket: int, start_ms: int, end_ms: int | None, limit: int) -> Iterator[tuple[str, str]]:
        """(time key without bucket, main key) pairs of one bucket, in time order."""
        start, end = _time_range(bucket, start_ms, end_ms)
        for row in self._index.read_rows(start_key=start, end_key=end, limit=limit, filter_=latest_cells()):
            # Sort key: "<ms>#<tx>" after the bucket digits; equal-width ms keeps it ordered.
            yield row.row_key.decode("utf-8")[3:], _cell(row, REF_FAMILY, KEY_COLUMN).decode("utf-8")

    def _read_cases(self, keys: list[str]) -> list[StoredCase]:
        if not keys:
            return []
        rows = self._cases.read_rows(row_set=row_set_of(k.encode("utf-8") for k in keys))
        found = {row.row_key.decode("utf-8"): row for row in rows}
        # Bigtable returns rows in key order; give them back in the caller's order (transaction rows only).
        return [stored_case(found[k]) for k in keys if k in found and _has_record(found[k])]

    # --- labels (cases.labels) ---

    def labelled(self) -> Iterator[tuple[Case | None, tuple[Decision, ...]]]:
        """Every case row with an analyst's decision: (case, or None without a record; decisions newest first).

        One scan of ``flagged`` with a server-side condition (only rows holding a ``decision`` cell pass);
        unlabelled cases never leave Bigtable. All decision versions come back, so a reader can tell a
        transaction whose labels conflict.
        """
        from google.cloud.bigtable.row_filters import (
            BlockAllFilter,
            ConditionalRowFilter,
            FamilyNameRegexFilter,
            PassAllFilter,
        )

        has_decision = ConditionalRowFilter(
            base_filter=FamilyNameRegexFilter(DECISION_FAMILY),
            true_filter=PassAllFilter(True),
            false_filter=BlockAllFilter(True),
        )
        for row in self._cases.read_rows(filter_=has_decision):
            decisions = decisions_of(row)
            if not decisions:
                continue
            if b"episode" in row.cells.get(CASE_FAMILY, {}):
                continue  # a card-episode case's own row: its members' rows carry the same decision
            record = row.cells.get(CASE_FAMILY, {}).get(RECORD_COLUMN)
            case = Case.from_json_dict(json.loads(record[0].value)) if record else None
            yield case, decisions

    def flagged_transactions(self) -> Iterator[Case]:
        """Every flagged transaction's record (case members and old-style cases): one scan of ``flagged``.

        For checks and exports over a whole table; an analyst's lookups go through :mod:`cases.casebook`.
        """
        for row in self._cases.read_rows(filter_=latest_cells()):
            if _has_record(row):
                yield Case.from_json_dict(json.loads(_cell(row, CASE_FAMILY, RECORD_COLUMN)))

    def count_since(self, start: datetime, end: datetime | None = None) -> int:
        """How many cases have an event time in ``[start, end)``: time-index keys only (values stripped)."""
        from google.cloud.bigtable.row_filters import (
            CellsRowLimitFilter,
            RowFilterChain,
            StripValueTransformerFilter,
        )

        keys_only = RowFilterChain([CellsRowLimitFilter(1), StripValueTransformerFilter(True)])
        start_ms, end_ms = epoch_ms(start), epoch_ms(end) if end is not None else None
        count = 0
        for bucket in range(self.buckets):
            first, last = _time_range(bucket, start_ms, end_ms)
            count += sum(1 for _ in self._index.read_rows(start_key=first, end_key=last, filter_=keys_only))
        return count

    # --- the traffic sample (stream.sampling) ---

    def write_sample(self, scored: Iterable[SampledTransaction], rate: float) -> int:
        """Writes sampled transactions (idempotent: the key derives from the transaction); returns the count.

        The cell time is the write time, not the event time: the family's age GC (90 days) counts from it,
        so a replay of old traffic is kept like live traffic. A redelivery writes the same record under the
        same key; ``max_versions=1`` keeps one cell and reads take the newest.
        """
        written_at = datetime.fromtimestamp(epoch_ms(_utcnow()) / 1000, UTC)  # wall clock: retention is real time
        rows = []
        for s in scored:
            event_ms = int(s.event_time * 1000)
            row = self._sample.direct_row(sample_key(s.transaction_id, event_ms, self.buckets))
            record = {
                "transaction_id": s.transaction_id,
                "card_id": s.card_id,
                "event_time": datetime.fromtimestamp(s.event_time, UTC).isoformat(),
                "amount": s.amount,
                "model_name": s.model_name,
                "model_version": s.model_version,
                "threshold": s.threshold,
                "reconstruction_error": s.reconstruction_error,
                "fraud_probability": s.fraud_probability,
                "is_anomaly": s.is_anomaly,
                "feature_names": list(s.feature_names),
                "raw_features": list(s.raw_features),
                "sampling_rate": rate,
            }
            row.set_cell(SAMPLE_FAMILY, RECORD_COLUMN, json.dumps(record, sort_keys=True), written_at)
            rows.append(row)
        if rows:
            self._mutate(self._sample, self._sample_name, rows)
        return len(rows)

    def sample_records(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """The sample's records with event time at or after ``since`` (all without), bucket by bucket."""
        start_ms = epoch_ms(since) if since is not None else 0
        for bucket in range(self.buckets):
            start, end = _time_range(bucket, start_ms, None)
            for row in self._sample.read_rows(start_key=start, end_key=end, filter_=latest_cells()):
                yield json.loads(_cell(row, SAMPLE_FAMILY, RECORD_COLUMN))

    def _main_key(self, transaction_id: str) -> str:
        row = self._index.read_row(id_key(transaction_id), filter_=latest_cells())
        if row is None:
            raise CaseNotFound(transaction_id)
        return _cell(row, REF_FAMILY, KEY_COLUMN).decode("utf-8")


def row_set_of(keys: Iterable[bytes]) -> Any:
    """A ``RowSet`` of these row keys (each once), for one multi-row read."""
    from google.cloud.bigtable.row_set import RowSet

    row_set = RowSet()
    for key in dict.fromkeys(keys):
        row_set.add_row_key(key)
    return row_set


def latest_cells() -> Any:
    from google.cloud.bigtable.row_filters import CellsColumnLimitFilter

    return CellsColumnLimitFilter(1)


def _cell(row: Any, family: str, column: bytes) -> bytes:
    value: bytes = row.cells[family][column][0].value
    return value


def _has_record(row: Any) -> bool:
    """Whether a ``flagged`` row is a transaction's (``case:record``), not a card-episode case's."""
    return RECORD_COLUMN in row.cells.get(CASE_FAMILY, {})


def stored_case(row: Any) -> StoredCase:
    case = Case.from_json_dict(json.loads(_cell(row, CASE_FAMILY, RECORD_COLUMN)))
    return StoredCase(case=case, row_key=row.row_key.decode("utf-8"), decisions=decisions_of(row))


def decisions_of(row: Any) -> tuple[Decision, ...]:
    """Decision cells grouped by their shared timestamp, newest first."""
    family = row.cells.get(DECISION_FAMILY, {})
    by_time: dict[datetime, dict[bytes, str]] = {}
    for column in DECISION_COLUMNS:
        for cell in family.get(column, []):
            by_time.setdefault(cell.timestamp, {})[column] = cell.value.decode("utf-8")
    return tuple(
        Decision(
            verdict=values.get(b"verdict", ""),
            note=values.get(b"note", ""),
            analyst=values.get(b"analyst", ""),
            decided_at=when,
        )
        for when, values in sorted(by_time.items(), reverse=True)
        if b"verdict" in values
    )
