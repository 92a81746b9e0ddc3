"""Card-episode cases as Bigtable rows: their keys, and an :class:`Episode` read back from its row.

Rows (tables of :class:`fraudscore.config.Resources`; the layout is documented in :mod:`cases.store`):

``flagged``
    case row  ``<h4(card)>#<card>#<reverse opened ms>#<case id>``: a card's cases newest first, next to
              old-style rows (``...#<reverse event ms>#<transaction id>``). ``case:episode`` (JSON: case id,
              card, opened ms), one ``member:<event ms>#<transaction id>`` cell per member (JSON: score,
              threshold, reasons, amount), ``case:claim-<component>`` / ``case:alerted-<component>`` per
              alerted component (:mod:`cases.episodes`), ``case:closed`` (JSON: by whom; cell time = when),
              ``case:rev`` (analysts' actions so far), the decisions as on every case row, the audit trail
              (family ``audit``, one cell per action: ``<ms>#<nonce>`` -> JSON who, what, note), and
              ``case:touched`` (empty; cell time = the stream's last member write, wall clock).
    member row ``<case row key>#<transaction id>``: the member's full record (``case:record``, the
              :class:`~cases.records.Case` with its ``episode_id``) and its own decisions: the rows labels
              and retraining read, one per transaction.
``flagged-by-time``
    ``<bucket>#<opened ms>#<case id>`` (the time index, by opening time), ``id#<h4>#<case id>`` and
    ``id#<h4>#<transaction id>`` (point lookups, ``ref:key``), and ``open#<h4(card)>#<card>``: the card's
    current case (``ref:open`` = ``<16 hex of the case id>@<opened ms>``), moved only by a check-and-mutate
    matching its previous value, so two workers or a redelivery never open two cases for one episode; and
    ``decided#<opened ms>#<case id>``, the decision index (:mod:`cases.decision_index`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cases.episodes import CASE_ID_PREFIX, score_band
from cases.records import Case, Decision, StoredCase

EPISODE_COLUMN = b"episode"
CLOSED_COLUMN = b"closed"
# The wall-clock time of the stream's last write to a case row: its member cells carry the event time (so a
# replay writes the same cells), which a reader looking for rows changed since a moment cannot use.
TOUCHED_COLUMN = b"touched"
REVISION_COLUMN = b"rev"  # a case row's decision count: what a stale decision is checked against (cases.casebook)
AUDIT_FAMILY = "audit"  # who did what to a case, when: one cell per action (cases.casebook)
MEMBER_FAMILY = "member"
OPEN_COLUMN = b"open"
OPEN_PREFIX = "open#"
CLAIM_COLUMN_PREFIX = "claim-"  # + component: "<token>@<claimed at ms>", who publishes that component's alert
ALERT_COLUMN_PREFIX = "alerted-"  # + component: the alert's message id (or "snoozed:<case id>")
OLD_STYLE = "old-style"
OPEN = "open"
CLOSED = "closed"


@dataclass(frozen=True)
class Member:
    """What a case row keeps of each member (the full record is on the member's own row)."""

    transaction_id: str
    event_ms: int
    error: float
    threshold: float
    reasons: tuple[str, ...]
    amount: float

    @property
    def band(self) -> int:
        return score_band(self.error, self.threshold)

    def column(self) -> bytes:
        return f"{self.event_ms:013d}#{self.transaction_id}".encode()

    def value(self) -> bytes:
        data = {"error": self.error, "threshold": self.threshold, "reasons": list(self.reasons), "amount": self.amount}
        return json.dumps(data, sort_keys=True).encode("utf-8")

    @classmethod
    def of(cls, case: Case, event_ms: int) -> Member:
        return cls(case.transaction_id, event_ms, case.reconstruction_error, case.threshold, case.reasons, case.amount)

    @classmethod
    def parse(cls, column: bytes, value: bytes) -> Member:
        ms, _, tx = column.decode("utf-8").partition("#")
        data = json.loads(value)
        return cls(tx, int(ms), float(data["error"]), float(data["threshold"]), tuple(data["reasons"]), data["amount"])


@dataclass
class Episode:
    """A case as read from its row (or an old-style case, one transaction): what lists, alerts and snoozes need."""

    case_id: str
    card_id: str
    opened_ms: int
    key: str
    members: dict[str, Member] = field(default_factory=dict)
    alerted: set[str] = field(default_factory=set)  # components with an alerted cell (snoozed ones too)
    closed_ms: int | None = None
    closed_by: str = ""
    decisions: tuple[Decision, ...] = ()
    old_style: bool = False
    snoozed_from: str = ""  # opened within the snooze of this legit-closed case: its alerted components inherited
    revision: int = 0  # analysts' actions so far (case:rev): with the members, the case's version

    @property
    def version(self) -> str:
        """What an analyst saw: the actions so far and the members (the stream adds members without a revision).

        A decision made on a page showing another version is stale (:class:`cases.casebook.CaseConflict`).
        """
        return f"r{self.revision}m{len(self.members)}"

    @property
    def last_activity_ms(self) -> int:
        return max((m.event_ms for m in self.members.values()), default=self.opened_ms)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Reason codes so far, in the order members brought them."""
        seen: dict[str, None] = {}
        for m in sorted(self.members.values(), key=lambda m: m.event_ms):
            seen.update(dict.fromkeys(m.reasons))
        return tuple(seen)

    @property
    def band(self) -> int:
        return max((m.band for m in self.members.values()), default=0)

    @property
    def max_score(self) -> Member | None:
        """The member with the highest error over its threshold."""
        return max(self.members.values(), key=lambda m: m.error / m.threshold if m.threshold else m.error, default=None)

    @property
    def total_amount(self) -> float:
        return sum(m.amount for m in self.members.values())

    @property
    def status(self) -> str:
        if self.closed_ms is not None or (self.old_style and self.decisions):
            return CLOSED
        return OPEN

    @property
    def decision(self) -> Decision | None:
        return self.decisions[0] if self.decisions else None

    @property
    def closed_legit_at_ms(self) -> int | None:
        """When an analyst closed it, if the latest verdict is legit (what snoozes the card)."""
        d = self.decision
        return self.closed_ms if self.closed_ms is not None and d is not None and d.verdict == "legit" else None

    def pointer(self) -> bytes:
        """The card's ``open#`` pointer value naming this case (hex digits, ``@`` and digits only)."""
        return f"{self.case_id[len(CASE_ID_PREFIX) :]}@{self.opened_ms}".encode()

    def to_json_dict(self) -> dict[str, Any]:
        top = self.max_score
        return {
            "case_id": self.case_id,
            "card_id": self.card_id,
            "style": OLD_STYLE if self.old_style else "episode",
            "opened": _iso(self.opened_ms),
            "last_activity": _iso(self.last_activity_ms),
            "members": len(self.members),
            "transaction_ids": [m.transaction_id for m in sorted(self.members.values(), key=lambda m: m.event_ms)],
            "reasons": list(self.reasons),
            "max_score": top.error if top else None,
            "threshold": top.threshold if top else None,
            "band": self.band,
            "total_amount": round(self.total_amount, 2),
            "status": self.status,
            "closed": _iso(self.closed_ms) if self.closed_ms is not None else None,
            "closed_by": self.closed_by or None,
            "decision": self.decision.to_json_dict() if self.decision else None,
            "alerted": sorted(self.alerted),
            "row_key": self.key,
        }

    @classmethod
    def from_old_style(cls, stored: StoredCase) -> Episode:
        c = stored.case
        ms = int(c.event_time.timestamp() * 1000)
        member = Member(c.transaction_id, ms, c.reconstruction_error, c.threshold, c.reasons, c.amount)
        return cls(
            c.transaction_id,
            c.card_id,
            ms,
            stored.row_key,
            {c.transaction_id: member},
            decisions=stored.decisions,
            old_style=True,
        )


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def parse_episode(row: Any, decisions: tuple[Decision, ...]) -> Episode | None:
    """The episode of a ``flagged`` row holding ``case:episode`` (None for any other row)."""
    family = row.cells.get("case", {})
    header = family.get(EPISODE_COLUMN)
    if not header:
        return None
    data = json.loads(header[0].value)
    episode = Episode(
        data["case_id"], data["card_id"], int(data["opened_ms"]), row.row_key.decode("utf-8"), decisions=decisions
    )
    for column, cells in row.cells.get(MEMBER_FAMILY, {}).items():
        member = Member.parse(column, cells[0].value)
        episode.members[member.transaction_id] = member
    for column in family:
        name = column.decode("utf-8")
        if name.startswith(ALERT_COLUMN_PREFIX):
            episode.alerted.add(name[len(ALERT_COLUMN_PREFIX) :])
    episode.revision = revision_of(row)
    closed = family.get(CLOSED_COLUMN)
    if closed:
        episode.closed_ms = closed[0].timestamp_micros // 1000  # the cell time is when it was closed
        episode.closed_by = json.loads(closed[0].value).get("by", "")
    return episode


def revision_of(row: Any) -> int:
    """A case row's ``case:rev`` (0 before any analyst's action through :class:`cases.casebook.Casebook`)."""
    cells = row.cells.get("case", {}).get(REVISION_COLUMN)
    return int(cells[0].value) if cells else 0


def claim_column(component: str) -> bytes:
    return (CLAIM_COLUMN_PREFIX + component).encode()


def alerted_column(component: str) -> bytes:
    return (ALERT_COLUMN_PREFIX + component).encode()
