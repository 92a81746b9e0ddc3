"""The analysts' side of cases: find, list, close and label card-episode cases (and old-style ones).

What ``fraudscore cases`` and ``fraudscore console`` call. Every check runs before the first write, so bad
input (an unknown id, an old-style id where a case is needed, a closed case closed again) changes nothing and
raises a :class:`CaseError` whose one-line message names the id and the reason.

Every analyst's action (label, close, reopen, note) first moves the case row's revision (``case:rev``) with a
check-and-mutate that matches the revision it read, and writes the action's audit cell (family ``audit``) in
the same mutation: of two analysts acting on the same version of a case one wins, the other gets a
:class:`CaseConflict` and nothing of theirs is written. A caller holding the version a page showed
(:attr:`~cases.episode_rows.Episode.version`: the revision and the members) passes it as ``expected``: a case
that changed since (another analyst, or the stream adding a member) is a conflict too.

Old-style rows (written before cases were card episodes: one transaction, case id = transaction id) are
read and listed as one-member cases marked ``old-style``; they are labelled with ``--transaction``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cases import decision_index
from cases.episode_rows import (
    AUDIT_FAMILY,
    CLOSED,
    CLOSED_COLUMN,
    EPISODE_COLUMN,
    MEMBER_FAMILY,
    OLD_STYLE,
    OPEN,
    REVISION_COLUMN,
    Episode,
    parse_episode,
    revision_of,
)
from cases.records import Decision, StoredCase
from cases.store import (
    CASE_FAMILY,
    DECISION_COLUMNS,
    DECISION_FAMILY,
    FRAUD,
    LEGIT,
    RECORD_COLUMN,
    CaseNotFound,
    CaseStore,
    CaseStoreError,
    card_prefix,
    decisions_of,
    epoch_ms,
    latest_cells,
    prefix_end,
    row_set_of,
    stored_case,
)

_LOG = logging.getLogger(__name__)
# Rows of a card's range that are cases (episode or old-style), not members: three '#' separators
# (ids are escaped, so a '#' is always one).
_CASE_ROW = rb"[^#]*#[^#]*#[^#]*#[^#]*"


class CaseError(CaseStoreError):
    """A case command that cannot be done as asked; the message names the id and why."""


class CaseConflict(CaseError):
    """The case changed since the caller read it (or while it acted): nothing was written."""

    def __init__(self, case_id: str, expected: str, found: str) -> None:
        super().__init__(
            f"case {case_id} changed since it was read (version {expected}, now {found}): "
            "nothing was written; look at it again and decide again"
        )
        self.case_id = case_id
        self.expected = expected
        self.found = found


@dataclass(frozen=True)
class AuditEntry:
    """One analyst's action on a case: who, when, what (and the note they gave)."""

    at: datetime
    analyst: str
    action: str
    note: str = ""
    revision: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "analyst": self.analyst,
            "action": self.action,
            "note": self.note,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class CaseDetail:
    """A case with its members' full records (old-style: the one transaction) and its audit trail (oldest first)."""

    episode: Episode
    members: tuple[StoredCase, ...]
    audit: tuple[AuditEntry, ...] = ()


