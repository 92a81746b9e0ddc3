"""The flag rules: one table from which the rule checks, the CLI flags and the README table are built.

Reason codes:

- ``TX_ANOMALY``  the model's ``is_anomaly``: the transaction's reconstruction error is above the model
  card's threshold, or the transaction lies beyond the training normals' envelope (``trainer.envelope``)
  whatever its error (both are the model's, not flags). Emitted straight from scoring, without waiting
  for any window.
- the card rules of :data:`CARD_RULES`, each a predicate over one card's window aggregates
  and the :class:`RuleConfig` field holding its threshold.

How card-level reasons attach to transactions: a case is always one transaction (case id =
transaction id, so Bigtable writes are idempotent). When a card window meets a card rule, every
*non-anomalous* transaction of that card in the window becomes a case with the card reason(s),
the window bounds and the window's aggregates. The anomalous ones already are TX_ANOMALY cases.
So a burst yields the frauds the model caught plus the card's normal-looking transactions around
them, which are the ones a per-transaction model misses.

A new card rule is one :class:`CardRule` entry in :data:`CARD_RULES` and one ``int`` field of
:class:`RuleConfig` named by it: ``fraudscore stream`` gets its flag, every aggregation path
(:mod:`stream.card_state`, :mod:`stream.windows`, replay) applies it through
:func:`window_reasons` / :meth:`RuleConfig.flags_window`, and ``python -m stream.rules`` prints
the README's rules table (a unit test checks the README against it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from cases.records import Case
from stream.records import CardWindow, ScoredTransaction

TX_ANOMALY = "TX_ANOMALY"
TX_ANOMALY_RULE = (
    "the model flags the transaction (`is_anomaly`): its reconstruction error is above the model card's threshold, "
    "or it lies beyond the training normals' envelope whatever its error; emitted straight from scoring, "
    "no window wait"
)


@dataclass(frozen=True)
class CardRule:
    """A card rule: ``holds(count, anomalies, threshold)`` over one card window's aggregates.

    The threshold is ``RuleConfig.<config_field>``. The predicate takes the two aggregates a
    bounded replay counts before it summarizes a window (:func:`stream.windows.sliding_windows`'s
    ``keep``), as plain ints: a call per window of every transaction, so no record is built for it.
    A rule over another aggregate (amount sum, max error) adds that argument here, in
    :func:`window_reasons` and in ``sliding_windows``.
    """

    reason: str
    config_field: str
    holds: Callable[[int, int, int], bool]
    doc: str  # the README's wording; ``{flag}`` and ``{default}`` are filled in

    @property
    def flag(self) -> str:
        return "--" + self.config_field.replace("_", "-")


CARD_BURST = "CARD_BURST"
CARD_VELOCITY = "CARD_VELOCITY"

CARD_RULES: tuple[CardRule, ...] = (
    CardRule(
        CARD_BURST,
        "burst_min_anomalies",
        lambda count, anomalies, n: anomalies >= n,
        "at least `{flag}` ({default}) anomalous transactions of one card in a window",
    ),
    CardRule(
        CARD_VELOCITY,
        "velocity_min_count",
        lambda count, anomalies, n: count >= n,
        "at least `{flag}` ({default}) transactions of one card in a window",
    ),
)
REASONS: tuple[str, ...] = (TX_ANOMALY, *(rule.reason for rule in CARD_RULES))


@dataclass(frozen=True)
class RuleConfig:
    """Thresholds of the card rules (one field per :data:`CARD_RULES` entry) and the de-dup TTL."""

    burst_min_anomalies: int = 2
    velocity_min_count: int = 6
    dedupe_ttl_s: int = 3600

    def __post_init__(self) -> None:
        if any(self.threshold(rule) < 1 for rule in CARD_RULES) or self.dedupe_ttl_s <= 0:
            raise ValueError("rule thresholds must be >= 1 and the dedupe TTL > 0")

    def threshold(self, rule: CardRule) -> int:
        return int(getattr(self, rule.config_field))

    def checks(self) -> tuple[tuple[str, Callable[[int, int, int], bool], int], ...]:
        """``(reason, holds, threshold)`` of each card rule, in :data:`CARD_RULES` order."""
        return tuple((rule.reason, rule.holds, self.threshold(rule)) for rule in CARD_RULES)

    def flags_window(self, count: int, anomalies: int) -> bool:
        """Whether a card window with these aggregates meets a card rule (:func:`window_reasons` is not empty)."""
        for rule in CARD_RULES:  # noqa: SIM110 (a loop, not any(): this runs for every window of a replay)
            if rule.holds(count, anomalies, getattr(self, rule.config_field)):
                return True
        return False


def window_reasons(w: CardWindow, rules: RuleConfig) -> tuple[str, ...]:
    """The card rules a window meets, in :data:`CARD_RULES` order."""
    return tuple(reason for reason, holds, n in rules.checks() if holds(w.count, w.anomalies, n))


def add_rule_arguments(parser: argparse.ArgumentParser, defaults: RuleConfig) -> None:
    """One ``--<config-field>`` flag per card rule."""
    for rule in CARD_RULES:
        parser.add_argument(
            rule.flag, dest=rule.config_field, type=int, default=defaults.threshold(rule), help=f"{rule.reason} rule"
        )


def rule_thresholds(args: argparse.Namespace) -> dict[str, int]:
    """The card rules' ``RuleConfig`` fields from flags added by :func:`add_rule_arguments`."""
    return {rule.config_field: getattr(args, rule.config_field) for rule in CARD_RULES}


