"""Precision and alert-rate estimates from labels and the traffic sample, and the thresholds they propose.

Pure numpy: :mod:`trainer.recalibrate` reads the data and writes the version; this module only counts.

- :func:`wilson`: the Wilson score interval of a binomial proportion (E. B. Wilson, "Probable inference,
  the law of succession, and statistical inference", JASA 22 (1927) 209-212; recommended over the
  normal ("Wald") interval for small counts and proportions near 0 or 1 by Brown, Cai & DasGupta,
  "Interval estimation for a binomial proportion", Statistical Science 16 (2001) 101-133).
- :func:`threshold_for_precision`: the lowest threshold at or above the current one whose labelled
  precision's lower confidence bound reaches the target. Labels exist only for what was flagged,
  i.e. above the threshold in use when the case was made, so nothing below the current threshold can
  be assessed from labels: a lower threshold is never proposed.
- :func:`threshold_for_budget`: the threshold above which a share ``q`` of the traffic sample scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of a confidence level (1.96 for 0.95)."""
    return NormalDist().inv_cdf((1.0 + confidence) / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` at ``confidence``; (0, 1) when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    z = z_value(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    """A proportion (precision or alert rate) with its interval: ``successes`` of ``n``."""

    successes: int
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, successes: int, n: int, confidence: float) -> Estimate:
        low, high = wilson(successes, n, confidence)
        return cls(successes, n, low, high)

    @property
    def value(self) -> float | None:
        return self.successes / self.n if self.n else None

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_json_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "successes": self.successes, "n": self.n, "low": self.low, "high": self.high}


def precision_above(scores: np.ndarray, labels: np.ndarray, threshold: float, confidence: float) -> Estimate:
    """Precision of the labelled rows scoring above ``threshold`` (frauds among them)."""
    above = scores > threshold
    return Estimate.of(int(labels[above].sum()), int(above.sum()), confidence)


def threshold_for_precision(
    scores: np.ndarray,
    labels: np.ndarray,
    current: float,
    target: float,
    confidence: float,
    min_labels: int,
) -> tuple[float, Estimate] | None:
    """The lowest threshold >= ``current`` whose labelled precision's lower bound reaches ``target``.

    Candidates are ``current`` and every labelled score above it (a threshold equal to a score drops that
    row: alerts are ``score > threshold``); one needs at least ``min_labels`` labelled rows above it.
    None when no candidate qualifies.
    """
    candidates = np.unique(np.concatenate([[current], scores[scores > current]]))
    for threshold in candidates.tolist():
        estimate = precision_above(scores, labels, threshold, confidence)
        if estimate.n < min_labels:
            return None  # higher thresholds only have fewer rows
        if estimate.low >= target:
            return float(threshold), estimate
    return None


def threshold_for_budget(sample_scores: np.ndarray, budget: float) -> float:
    """The threshold above which a share ``budget`` of the sampled traffic's scores lies."""
    ordered = np.sort(np.asarray(sample_scores, dtype=np.float64))
    n = len(ordered)
    keep = math.floor(budget * n)  # rows allowed above the threshold
    if keep >= n:
        return float(np.nextafter(ordered[0], -np.inf))
    # Above ordered[n - keep - 1]: exactly the top ``keep`` rows (ties can only lower the count).
    return float(ordered[n - keep - 1])