class Casebook:
    """Reads and decides cases through a :class:`~cases.store.CaseStore`."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    # --- reads ---

    def find(self, case_id: str) -> Episode:
        """The case with this id (an episode, or an old-style case); raises CaseError for a member's id."""
        return self._find_row(case_id)[0]

    def _find_row(self, case_id: str) -> tuple[Episode, Any]:
        key = self.store._main_key(case_id)
        row = self.store._cases.read_row(key.encode())
        if row is None:
            raise CaseNotFound(case_id)
        episode = parse_episode(row, decisions_of(row))
        if episode is not None:
            return episode, row
        stored = stored_case(row)
        if stored.case.episode_id:
            raise CaseError(
                f"{case_id!r} is a transaction of case {stored.case.episode_id}, not a case id: use the case id "
                f"(label the transaction alone with --transaction {case_id})"
            )
        episode = Episode.from_old_style(stored)
        episode.revision = revision_of(row)
        return episode, row

    def detail(self, case_id: str) -> CaseDetail:
        """A case, its members' records (oldest first) and its audit trail."""
        episode, row = self._find_row(case_id)
        if episode.old_style:
            return CaseDetail(episode, (stored_case(row),), audit_of(row))
        start = (episode.key + "#").encode()
        rows = self.store._cases.read_rows(start_key=start, end_key=prefix_end(episode.key + "#"))
        members = sorted((stored_case(r) for r in rows), key=lambda s: (s.case.event_time, s.case.transaction_id))
        return CaseDetail(episode, tuple(members), audit_of(row))

    def all_cases(self) -> Iterator[Episode]:
        """Every case (open or closed) in one scan of ``flagged``: the case rows only, their small cells only.

        What a queue keeps in memory: member rows and the alert claims stay in Bigtable (server-side filters),
        so each case costs its header, its members' summaries, its closed cell and its latest decision.
        """
        from google.cloud.bigtable.row_filters import RowFilterChain, RowKeyRegexFilter

        rows = self.store._cases.read_rows(
            filter_=RowFilterChain([RowKeyRegexFilter(_CASE_ROW), _queue_cells(), latest_cells()])
        )
        yield from _queue_episodes(rows)

    def changed_between(self, since: datetime, until: datetime) -> list[Episode]:
        """The cases whose rows got a cell stamped in ``[since, until)``, read whole as :meth:`all_cases` reads them.

        Two reads: which case rows changed (Bigtable's timestamp filter, one empty cell per row: keys only,
        server-side), then those rows by key. What stamps a case row with the time of the write: the stream's
        member writes (``case:touched``, :meth:`cases.episode_store.EpisodeStore.write_members`) and every
        analyst action (revision, audit, decision and closed cells). Not seen: a row deleted, a writer's
        clock behind by more than the caller's overlap, old-style rows (their cells carry event time): a
        caller keeps a full :meth:`all_cases` now and then for those. ``until`` keeps out the rows whose
        event-time cells lie in the future (a replay of future-dated data, the benchmark's): without it every
        rescan would read them all again.
        """
        from google.cloud.bigtable.row_filters import (
            CellsRowLimitFilter,
            RowFilterChain,
            RowKeyRegexFilter,
            StripValueTransformerFilter,
            TimestampRange,
            TimestampRangeFilter,
        )

        # The time filter first: it empties the unchanged rows, so the key regex runs on the changed ones only
        # (with 10,000 cases on the emulator: 65-221 ms a read against 311-707 ms with the regex first).
        changed = RowFilterChain(
            [
                TimestampRangeFilter(TimestampRange(start=since, end=until)),
                CellsRowLimitFilter(1),
                RowKeyRegexFilter(_CASE_ROW),
                StripValueTransformerFilter(True),
            ]
        )
        keys = [row.row_key for row in self.store._cases.read_rows(filter_=changed)]
        if not keys:
            return []
        rows = self.store._cases.read_rows(
            row_set=row_set_of(keys), filter_=RowFilterChain([_queue_cells(), latest_cells()])
        )
        return list(_queue_episodes(rows))

    def card_history(self, card_id: str, case_key: str, limit: int = 20) -> list[StoredCase]:
        """The card's flagged transactions outside the case at ``case_key`` (its other cases, old-style rows),
        newest first: two key ranges around the case's own rows, so a large case costs nothing here."""
        from google.cloud.bigtable.row_set import RowSet

        prefix = card_prefix(card_id)
        row_set = RowSet()
        row_set.add_row_range_from_keys(start_key=prefix.encode(), end_key=case_key.encode())
        row_set.add_row_range_from_keys(start_key=prefix_end(case_key + "#"), end_key=prefix_end(prefix))
        out = []
        for row in self.store._cases.read_rows(row_set=row_set, filter_=latest_cells()):
            if RECORD_COLUMN in row.cells.get(CASE_FAMILY, {}):
                out.append(stored_case(row))
                if len(out) >= limit:
                    break
        return out

    def list_card(
        self, card_id: str, limit: int = 50, *, status: str | None = None, reason: str | None = None
    ) -> list[Episode]:
        """The card's cases, newest first (by opening time), filtered."""
        from google.cloud.bigtable.row_filters import RowFilterChain, RowKeyRegexFilter

        prefix = card_prefix(card_id)
        rows = self.store._cases.read_rows(
            start_key=prefix.encode(),
            end_key=prefix_end(prefix),
            filter_=RowFilterChain([RowKeyRegexFilter(_CASE_ROW), latest_cells()]),
        )
        return self._take(rows, limit, status, reason)

    def list_since(
        self,
        start: datetime,
        end: datetime | None = None,
        limit: int = 50,
        *,
        status: str | None = None,
        reason: str | None = None,
        scan: int = 5000,
    ) -> list[Episode]:
        """Cases opened in ``[start, end)`` (by the time index), at most ``scan`` of them read, filtered."""
        keys = [k.encode() for k in self.store.time_keys(start, end, scan)]
        if keys and status == CLOSED:
            # Only rows that can be closed leave Bigtable (a close, or an old-style case's label): a window's
            # cases are read in full only when closed, which analysts make a few of (stream.label_metrics
            # asks every minute over a week of cases).
            keys = self.store.keys_holding(
                self.store._cases, keys, [(CASE_FAMILY, CLOSED_COLUMN), (DECISION_FAMILY, None)]
            )
        if not keys:
            return []
        rows = self.store.read_rows(self.store._cases, keys).values()
        return self._take(iter(rows), limit, status, reason)

    def _take(self, rows: Iterator[object], limit: int, status: str | None, reason: str | None) -> list[Episode]:
        out = []
        for row in rows:
            episode = _episode_of(row)
            if episode is None or not episode.members:
                continue  # a case header whose opening lost to another writer's: never a case
            if status and episode.status != status:
                continue
            if reason and reason not in episode.reasons:
                continue
            out.append(episode)
            if len(out) >= limit:
                break
        return out

    # --- decisions ---

    def close(self, case_id: str, analyst: str, *, expected: str | None = None) -> datetime:
        """Closes an open case (check-and-mutate: two analysts closing at once, one succeeds)."""
        episode = self._open_episode(case_id, "closed")
        self._begin(episode, expected, analyst, "closed")
        closed = self._close(episode, analyst)
        self._index(episode, closed_ms=epoch_ms(closed))
        return closed

    def reopen(self, case_id: str, analyst: str, *, expected: str | None = None) -> Episode:
        """Reopens a closed case (its decisions stay: the latest label is still what training reads)."""
        episode = self.find(case_id)
        if episode.old_style:
            raise CaseError(f"{case_id!r} is an old-style case (one transaction): it has no open/closed state")
        if episode.closed_ms is None:
            raise CaseError(f"case {case_id} is open already")
        self._begin(episode, expected, analyst, "reopened")
        row = self.store._cases.direct_row(episode.key.encode())
        row.delete_cell(CASE_FAMILY, CLOSED_COLUMN)
        row.commit()
        decision_index.unclose(self.store, episode.opened_ms, episode.case_id)
        return self.find(case_id)

    def note(self, case_id: str, note: str, analyst: str, *, expected: str | None = None) -> None:
        """Adds a note to the case's audit trail (no verdict, no change of status)."""
        if not note.strip():
            raise CaseError(f"case {case_id}: the note is empty")
        self._begin(self.find(case_id), expected, analyst, "note", note)

    def _close(self, episode: Episode, analyst: str) -> datetime:
        from cases.row_writes import SetCell, chain

        now_ms = epoch_ms(self.store._clock())
        cell = SetCell(CASE_FAMILY, CLOSED_COLUMN, now_ms, json.dumps({"by": analyst}).encode())
        (already,) = self.store._conditional.if_absent(
            [(episode.key.encode(), chain(family=CASE_FAMILY, column=CLOSED_COLUMN), [cell])]
        )
        if already:
            raise CaseError(f"case {episode.case_id} was closed meanwhile by someone else")
        return datetime.fromtimestamp(now_ms / 1000, UTC)

    def label(
        self, case_id: str, fraud: bool, note: str, analyst: str, *, expected: str | None = None
    ) -> tuple[Decision, int]:
        """Labels every member of a case (and the case), closing it if open; returns the decision and the members."""
        detail = self.detail(case_id)
        episode = detail.episode
        if episode.old_style:
            raise CaseError(
                f"{case_id!r} is an old-style case (one transaction, written before cases were card episodes): "
                f"label it with --transaction {case_id}"
            )
        decision = self._decision(fraud, note, analyst)
        closes = episode.status != CLOSED
        what = f"labelled {decision.verdict} ({len(detail.members)} members)" + ("; closed" if closes else "")
        self._begin(episode, expected, analyst, what, note)
        keys = [episode.key, *(m.row_key for m in detail.members)]
        self._write_decision(keys, decision)
        closed = self._close(episode, analyst) if closes else None
        self._index(episode, decision, closed_ms=epoch_ms(closed) if closed else None)
        return decision, len(detail.members)

    def label_transaction(
        self, transaction_id: str, fraud: bool, note: str, analyst: str, *, expected: str | None = None
    ) -> Decision:
        """Labels one transaction's row (a member, or an old-style case); ``expected``: its case's version."""
        key = self.store._main_key(transaction_id)
        row = self.store._cases.read_row(key.encode(), filter_=latest_cells())
        if row is None or RECORD_COLUMN not in row.cells.get(CASE_FAMILY, {}):
            raise CaseError(f"{transaction_id!r} is a case id, not a transaction: label it without --transaction")
        case = stored_case(row).case
        decision = self._decision(fraud, note, analyst)
        episode = self.find(case.case_id)
        self._begin(episode, expected, analyst, f"labelled {transaction_id} {decision.verdict}", note)
        self._write_decision([key], decision)
        self._index(episode, decision)
        return decision

    def _begin(self, episode: Episode, expected: str | None, analyst: str, action: str, note: str = "") -> None:
        """Checks the version and moves the revision, writing the audit cell in the same check-and-mutate."""
        from cases.row_writes import SetCell, chain

        if expected is not None and expected != episode.version:
            raise CaseConflict(episode.case_id, expected, episode.version)
        now_ms = epoch_ms(self.store._clock())
        revision = episode.revision + 1
        entry = {"analyst": analyst, "action": action, "note": note, "revision": revision}
        cells = [
            SetCell(CASE_FAMILY, REVISION_COLUMN, now_ms, str(revision).encode()),
            SetCell(AUDIT_FAMILY, f"{now_ms:013d}#{revision}".encode(), now_ms, json.dumps(entry).encode("utf-8")),
        ]
        key = episode.key.encode()
        column = chain(family=CASE_FAMILY, column=REVISION_COLUMN)
        if episode.revision == 0:
            (taken,) = self.store._conditional.if_absent([(key, column, cells)])
            won = not taken
        else:
            current = chain(family=CASE_FAMILY, column=REVISION_COLUMN, latest_value=str(episode.revision).encode())
            (won,) = self.store._conditional.if_present([(key, current, cells)])
        if not won:
            found = self.find(episode.case_id)
            raise CaseConflict(episode.case_id, episode.version, found.version)

    def _open_episode(self, case_id: str, verb: str) -> Episode:
        episode = self.find(case_id)
        if episode.old_style:
            raise CaseError(
                f"{case_id!r} is an old-style case (one transaction): it has no open/closed state to be {verb}; "
                f"label it with --transaction {case_id}"
            )
        if episode.closed_ms is not None:
            when = datetime.fromtimestamp(episode.closed_ms / 1000, UTC).isoformat()
            raise CaseError(f"case {case_id} is already closed (at {when} by {episode.closed_by or 'unknown'})")
        return episode

    def _decision(self, fraud: bool, note: str, analyst: str) -> Decision:
        when = datetime.fromtimestamp(epoch_ms(self.store._clock()) / 1000, UTC)
        return Decision(verdict=FRAUD if fraud else LEGIT, note=note, analyst=analyst, decided_at=when)

    def _index(self, episode: Episode, decision: Decision | None = None, *, closed_ms: int | None = None) -> None:
        """Records the decision and the close in the decision index too (what the feedback gauges read).

        After the case rows: a failure here raises to the analyst, whose retry rewrites the same cells."""
        cells = [decision_index.verdict_cell(decision)] if decision is not None else []
        if closed_ms is not None:
            cells.append(decision_index.closed_cell(closed_ms, episode.reasons))
        decision_index.write(self.store, [(decision_index.key(episode.opened_ms, episode.case_id), cells)])

    def backfill_index(self, *, force: bool = False) -> int | None:
        """Indexes every decided or closed case from the case rows into the decision index, once per table
        (a marker row; ``force`` runs it again); returns how many cases it indexed (None if it ran before).

        Two full scans of ``flagged``. Each cell keeps its decision's or close's own time, so a newer decision
        written meanwhile still wins."""
        if not force and decision_index.backfilled(self.store):
            return None
        opened: dict[str, int] = {}
        indexed: set[bytes] = set()

        def rows() -> Iterator[tuple[bytes, list[Any]]]:
            for episode in self.all_cases():
                opened[episode.case_id] = episode.opened_ms
                cells = [decision_index.verdict_cell(episode.decisions[0])] if episode.decisions else []
                if episode.closed_ms is not None:
                    cells.append(decision_index.closed_cell(episode.closed_ms, episode.reasons))
                if cells:
                    key = decision_index.key(episode.opened_ms, episode.case_id)
                    indexed.add(key)
                    yield key, cells
            for case, decisions in self.store.labelled():  # members labelled one by one carry their own decisions
                if case is not None and case.case_id in opened:
                    key = decision_index.key(opened[case.case_id], case.case_id)
                    indexed.add(key)
                    yield key, [decision_index.verdict_cell(decisions[0])]

        decision_index.write(self.store, rows())
        decision_index.mark_backfilled(self.store)
        _LOG.info("decision index: %d decided case(s) indexed from the case rows", len(indexed))
        return len(indexed)

    def _write_decision(self, keys: list[str], decision: Decision) -> None:
        from cases.row_writes import SetCell

        ms = epoch_ms(decision.decided_at)
        values = (decision.verdict, decision.note, decision.analyst)
        # One timestamp for the three cells: that is what groups them into one decision.
        cells = [SetCell(DECISION_FAMILY, c, ms, v.encode()) for c, v in zip(DECISION_COLUMNS, values, strict=True)]
        self.store._write_rows(self.store._case_writes, self.store._cases_name, [(k.encode(), cells) for k in keys])


