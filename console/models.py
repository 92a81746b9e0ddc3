"""What the console shows of the model: each version's card (normal ranges, threshold) and the current one.

Only the cards (JSON) are read, never the SavedModel: the console imports no TensorFlow. A member was scored
by the version in its record, so its explanation is set against that version's normal ranges.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from cases.records import Case
from fraudscore.model import ModelCard, ModelError
from fraudscore.versions import latest_version


@dataclass(frozen=True)
class FeatureView:
    """One of a member's top features: its value against the training normals' range."""

    name: str
    share: float  # of the member's score (occlusion: cases.records.Case.top_features)
    value: float | None  # raw value as scored (None in records without raw features)
    p01: float | None = None
    median: float | None = None
    p99: float | None = None

    @property
    def outside(self) -> str:
        """``above`` / ``below`` the p1-p99 range, or ``""`` (inside, or nothing to compare with)."""
        if self.value is None or self.p01 is None or self.p99 is None:
            return ""
        return "above" if self.value > self.p99 else "below" if self.value < self.p01 else ""


class ModelCards:
    """Model cards under a model base, read once per version (versions never change once written)."""

    def __init__(self, base: Path | None) -> None:
        self.base = base

    def current(self) -> ModelCard | None:
        """The newest version's card (what the scorer and the stream load), None without a model base."""
        if self.base is None:
            return None
        version = latest_version(self.base)
        return self.card(version) if version is not None else None

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per process, versions are few
    def card(self, version: int) -> ModelCard | None:
        if self.base is None:
            return None
        try:
            return ModelCard.read(self.base / str(version))
        except ModelError:
            return None  # a version deleted since, or another model base: the page shows no ranges

    def explain(self, case: Case) -> list[FeatureView]:
        """The member's top features with their values and its model version's normal ranges."""
        values = dict(zip(case.feature_names, case.raw_features, strict=False))
        card = self.card(case.model_version)
        ranges = card.normal_ranges() if card is not None else {}
        out = []
        for name, share in case.top_features:
            p01, median, p99 = ranges.get(name, (None, None, None))
            out.append(FeatureView(name, share, values.get(name), p01, median, p99))
        return out
