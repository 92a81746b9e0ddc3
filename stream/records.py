"""The records the stream job passes between its steps, at the bottom of ``stream/``.

Every step of the job imports its records from here and nothing else from its
neighbours, so no step imports another one for a dataclass::

    ParseTransactions  -> Transaction (fraudscore.v1) | DeadLetter
    ScoreTransactions  -> ScoredTransaction            | DeadLetter
    CardWindows / card_state -> CardWindow (aggregates of one card's window)
    FlagCases          -> cases.records.Case (written to Bigtable, published as an alert)

This module imports only the standard library.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    # How far the row lies beyond the training normals' range (p1-p99 widths, ``trainer.envelope``) and the
    # model's limit for it: ``is_anomaly`` is also true past the limit whatever the error, and an analyst
    # looking at an error below the threshold needs to see why. None for versions older than the rule.
    envelope_distance: float | None = None
    envelope_limit: float | None = None

    @property
    def raw_features(self) -> tuple[float, ...]:
        return struct.unpack(f"<{len(self.raw) // 4}f", self.raw)


def float32_bytes(values: Sequence[float]) -> bytes:
    """``ScoredTransaction.raw`` of feature values (float32, little-endian)."""
    return struct.pack(f"<{len(values)}f", *values)


@dataclass(frozen=True)
class Release:
    """A marker travelling with a step's cases: release part ``part`` of these ack ids once the cases before
    it are durable.

    Emitted in the same call as the cases it follows, so it reaches the sink in the same bundle, whose
    ``finish_bundle`` makes the cases durable before it releases anything (:mod:`stream.ingest`). ``part``
    is one the receiving sink declares (:mod:`stream.ack_parts`).
    """

    ack_ids: tuple[str, ...]
    part: str


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