def priority(e: Episode) -> tuple[int, int, int, float, int, float, float]:
    """Open and undecided first, then the higher score band and score, more members, more money, latest activity."""
    top = e.max_score
    ratio = top.error / top.threshold if top and top.threshold else 0.0
    return (
        e.status != OPEN,
        e.decision is not None,
        -e.band,
        -ratio,
        -len(e.members),
        -e.total_amount,
        -e.last_activity_ms,
    )


def audit_of(row: Any) -> tuple[AuditEntry, ...]:
    """A case row's audit cells, oldest first (the column starts with the action's time)."""
    entries = []
    for column, cells in sorted(row.cells.get(AUDIT_FAMILY, {}).items()):
        data = json.loads(cells[0].value)
        at = datetime.fromtimestamp(int(column.split(b"#", 1)[0]) / 1000, UTC)
        entries.append(
            AuditEntry(
                at, data.get("analyst", ""), data.get("action", ""), data.get("note", ""), data.get("revision", 0)
            )
        )
    return tuple(entries)


def _queue_cells() -> Any:
    """The cells of a case row a queue keeps: the header's small columns, the members' summaries, decisions."""
    from google.cloud.bigtable.row_filters import (
        ColumnQualifierRegexFilter,
        FamilyNameRegexFilter,
        RowFilterChain,
        RowFilterUnion,
    )

    header = b"|".join((EPISODE_COLUMN, CLOSED_COLUMN, REVISION_COLUMN, RECORD_COLUMN))
    return RowFilterUnion(
        [
            RowFilterChain([FamilyNameRegexFilter(CASE_FAMILY), ColumnQualifierRegexFilter(header)]),
            FamilyNameRegexFilter(MEMBER_FAMILY),
            FamilyNameRegexFilter(DECISION_FAMILY),
        ]
    )


def _queue_episodes(rows: Iterable[object]) -> Iterator[Episode]:
    for row in rows:
        episode = _episode_of(row)
        if episode is not None and episode.members:
            yield episode


def _episode_of(row: object) -> Episode | None:
    decisions = decisions_of(row)
    episode = parse_episode(row, decisions)
    if episode is not None:
        return episode
    if RECORD_COLUMN not in row.cells.get(CASE_FAMILY, {}):  # type: ignore[attr-defined]
        return None
    stored = stored_case(row)
    if stored.case.episode_id:
        return None
    old = Episode.from_old_style(stored)
    old.revision = revision_of(row)
    return old


__all__ = ["OLD_STYLE", "AuditEntry", "CaseConflict", "CaseDetail", "CaseError", "Casebook", "priority"]
