"""Analysts' labels as training and calibration data: :class:`LabelSet` (numpy only).

Built by :func:`cases.labels.read_labels` from the labelled cases in Bigtable (or by a
reader of a labels file): one row per transaction, its raw features in ``features`` order (the
model card's), the analyst's latest verdict (the latest label wins; earlier ones are history) and
when it was given. ``fingerprint`` and ``summary`` are what a model card records about the labels
a version was calibrated or trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

FRAUD, LEGIT = 1, 0


class LabelError(ValueError):
    """Labels that cannot be used as they are; the message says which and why."""


@dataclass(frozen=True)
class LabelSet:
    transaction_ids: tuple[str, ...]
    features: tuple[str, ...]
    raw: np.ndarray  # float32 [n, F] in ``features`` order
    labels: np.ndarray  # int8 [n]: 1 fraud, 0 legit
    labelled_at: np.ndarray  # int64 [n]: epoch milliseconds of the label that counts (the latest)
    reasons: tuple[tuple[str, ...], ...]  # each case's reason codes
    sample_weight: np.ndarray | None = None
    # Labelled cases that could not be used, by why (never dropped silently), and how many transactions
    # had conflicting labels (more than one verdict: the latest counted).
    skipped: Mapping[str, int] = field(default_factory=dict)
    conflicting: int = 0

    def __post_init__(self) -> None:
        n = len(self.transaction_ids)
        if self.raw.shape != (n, len(self.features)):
            raise LabelError(f"raw: expected shape [{n}, {len(self.features)}], got {list(self.raw.shape)}")
        for name in ("labels", "labelled_at"):
            if getattr(self, name).shape != (n,):
                raise LabelError(f"{name}: expected {n} values, got shape {list(getattr(self, name).shape)}")
        if len(self.reasons) != n:
            raise LabelError(f"reasons: expected {n} entries, got {len(self.reasons)}")
        if len(set(self.transaction_ids)) != n:
            raise LabelError("transaction_ids: one row per transaction expected (the latest label wins)")
        if n and not np.isin(self.labels, (FRAUD, LEGIT)).all():
            raise LabelError("labels: 1 (fraud) or 0 (legit) expected")

    def __len__(self) -> int:
        return len(self.transaction_ids)

    @property
    def frauds(self) -> int:
        return int((self.labels == FRAUD).sum())

    @property
    def legit(self) -> int:
        return len(self) - self.frauds

    def fingerprint(self) -> str:
        """SHA-256 over (transaction id, label) pairs, independent of their order."""
        digest = hashlib.sha256()
        for tx, label in sorted(zip(self.transaction_ids, self.labels.tolist(), strict=True)):
            digest.update(f"{tx}\t{label}\n".encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """What a model card records about the labels: counts, time range, fingerprint, what was skipped."""
        times = self.labelled_at.tolist()
        return {
            "count": len(self),
            "frauds": self.frauds,
            "legit": self.legit,
            "first_labelled_at": _iso(min(times)) if times else None,
            "last_labelled_at": _iso(max(times)) if times else None,
            "fingerprint": self.fingerprint(),
            "skipped": dict(self.skipped),
            "conflicting": self.conflicting,
        }

    def where(self, mask: np.ndarray) -> LabelSet:
        """The rows where ``mask`` holds (e.g. one reason code's cases); skipped counts are the set's own."""
        idx = np.flatnonzero(mask)
        return LabelSet(
            transaction_ids=tuple(self.transaction_ids[i] for i in idx),
            features=self.features,
            raw=self.raw[idx],
            labels=self.labels[idx],
            labelled_at=self.labelled_at[idx],
            reasons=tuple(self.reasons[i] for i in idx),
            sample_weight=self.sample_weight[idx] if self.sample_weight is not None else None,
        )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
