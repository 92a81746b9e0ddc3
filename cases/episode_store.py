"""The stream's side of card-episode cases: assign flagged transactions to cases, write them, claim alerts.

The durable rows are the source of truth for an episode (:mod:`cases.episode_rows` has the layout), so
it survives restarts and holds across workers: a card's current case is the ``open#`` pointer row, moved
only by a check-and-mutate that matches its previous value. The stream's in-memory card state is a cache
of nothing here. Per batch of flagged transactions (:meth:`EpisodeStore.assign`):

1. the pointers of the batch's cards and the cases they name are read (two multi-row reads);
2. each card's transactions, oldest first, join its case while :func:`cases.episodes.joins` holds, else
   open a new case (its id from the card and the opening transaction: a replay derives the same one);
3. a new case's row header (and a snooze's inherited components) is written first, then the pointer is
   moved; a card whose pointer moved meanwhile (another worker) is done again from step 1.

Then the members are written (:meth:`write_members`, idempotent), each touched case's escalation is
claimed component by component (:meth:`cases.store.CaseStore.claim_targets`), alerts go out, and last
each member's ``id#`` lookup row marks it done (:meth:`mark_done`): a redelivered transaction with that
row is skipped, one without it is assigned again and finds the same case and the same claims.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from cases.episode_rows import (
    CLOSED,
    EPISODE_COLUMN,
    MEMBER_FAMILY,
    OPEN_COLUMN,
    OPEN_PREFIX,
    TOUCHED_COLUMN,
    Episode,
    Member,
    alerted_column,
    claim_column,
    parse_episode,
)
from cases.episodes import CASE_ID_PREFIX, EpisodeConfig, case_id_for, escalation, joins, snoozed
from cases.records import Case
from cases.row_writes import SetCell, chain
from cases.store import (
    CASE_FAMILY,
    KEY_COLUMN,
    MAX_MS,
    RECORD_COLUMN,
    REF_FAMILY,
    CaseStore,
    bucket_of,
    card_prefix,
    decisions_of,
    epoch_ms,
    escape,
    id_key,
)

_ATTEMPTS = 5


def episode_key(card_id: str, opened_ms: int, case_id: str) -> str:
    """The case row key: the card's prefix, then newest first (as old-style rows, by opening time)."""

    return f"{card_prefix(card_id)}{MAX_MS - opened_ms:013d}#{case_id}"


def member_key(case_key: str, transaction_id: str) -> str:

    return f"{case_key}#{escape(transaction_id)}"


def open_key(card_id: str) -> bytes:

    return f"{OPEN_PREFIX}{card_prefix(card_id)}".encode()


