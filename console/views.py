"""What a case page shows of each member, formatted in Python (the template only places the text).

The strings stay text: the template escapes them like any other value (a merchant id is whatever the
transaction said).
"""

from __future__ import annotations

from dataclasses import dataclass

from cases.cli import utc_text
from cases.records import StoredCase
from console.models import FeatureView


@dataclass(frozen=True)
class FeatureText:
    name: str
    share: str
    value: str
    normal: str  # "p1 · median · p99", empty without the model card's ranges
    outside: str  # "above" / "below" the range, or ""


@dataclass(frozen=True)
class MemberRow:
    transaction_id: str
    time: str
    amount: str
    merchant: str
    score: str  # "error / threshold"
    ratio: str  # "(2.1×)", empty without a threshold
    over: bool
    beyond: str  # Case.envelope_text when lying beyond the normals' range flagged it, else ""
    probability: str  # the second stage's, empty without one
    reasons: str
    model: str
    features: tuple[FeatureText, ...]
    label: str


def feature_text(f: FeatureView) -> FeatureText:
    normal = f"{f.p01:.3g} · {f.median:.3g} · {f.p99:.3g}" if f.p01 is not None and f.p99 is not None else ""
    value = f"{f.value:.4g}" if f.value is not None else "?"
    return FeatureText(f.name, f"{100 * f.share:.0f}%", value, normal, f.outside)


def member_row(member: StoredCase, features: list[FeatureView]) -> MemberRow:
    c = member.case
    d = member.decision
    return MemberRow(
        transaction_id=c.transaction_id,
        time=utc_text(c.event_time),
        amount=f"{c.amount:.2f}",
        merchant=c.merchant_id,
        score=f"{c.reconstruction_error:.5g} / {c.threshold:.5g}",
        ratio=f"({c.reconstruction_error / c.threshold:.1f}×)" if c.threshold else "",
        over=c.reconstruction_error > c.threshold,
        beyond=c.envelope_text if c.beyond_envelope else "",
        probability=f"{c.fraud_probability:.3f}" if c.fraud_probability is not None else "",
        reasons=", ".join(c.reasons),
        model=f"v{c.model_version}",
        features=tuple(feature_text(f) for f in features),
        label=f"{d.verdict} ({d.analyst})" if d else "-",
    )
