"""A flagged case: what the stream writes to Bigtable and publishes as an alert.

The one record type shared by the pipeline (which creates cases), the case
store (Bigtable rows) and the alert sink (JSON on the alerts topic).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

# Reason codes (documented in README).
TX_ANOMALY = "TX_ANOMALY"  # one transaction's reconstruction error above the model threshold
CARD_BURST = "CARD_BURST"  # several anomalous transactions of one card within a window
CARD_VELOCITY = "CARD_VELOCITY"  # unusually many transactions of one card within a window
REASONS = (TX_ANOMALY, CARD_BURST, CARD_VELOCITY)


@dataclass(frozen=True)
class Case:
    """A fraud candidate; ``case_id`` is deterministic so writes are idempotent."""

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
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Case:
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
        )

    def to_alert(self) -> bytes:
        """The JSON published on the alerts topic."""
        return json.dumps(self.to_json_dict(), sort_keys=True).encode("utf-8")