class EpisodeStore:
    """Card-episode cases on a :class:`~cases.store.CaseStore`'s tables (its client, writers and clock)."""

    def __init__(self, store: CaseStore, config: EpisodeConfig | None = None) -> None:
        self.store = store
        self.config = config or EpisodeConfig()
        # Pointers read with already_done(): (cards asked, card -> value), used once by the next assign().
        self._prefetched: tuple[set[str], dict[str, bytes]] | None = None

    # --- the stream's writes ---

    def already_done(self, cases: Sequence[Case]) -> set[str]:
        """Transaction ids among ``cases`` that already have a case row (a member, or an old-style case).

        The same multi-row read fetches the cases' cards' pointers, which the next :meth:`assign` starts from
        (one round trip less per batch on the alert path).
        """
        cards = sorted({c.card_id for c in cases})
        ids = [id_key(c.transaction_id).encode() for c in cases]
        found = self.store.read_rows(self.store._index, ids + [open_key(c) for c in cards])
        self._prefetched = self._pointer_values(found, cards)
        return {c.transaction_id for c, key in zip(cases, ids, strict=True) if key in found}

    def assign(self, cases: Sequence[Case]) -> tuple[list[Case], dict[str, Episode], set[str]]:
        """Each flagged transaction with its case id; the touched cases (as read, plus these members); opened ids."""

        by_card: dict[str, list[Case]] = defaultdict(list)
        for case in sorted(cases, key=lambda c: (c.event_time, c.transaction_id)):
            by_card[case.card_id].append(case)
        assigned: list[Case] = []
        touched: dict[str, Episode] = {}
        opened: set[str] = set()
        for _ in range(_ATTEMPTS):
            if not by_card:
                break
            pointers = self._pointers(list(by_card))
            current = self.read_episodes([self._pointed_key(card, value) for card, value in pointers.items()])
            plans: dict[str, tuple[bytes | None, list[Episode], list[tuple[Case, Episode]]]] = {}
            for card, members in by_card.items():
                value = pointers.get(card)
                episode = current.get(self._pointed_key(card, value)) if value else None
                new: list[Episode] = []
                joined: list[tuple[Case, Episode]] = []
                for case in members:
                    ms = epoch_ms(case.event_time)
                    if episode is None or episode.status == CLOSED or not self._joins(episode, ms):
                        episode = self._opening(card, case, ms, episode)
                        new.append(episode)
                    episode.members[case.transaction_id] = Member.of(case, ms)
                    joined.append((case, episode))
                plans[card] = (value, new, joined)
            self._write_headers([e for _, new, _ in plans.values() for e in new])
            moved = self._move_pointers([(card, old, new[-1]) for card, (old, new, _) in plans.items() if new])
            for card, (_, new, joined) in plans.items():
                if new and not moved[card]:
                    continue  # another writer moved the card's pointer: read it again
                for case, episode in joined:
                    assigned.append(replace(case, episode_id=episode.case_id))
                    touched[episode.key] = episode
                opened.update(e.case_id for e in new)
                del by_card[card]
        if by_card:
            raise RuntimeError(f"cards {sorted(by_card)[:3]}: their open case kept moving; not assigned")
        return assigned, touched, opened

    def _joins(self, episode: Episode, ms: int) -> bool:
        return joins(episode.last_activity_ms, ms, episode.opened_ms, self.config)

    def _opening(self, card: str, case: Case, ms: int, previous: Episode | None) -> Episode:
        case_id = case_id_for(card, case.transaction_id)
        episode = Episode(case_id, card, ms, episode_key(card, ms, case_id))
        if previous is not None and snoozed(previous.closed_legit_at_ms, ms, self.config):
            # An analyst cleared the card's previous case as legit: what it alerted counts as alerted here.
            episode.alerted = {*previous.alerted}
            episode.snoozed_from = previous.case_id
        return episode

    @staticmethod
    def _pointed_key(card: str, value: bytes | None) -> str:
        if not value:
            return ""
        hex_id, _, opened = value.decode().partition("@")
        return episode_key(card, int(opened), CASE_ID_PREFIX + hex_id)

    def _pointers(self, cards: list[str]) -> dict[str, bytes]:
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None and set(cards) <= prefetched[0]:
            return {c: v for c, v in prefetched[1].items() if c in cards}
        return self._pointer_values(self.store.read_rows(self.store._index, [open_key(c) for c in cards]), cards)[1]

    @staticmethod
    def _pointer_values(rows: dict[bytes, Any], cards: list[str]) -> tuple[set[str], dict[str, bytes]]:
        """(the cards asked, card -> pointer value) from index rows read by key."""
        by_key = {open_key(c): c for c in cards}
        out = {}
        for key, row in rows.items():
            cell = row.cells.get(REF_FAMILY, {}).get(OPEN_COLUMN) if key in by_key else None
            if cell:
                out[by_key[key]] = cell[0].value
        return set(cards), out

    def _write_headers(self, episodes: list[Episode]) -> None:

        now = self._now_ms()
        rows = []
        for e in episodes:
            header = json.dumps({"case_id": e.case_id, "card_id": e.card_id, "opened_ms": e.opened_ms}).encode()
            cells = [SetCell(CASE_FAMILY, EPISODE_COLUMN, e.opened_ms, header)]
            for component in sorted(e.alerted):  # a snooze's inherited components: claimed and alerted already
                cells.append(SetCell(CASE_FAMILY, claim_column(component), now, f"snoozed@{now}".encode()))
                cells.append(SetCell(CASE_FAMILY, alerted_column(component), now, f"snoozed:{e.snoozed_from}".encode()))
            rows.append((e.key.encode(), cells))
        self.store._write_rows(self.store._case_writes, self.store._cases_name, rows)

    def _move_pointers(self, moves: list[tuple[str, bytes | None, Episode]]) -> dict[str, bool]:
        """Points each card at its newest case, if the pointer still holds what was read; card -> moved."""

        now = self._now_ms()
        fresh = [(c, e) for c, old, e in moves if old is None]
        replacing = [(c, old, e) for c, old, e in moves if old is not None]
        out: dict[str, bool] = {}
        if fresh:
            absent = chain(family=REF_FAMILY, column=OPEN_COLUMN)
            matched = self.store._index_conditional.if_absent(
                [(open_key(c), absent, [self._pointer(e, now)]) for c, e in fresh]
            )
            out.update({c: not m for (c, _), m in zip(fresh, matched, strict=True)})
        if replacing:
            cells = [
                (open_key(c), chain(family=REF_FAMILY, column=OPEN_COLUMN, latest_value=old), [self._pointer(e, now)])
                for c, old, e in replacing
                if old is not None
            ]
            matched = self.store._index_conditional.if_present(cells)
            out.update({c: m for (c, _, _), m in zip(replacing, matched, strict=True)})
        return out

    @staticmethod
    def _pointer(episode: Episode, now_ms: int) -> Any:

        # The write time as cell time: the newest pointer is the newest cell, whatever the events' times.
        return SetCell(REF_FAMILY, OPEN_COLUMN, now_ms, episode.pointer())

    def write_members(self, members: Sequence[Case], episodes: dict[str, Episode]) -> None:
        """Member rows, the member cells of their case rows, and the cases' time-index and id rows (idempotent)."""

        by_id = {e.case_id: e for e in episodes.values()}
        case_rows = []
        for case in members:
            episode = by_id[case.episode_id]
            ms = epoch_ms(case.event_time)
            record = json.dumps(case.to_json_dict(), sort_keys=True).encode()
            member_row = member_key(episode.key, case.transaction_id).encode()
            case_rows.append((member_row, [SetCell(CASE_FAMILY, RECORD_COLUMN, ms, record)]))
            member = episode.members[case.transaction_id]
            case_rows.append((episode.key.encode(), [SetCell(MEMBER_FAMILY, member.column(), ms, member.value())]))
        # Stamped with the write's wall-clock time, unlike the member cells: what the console's incremental
        # rescan (Casebook.changed_between) finds changed rows by. A replay stamps it again: the row was written.
        now = self._now_ms()
        written = sorted({by_id[case.episode_id].key for case in members})
        case_rows.extend((key.encode(), [SetCell(CASE_FAMILY, TOUCHED_COLUMN, now, b"")]) for key in written)
        self.store._write_rows(self.store._case_writes, self.store._cases_name, case_rows)
        index_rows = []
        for e in episodes.values():
            ref = [SetCell(REF_FAMILY, KEY_COLUMN, e.opened_ms, e.key.encode())]
            bucket = bucket_of(e.case_id, self.store.buckets)
            index_rows.append((f"{bucket:02d}#{e.opened_ms:013d}#{e.case_id}".encode(), ref))
            index_rows.append((id_key(e.case_id).encode(), ref))
        self.store._write_rows(self.store._index_writes, self.store._index_name, index_rows)

    def escalations(self, episodes: Iterable[Episode]) -> list[tuple[Episode, frozenset[str]]]:
        """The touched cases that have components to alert, with those components."""
        out = []
        for e in episodes:
            if e.status == CLOSED:
                continue  # closed by an analyst while this batch was on its way: decided already
            needed = escalation(e.reasons, e.band, e.alerted)
            if needed:
                out.append((e, needed))
        return out

    def mark_alerted(self, alerted: Iterable[tuple[Episode, Iterable[str], str]]) -> None:

        now = self._now_ms()
        rows = [
            (e.key.encode(), [SetCell(CASE_FAMILY, alerted_column(c), now, message_id.encode()) for c in components])
            for e, components, message_id in alerted
        ]
        self.store._write_rows(self.store._case_writes, self.store._cases_name, rows)

    def mark_done(self, members: Sequence[Case], episodes: dict[str, Episode]) -> None:
        """The members' ``id#`` lookup rows, last: a redelivered transaction with one is skipped."""

        keys = {e.case_id: e.key for e in episodes.values()}
        rows = []
        for c in members:
            member_row = member_key(keys[c.episode_id], c.transaction_id).encode()
            rows.append(
                (
                    id_key(c.transaction_id).encode(),
                    [SetCell(REF_FAMILY, KEY_COLUMN, epoch_ms(c.event_time), member_row)],
                )
            )
        self.store._write_rows(self.store._index_writes, self.store._index_name, rows)

    # --- reads ---

    def read_episodes(self, keys: Iterable[str]) -> dict[str, Episode]:
        """Case rows by key (latest cells); keys without a case row are left out."""

        wanted = [k.encode() for k in keys if k]
        out = {}
        for key, row in self.store.read_rows(self.store._cases, wanted, latest=True).items():
            episode = parse_episode(row, decisions_of(row))
            if episode is not None:
                out[key.decode()] = episode
        return out

    def _now_ms(self) -> int:

        return epoch_ms(self.store._clock())
