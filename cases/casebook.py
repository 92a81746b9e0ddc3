"""The analysts' side of cases: find, list, close and label card-episode cases (and old-style ones).

What ``fraudscore cases`` and a console call. Every check runs before the first write, so bad input (an
unknown id, an old-style id where a case is needed, a closed case closed again) changes nothing and
raises a :class:`CaseError` whose one-line message names the id and the reason.

Old-style rows (written before cases were card episodes: one transaction, case id = transaction id) are
read and listed as one-member cases marked ``old-style``; they are labelled with ``--transaction``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from cases.episode_rows import CLOSED, CLOSED_COLUMN, OLD_STYLE, Episode, parse_episode
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
    stored_case,
)

# Rows of a card's range that are cases (episode or old-style), not members: three '#' separators
# (ids are escaped, so a '#' is always one).
_CASE_ROW = rb"[^#]*#[^#]*#[^#]*#[^#]*"


class CaseError(CaseStoreError):
    """A case command that cannot be done as asked; the message names the id and why."""


@dataclass(frozen=True)
class CaseDetail:
    """A case with its members' full records (old-style: the one transaction)."""

    episode: Episode
    members: tuple[StoredCase, ...]


class Casebook:
    """Reads and decides cases through a :class:`~cases.store.CaseStore`."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    # --- reads ---

    def find(self, case_id: str) -> Episode:
        """The case with this id (an episode, or an old-style case); raises CaseError for a member's id."""
        key = self.store._main_key(case_id)
        row = self.store._cases.read_row(key.encode())
        if row is None:
            raise CaseNotFound(case_id)
        episode = parse_episode(row, decisions_of(row))
        if episode is not None:
            return episode
        stored = stored_case(row)
        if stored.case.episode_id:
            raise CaseError(
                f"{case_id!r} is a transaction of case {stored.case.episode_id}, not a case id: use the case id "
                f"(label the transaction alone with --transaction {case_id})"
            )
        return Episode.from_old_style(stored)

    def detail(self, case_id: str) -> CaseDetail:
        """A case and its members' records (oldest first)."""
        episode = self.find(case_id)
        if episode.old_style:
            return CaseDetail(episode, (self.store.get(case_id),))
        start = (episode.key + "#").encode()
        rows = self.store._cases.read_rows(start_key=start, end_key=prefix_end(episode.key + "#"))
        members = sorted((stored_case(r) for r in rows), key=lambda s: (s.case.event_time, s.case.transaction_id))
        return CaseDetail(episode, tuple(members))

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
        keys = self.store.time_keys(start, end, scan)
        if not keys:
            return []
        rows = self.store.read_rows(self.store._cases, [k.encode() for k in keys]).values()
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

    def close(self, case_id: str, analyst: str) -> datetime:
        """Closes an open case (check-and-mutate: two analysts closing at once, one succeeds)."""
        episode = self._open_episode(case_id, "closed")
        return self._close(episode, analyst)

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

    def label(self, case_id: str, fraud: bool, note: str, analyst: str) -> tuple[Decision, int]:
        """Labels every member of a case (and the case), closing it if open; returns the decision and the members."""
        episode = self.find(case_id)
        if episode.old_style:
            raise CaseError(
                f"{case_id!r} is an old-style case (one transaction, written before cases were card episodes): "
                f"label it with --transaction {case_id}"
            )
        detail = self.detail(case_id)
        decision = self._decision(fraud, note, analyst)
        keys = [episode.key, *(m.row_key for m in detail.members)]
        self._write_decision(keys, decision)
        if episode.status != CLOSED:
            self._close(episode, analyst)
        return decision, len(detail.members)

    def label_transaction(self, transaction_id: str, fraud: bool, note: str, analyst: str) -> Decision:
        """Labels one transaction's row (a member, or an old-style case)."""
        key = self.store._main_key(transaction_id)
        row = self.store._cases.read_row(key.encode(), filter_=latest_cells())
        if row is None or RECORD_COLUMN not in row.cells.get(CASE_FAMILY, {}):
            raise CaseError(f"{transaction_id!r} is a case id, not a transaction: label it without --transaction")
        decision = self._decision(fraud, note, analyst)
        self._write_decision([key], decision)
        return decision

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

    def _write_decision(self, keys: list[str], decision: Decision) -> None:
        from cases.row_writes import SetCell

        ms = epoch_ms(decision.decided_at)
        values = (decision.verdict, decision.note, decision.analyst)
        # One timestamp for the three cells: that is what groups them into one decision.
        cells = [SetCell(DECISION_FAMILY, c, ms, v.encode()) for c, v in zip(DECISION_COLUMNS, values, strict=True)]
        self.store._write_rows(self.store._case_writes, self.store._cases_name, [(k.encode(), cells) for k in keys])


def _episode_of(row: object) -> Episode | None:
    decisions = decisions_of(row)
    episode = parse_episode(row, decisions)
    if episode is not None:
        return episode
    if RECORD_COLUMN not in row.cells.get(CASE_FAMILY, {}):  # type: ignore[attr-defined]
        return None
    stored = stored_case(row)
    return None if stored.case.episode_id else Episode.from_old_style(stored)


__all__ = ["OLD_STYLE", "CaseDetail", "CaseError", "Casebook"]