def markdown_table(defaults: RuleConfig | None = None) -> str:
    """The README's rules table."""
    defaults = defaults or RuleConfig()
    lines = ["| reason | rule |", "| --- | --- |", f"| `{TX_ANOMALY}` | {TX_ANOMALY_RULE} |"]
    for rule in CARD_RULES:
        lines.append(f"| `{rule.reason}` | {rule.doc.format(flag=rule.flag, default=defaults.threshold(rule))} |")
    return "\n".join(lines)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _case(s: ScoredTransaction, reasons: tuple[str, ...], w: CardWindow | None = None) -> Case:
    return Case(
        transaction_id=s.transaction_id,
        card_id=s.card_id,
        merchant_id=s.merchant_id,
        event_time=_utc(s.event_time),
        amount=s.amount,
        reconstruction_error=s.reconstruction_error,
        threshold=s.threshold,
        model_version=s.model_version,
        reasons=reasons,
        top_features=s.top_features,
        window_start=_utc(w.window_start) if w else None,
        window_end=_utc(w.window_end) if w else None,
        window_stats=w.stats() if w else {},
        raw_features=s.raw_features,
        feature_names=s.feature_names,
        fraud_probability=s.fraud_probability,
        envelope_distance=s.envelope_distance,
        envelope_limit=s.envelope_limit,
    )


def has_transaction_case(s: ScoredTransaction) -> bool:
    """Whether :func:`transaction_cases` gives ``s`` a case (what its acknowledgement owes: stream.case_sink)."""
    return s.is_anomaly


def transaction_cases(s: ScoredTransaction) -> Iterator[Case]:
    """TX_ANOMALY: the model says this one transaction is anomalous."""
    if has_transaction_case(s):
        yield _case(s, (TX_ANOMALY,))


def window_cases(w: CardWindow, rules: RuleConfig, skip: Container[str] = frozenset()) -> Iterator[Case]:
    """The card rules' cases: one for each non-anomalous transaction of a flagged card window.

    ``skip``: case ids not to build a case for (checked as each member is reached, so a container
    that grows while the cases are consumed is honoured): the card step's emitted cases.
    """
    reasons = window_reasons(w, rules)
    if reasons:
        for member in w.members:
            if not member.is_anomaly and member.transaction_id not in skip:
                yield _case(member, reasons, w)


if __name__ == "__main__":
    print(markdown_table())
