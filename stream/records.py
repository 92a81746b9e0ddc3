"""The records the stream job passes between its steps, at the bottom of ``stream/``.

Every step of the job imports its records from here and nothing else from its
neighbours, so no step imports another one for a dataclass::

    ParseTransactions  -> Transaction (fraudscore.v1) | DeadLetter
    ScoreTransactions  -> ScoredTransaction            | DeadLetter
    CardWindows / card_state -> CardWindow (aggregates of one card's window)
    FlagCases          -> Case (written to Bigtable, published as an alert)

This module imports only the standard library.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

# Pub/Sub limits attribute values to 1024 bytes; reasons are cut to fit.
_MAX_ATTRIBUTE_CHARS = 900


@dataclass(frozen=True)
class DeadLetter:
    """Something that could not be parsed or scored, with everything needed to replay it."""

    payload: bytes
    attributes: Mapping[str, str]
    stage: str  # "parse" or "score"
    field: str
    reason: str
    code: str = "invalid_field"  # low-cardinality label for metrics
    # Pub/Sub ack ids to acknowledge once this letter is published (local pulled ingest only; never published).
    ack_ids: tuple[str, ...] = ()

    def dlq_attributes(self) -> dict[str, str]:
        """The original attributes plus why, for the dead-letter topic."""
        attrs = {str(k): str(v) for k, v in self.attributes.items()}
        attrs.update(
            dlq_stage=self.stage,
            dlq_field=self.field[:_MAX_ATTRIBUTE_CHARS],
            dlq_reason=self.reason[:_MAX_ATTRIBUTE_CHARS],
            dlq_code=self.code,
        )
        return attrs


@dataclass(frozen=True)
class ScoredTransaction:
    """A transaction with its model outputs: what windows, flag rules and cases need."""

    transaction_id: str
    card_id: str
    merchant_id: str
    event_time: float  # seconds since the epoch (UTC)
    amount: float
    reconstruction_error: float
    is_anomaly: bool
    top_features: tuple[tuple[str, float], ...]
    out_of_range: int
    model_name: str
    model_version: int
    threshold: float
    # Pub/Sub ack ids of the message(s) behind it (local pulled ingest only): acknowledged by the sinks
    # once every effect of the transaction is durable (stream.ingest).
    ack_ids: tuple[str, ...] = ()
    # The raw features as scored, in ``feature_names`` order (the model card's), so a case keeps what is
    # needed to rescore and retrain: float32 little-endian bytes (:func:`float32_bytes`), one bytes object
    # because the card state pickles every transaction of a card on each arrival (a 150-transaction state
    # round-trips in ~90 us with bytes, ~380 us with a tuple of 29 floats). ``feature_names`` is the loaded
    # model's one tuple, shared by every transaction it scored (pickled once per state value).
    raw: bytes = b""
    feature_names: tuple[str, ...] = ()
    # The second stage's score, when the model version has one (``Scores.fraud_probability``).
    fraud_probability: float | None = None

    @property
    def raw_features(self) -> tuple[float, ...]:
        return struct.unpack(f"<{len(self.raw) // 4}f", self.raw)


def float32_bytes(values: Sequence[float]) -> bytes:
    """``ScoredTransaction.raw`` of feature values (float32, little-endian)."""
    return struct.pack(f"<{len(values)}f", *values)


@dataclass(frozen=True)
class Release:
    """A marker travelling with a step's cases: release these ack ids once the cases before it are durable.

    Emitted in the same call as the cases it follows, so it reaches the sink in the same bundle, whose
    ``finish_bundle`` makes the cases durable before it releases anything (:mod:`stream.ingest`).
    """

    ack_ids: tuple[str, ...]


@dataclass(frozen=True)
class CardWindow:
    """One firing of one card's window: the aggregates and the transactions behind them."""

    card_id: str
    window_start: float  # seconds since the epoch
    window_end: float
    count: int
    amount_sum: float
    mean_error: float
    max_error: float
    anomalies: int
    members: tuple[ScoredTransaction, ...]
    timing: str  # EARLY, ON_TIME, LATE

    def stats(self) -> dict[str, float]:
        return {
            "count": float(self.count),
            "amount_sum": self.amount_sum,
            "mean_error": self.mean_error,
            "max_error": self.max_error,
            "anomalies": float(self.anomalies),
        }


@dataclass(frozen=True)
class Case:
    """A fraud candidate: what the stream writes to Bigtable and publishes as an alert.

    Shared by the pipeline (which creates cases), the case store (Bigtable rows) and the alert
    sink (JSON on the alerts topic). ``case_id`` is deterministic so writes are idempotent;
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

    @property
    def case_id(self) -> str:
        return self.transaction_id

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

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Case:
        probability = data.get("fraud_probability")
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
        )

    def to_alert(self) -> bytes:
        """The JSON published on the alerts topic."""
        return json.dumps(self.to_json_dict(), sort_keys=True).encode("utf-8")
