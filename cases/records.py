"""The case records: a flagged transaction (:class:`Case`), an analyst's :class:`Decision`, a :class:`StoredCase`.

Shared by the stream job (which creates cases), the case store (Bigtable rows), the alert sink (JSON
on the alerts topic), the trainer's label readers and the ``fraudscore cases`` command. Imports only
the standard library, so every one of them can import it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Case:
    """A fraud candidate: what the stream writes to Bigtable and publishes as an alert.

    Shared by the pipeline (which creates cases), the case store (Bigtable rows) and the alert
    sink (JSON on the alerts topic). A Case is one flagged transaction: a member of a card episode
    (``episode_id``), or in old-style rows a case of its own. Ids are deterministic so writes are idempotent;
    ``reasons`` are reason codes of :mod:`stream.rules`.
    """

    transaction_id: str
    card_id: str
    merchant_id: str
    event_time: datetime  # timezone-aware UTC
    amount: float
    reconstruction_error: float
    threshold: float
    model_version: int
    reasons: tuple[str, ...]
    top_features: tuple[tuple[str, float], ...] = ()
    window_start: datetime | None = None
    window_end: datetime | None = None
    # Window aggregates behind card-level reasons (count, amount_sum, max_error, anomalies).
    window_stats: dict[str, float] = field(default_factory=dict)
    # The raw transaction as scored (``raw_features`` in ``feature_names`` order): what recalibration rescores
    # and the second stage trains on. Empty in cases written before they were kept.
    raw_features: tuple[float, ...] = ()
    feature_names: tuple[str, ...] = ()
    fraud_probability: float | None = None  # the second stage's score, when the model has one
    # How far the transaction lies beyond the training normals' range (p1-p99 widths) and the model's limit:
    # past the limit a transaction is flagged whatever its error. None before the envelope rule.
    envelope_distance: float | None = None
    envelope_limit: float | None = None
    # The card episode (case) this flagged transaction is a member of (cases.episodes), set when the case
    # store assigns it; empty before that and in old-style rows, where the case was the transaction itself.
    episode_id: str = ""

    @property
    def case_id(self) -> str:
        return self.episode_id or self.transaction_id

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["case_id"] = self.case_id
        data["event_time"] = self.event_time.isoformat()
        data["window_start"] = self.window_start.isoformat() if self.window_start else None
        data["window_end"] = self.window_end.isoformat() if self.window_end else None
        data["reasons"] = list(self.reasons)
        data["top_features"] = [{"name": n, "share": s} for n, s in self.top_features]
        # Two parallel lists, not a name -> value object: the JSON is written with sorted keys, which would
        # lose the model card's feature order.
        data["raw_features"] = list(self.raw_features)
        data["feature_names"] = list(self.feature_names)
        return data

    @property
    def has_raw_features(self) -> bool:
        return bool(self.raw_features)

    @property
    def beyond_envelope(self) -> bool:
        """Whether the model flagged it for lying beyond the training normals' range (past the limit)."""
        return (
            self.envelope_distance is not None
            and self.envelope_limit is not None
            and self.envelope_distance > self.envelope_limit
        )

    @property
    def envelope_text(self) -> str:
        """Where it lies against the training normals' range, as the CLI and the console show it."""
        if self.envelope_distance is None or self.envelope_limit is None:
            return ""
        if self.envelope_distance <= 0:
            return "inside the training normals' range"
        text = (
            f"{self.envelope_distance:.3g} widths beyond the training normals' range (limit {self.envelope_limit:.3g})"
        )
        return text + ": flagged whatever its score" if self.beyond_envelope else text

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Case:
        probability = data.get("fraud_probability")
        distance, limit = data.get("envelope_distance"), data.get("envelope_limit")
        return cls(
            transaction_id=data["transaction_id"],
            card_id=data["card_id"],
            merchant_id=data.get("merchant_id", ""),
            event_time=datetime.fromisoformat(data["event_time"]),
            amount=float(data["amount"]),
            reconstruction_error=float(data["reconstruction_error"]),
            threshold=float(data["threshold"]),
            model_version=int(data["model_version"]),
            reasons=tuple(data["reasons"]),
            top_features=tuple((f["name"], float(f["share"])) for f in data.get("top_features", [])),
            window_start=datetime.fromisoformat(data["window_start"]) if data.get("window_start") else None,
            window_end=datetime.fromisoformat(data["window_end"]) if data.get("window_end") else None,
            window_stats={k: float(v) for k, v in data.get("window_stats", {}).items()},
            # Records written before raw features and the second stage existed have neither key.
            raw_features=tuple(float(v) for v in data.get("raw_features") or ()),
            feature_names=tuple(data.get("feature_names") or ()),
            fraud_probability=float(probability) if probability is not None else None,
            envelope_distance=float(distance) if distance is not None else None,
            envelope_limit=float(limit) if limit is not None else None,
            episode_id=data.get("episode_id") or "",
        )

    def to_alert(self) -> bytes:
        """The JSON published on the alerts topic."""
        return json.dumps(self.to_json_dict(), sort_keys=True).encode("utf-8")


@dataclass(frozen=True)
class Decision:
    """An analyst's verdict on a case."""

    verdict: str  # FRAUD or LEGIT
    note: str
    analyst: str
    decided_at: datetime

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "note": self.note,
            "analyst": self.analyst,
            "decided_at": self.decided_at.isoformat(),
        }


@dataclass(frozen=True)
class StoredCase:
    """A case as stored: the record, its row key and its decisions (newest first)."""

    case: Case
    row_key: str
    decisions: tuple[Decision, ...] = ()

    @property
    def decision(self) -> Decision | None:
        return self.decisions[0] if self.decisions else None

    def to_json_dict(self) -> dict[str, Any]:
        data = self.case.to_json_dict()
        data["row_key"] = self.row_key
        data["decision"] = self.decision.to_json_dict() if self.decision else None
        data["decisions"] = [d.to_json_dict() for d in self.decisions]
        return data


class SampledTransaction(Protocol):
    """What the traffic sample keeps of a scored transaction (the stream's ``ScoredTransaction`` has it).

    A protocol, not an import: ``cases`` is below the services and imports none of them.
    """

    transaction_id: str
    card_id: str
    event_time: float  # seconds since the epoch (UTC)
    amount: float
    model_name: str
    model_version: int
    threshold: float
    reconstruction_error: float
    fraud_probability: float | None
    is_anomaly: bool
    feature_names: tuple[str, ...]

    @property
    def raw_features(self) -> tuple[float, ...]: ...
