"""The analysts' decisions by case opening time: what the feedback gauges read, written as analysts decide.

The stream job's feedback gauges (:mod:`stream.label_metrics`) need, for the cases opened in a trailing
window, each labelled case's latest verdict and each closed case's reason and time to close. Read from the
case rows, that is a scan of the whole ``flagged`` table for decision cells (the table grows with every case
ever flagged, not with the window) plus a full read of the window's cases to find the closed ones, every
minute. So :class:`cases.casebook.Casebook` also writes one small row per decided case here, in
``flagged-by-time`` (family ``ref``, max_versions=1):

``decided#<opened ms>#<case id>``
    ``ref:verdict`` = ``fraud`` / ``legit``, cell time = when decided: Bigtable's newest cell is the latest
    label, whichever of the case's rows (the case, a member) it was written on;
    ``ref:closed`` = the case's first reason code, cell time = when closed; deleted on a reopen.

A refresh is then one range scan from ``decided#<window start>``: its cost follows the decided cases of the
window. Keys are in time order, so writes go to one range; analysts decide a few cases a minute, far below
what one tablet takes. Old-style cases (one transaction) are keyed by their event time and never closed.

Cases decided before the index existed are indexed once from the case rows
(:meth:`cases.casebook.Casebook.backfill_index`: the stream job's label scanner runs it on its first scan; a
marker row says it ran). A decision made by an older version of the console or CLI during or after the
backfill is not indexed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cases.row_writes import SetCell
from cases.store import REF_FAMILY, epoch_ms, escape, latest_cells, prefix_end, unescape

if TYPE_CHECKING:
    from cases.records import Decision
    from cases.store import CaseStore

PREFIX = "decided#"
VERDICT_COLUMN = b"verdict"
CLOSED_COLUMN = b"closed"
BACKFILLED_KEY = b"decided-index-backfilled"  # outside PREFIX's range ('-' sorts after '$')
UNKNOWN_REASON = "UNKNOWN"
_WRITE_CHUNK = 500


@dataclass(frozen=True)
class IndexedCase:
    """A decided case as the index holds it."""

    case_id: str
    opened_ms: int
    verdict: str | None  # the latest label, None if the case was only closed
    closed_ms: int | None  # None while open (or reopened)
    reason: str  # the first reason code when closed ("" if never closed)


def key(opened_ms: int, case_id: str) -> bytes:
    return f"{PREFIX}{opened_ms:013d}#{escape(case_id)}".encode()


def verdict_cell(decision: Decision) -> SetCell:
    return SetCell(REF_FAMILY, VERDICT_COLUMN, epoch_ms(decision.decided_at), decision.verdict.encode())


def closed_cell(closed_ms: int, reasons: tuple[str, ...]) -> SetCell:
    return SetCell(REF_FAMILY, CLOSED_COLUMN, closed_ms, (reasons[0] if reasons else UNKNOWN_REASON).encode())


def write(store: CaseStore, rows: Iterable[tuple[bytes, list[SetCell]]]) -> None:
    """Writes index cells, a chunk at a time (idempotent: the same decision writes the same cell)."""
    batch: list[tuple[bytes, list[SetCell]]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _WRITE_CHUNK:
            store._write_rows(store._index_writes, store._index_name, batch)
            batch = []
    store._write_rows(store._index_writes, store._index_name, batch)


def unclose(store: CaseStore, opened_ms: int, case_id: str) -> None:
    """A reopened case is no longer closed in the index either."""
    row = store._index.direct_row(key(opened_ms, case_id))
    row.delete_cell(REF_FAMILY, CLOSED_COLUMN)
    row.commit()


def read_since(store: CaseStore, start: datetime) -> Iterator[IndexedCase]:
    """The decided cases opened at or after ``start``, oldest first: one range scan."""
    first = f"{PREFIX}{epoch_ms(start):013d}".encode()
    for row in store._index.read_rows(start_key=first, end_key=prefix_end(PREFIX), filter_=latest_cells()):
        ms, _, case_id = row.row_key.decode("utf-8")[len(PREFIX) :].partition("#")
        cells = row.cells.get(REF_FAMILY, {})
        verdict = cells.get(VERDICT_COLUMN)
        closed = cells.get(CLOSED_COLUMN)
        yield IndexedCase(
            unescape(case_id),
            int(ms),
            verdict[0].value.decode() if verdict else None,
            closed[0].timestamp_micros // 1000 if closed else None,
            closed[0].value.decode() if closed else "",
        )


def backfilled(store: CaseStore) -> bool:
    """Whether the case rows were indexed once (the marker row of :meth:`cases.casebook.Casebook.backfill_index`)."""
    return store._index.read_row(BACKFILLED_KEY) is not None


def mark_backfilled(store: CaseStore) -> None:
    write(store, [(BACKFILLED_KEY, [SetCell(REF_FAMILY, b"at", epoch_ms(store._clock()), b"1")])])
