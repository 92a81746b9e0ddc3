"""Choosing the alert threshold on the validation split by a named policy.

A transaction is flagged when its reconstruction error is strictly greater
than the threshold. Candidate thresholds sit between consecutive distinct
validation errors, so "flag the top k" is exact whatever the ties. Policies
are described on :class:`trainer.config.ThresholdPolicy`; the default
(``auto``) is best F1 with labels and a 0.2 % alert budget without.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainer.config import PolicyError, ThresholdPolicy


@dataclass(frozen=True)
class Threshold:
    value: float
    policy: ThresholdPolicy
    validation: dict[str, float] = field(default_factory=dict)  # precision/recall/f1/alerts at the threshold

    def to_card(self) -> dict[str, Any]:
        params: dict[str, float] = {}
        if self.policy.kind == "precision" and self.policy.param is not None:
            params["target_precision"] = self.policy.param
        if self.policy.kind == "budget" and self.policy.param is not None:
            params["alert_budget_percent"] = self.policy.param
        how = {
            "best-f1": "the threshold with the highest F1 on the validation split",
            "precision": "the lowest threshold whose validation precision reaches the target (most frauds caught)",
            "budget": "flags the given percentage of validation transactions with the highest error",
        }[self.policy.kind]
        return {
            "value": self.value,
            "policy": str(self.policy),
            "params": params,
            "chosen_on": "validation",
            "rule": "is_anomaly = reconstruction_error > value",
            "how": how,
            "validation": self.validation,
        }


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


def confusion(errors: np.ndarray, labels: np.ndarray, threshold: float) -> Confusion:
    flagged = errors > np.float32(threshold)
    fraud = labels == 1
    return Confusion(
        tp=int(np.sum(flagged & fraud)),
        fp=int(np.sum(flagged & ~fraud)),
        fn=int(np.sum(~flagged & fraud)),
        tn=int(np.sum(~flagged & ~fraud)),
    )


def _cut_below(errors_desc: np.ndarray, i: int) -> float:
    """A float32 threshold t with errors_desc[:i+1] > t >= errors_desc[i+1:] (strictly below the (i+1)-th error)."""
    upper = np.float32(errors_desc[i])
    if i + 1 < len(errors_desc):
        t = np.float32((float(upper) + float(errors_desc[i + 1])) / 2.0)
        if t < upper:
            return float(t)
    return float(np.nextafter(upper, np.float32(-np.inf)))


def calibrate(errors: np.ndarray, labels: np.ndarray | None, policy: ThresholdPolicy) -> Threshold:
    """The threshold ``policy`` picks on validation ``errors`` (and ``labels``, if the data has them)."""
    policy = policy.resolve(labels is not None)
    errors = np.asarray(errors, dtype=np.float32)
    if len(errors) == 0:
        raise PolicyError("no validation rows to calibrate the threshold on")
    order = np.argsort(-errors, kind="stable")
    desc = errors[order]
    # Index i (0-based) is a valid cut when the top i+1 rows can be flagged alone: desc[i] > desc[i+1].
    cuts = np.flatnonzero(np.r_[desc[:-1] > desc[1:], True])
    if policy.kind == "budget":
        assert policy.param is not None
        # At most k rows, never splitting a tie; only a top tie larger than k is flagged whole.
        k = max(1, math.ceil(len(errors) * policy.param / 100.0))
        eligible = cuts[cuts + 1 <= k]
        i = int(eligible[-1]) if len(eligible) else int(cuts[0])
    else:
        assert labels is not None
        y = np.asarray(labels)[order] == 1
        positives = int(y.sum())
        if positives == 0:
            raise PolicyError(f"threshold policy {policy}: the validation split holds no frauds")
        tp = np.cumsum(y)[cuts]
        flagged = cuts + 1
        precision = tp / flagged
        recall = tp / positives
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
        if policy.kind == "best-f1":
            i = int(cuts[int(np.argmax(f1))])  # the first (highest) threshold among equal best F1
        else:
            assert policy.param is not None
            ok = np.flatnonzero(precision >= policy.param - 1e-12)
            if len(ok) == 0:
                raise PolicyError(
                    f"threshold policy {policy}: no threshold reaches precision {policy.param:g} on validation "
                    f"(best is {precision.max():.3f}); lower the target or use best-f1"
                )
            i = int(cuts[ok[-1]])  # the most flagged rows that still meet the precision
    value = _cut_below(desc, i)
    stats: dict[str, float] = {"alerts": int(np.sum(errors > np.float32(value))), "rows": len(errors)}
    stats["alert_rate"] = stats["alerts"] / len(errors)
    if labels is not None:
        c = confusion(errors, np.asarray(labels), value)
        stats.update(precision=c.precision, recall=c.recall, f1=c.f1, tp=c.tp, fp=c.fp)
    return Threshold(value=value, policy=policy, validation=stats)
