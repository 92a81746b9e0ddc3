"""Cases as card episodes: which case a flagged transaction joins, and when a case alerts again.

Pure logic over plain values (no Bigtable): :class:`cases.store.CaseStore` reads the durable state, asks
these functions, and writes the outcome with conditional mutations.

- **Episode**: the first flagged transaction of a card opens a case; a later flagged transaction of the
  card joins it while the case is open and the transaction's event time is within ``idle_s`` of the
  case's latest member (event time, so a replay groups exactly as the live run did). An analyst's close
  ends it; the next flagged transaction opens a new case.
- **Case id**: ``case-`` + 16 hex digits of SHA-256 over the card and the opening transaction's id: a
  replay or a second worker derives the same id, so its rows are the same rows.
- **Alerts**: a case alerts when it opens and again only on an escalation. What has been alerted is a set
  of *components*: ``reason-<code>`` for every reason code, ``band-<n>`` for the highest score band. A
  member escalates the case when it brings a reason code no component covers, or a band above the highest
  band alerted. Each component is claimed once, durably, on the case row (the claim of
  :meth:`cases.store.CaseStore.claim_components`), so one (case, escalation) alerts once across restarts,
  re-published messages and workers.
- **Snooze**: a case that opens within ``snooze_s`` after an analyst closed the card's previous case as
  legit starts with that case's alerted components as its own (marked snoozed): the same reasons at the
  same band do not alert again; a higher band or a new reason does.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

CASE_ID_PREFIX = "case-"
DEFAULT_IDLE_S = 30 * 60
DEFAULT_SNOOZE_S = 24 * 3600
REASON_PREFIX = "reason-"
BAND_PREFIX = "band-"
# Score bands: the error over the threshold, by powers of two. Card-rule members below the threshold are
# band 0; 1-2x the threshold band 1, 2-4x band 2, 4-8x band 3, 8x and more band 4.
MAX_BAND = 4


@dataclass(frozen=True)
class EpisodeConfig:
    """How long a card's case stays open without activity, and how long a legit close snoozes the card."""

    idle_s: int = DEFAULT_IDLE_S
    snooze_s: int = DEFAULT_SNOOZE_S

    def __post_init__(self) -> None:
        if self.idle_s <= 0:
            raise ValueError(f"--case-idle must be positive, got {self.idle_s} s")
        if self.snooze_s < 0:
            raise ValueError(f"--snooze must be 0 or more, got {self.snooze_s} s")


def add_episode_arguments(parser: argparse.ArgumentParser) -> None:
    """``--case-idle`` and ``--snooze`` (seconds), for the job that writes cases."""
    d = EpisodeConfig()
    idle = "seconds of event time without a flagged transaction after which a card's case ends"
    snooze = "seconds after a legit close in which the card's same reasons at the same score band do not alert"
    parser.add_argument("--case-idle", type=int, default=d.idle_s, help=f"{idle} (default %(default)s)")
    parser.add_argument("--snooze", type=int, default=d.snooze_s, help=f"{snooze} (default %(default)s)")


def episode_config(args: argparse.Namespace) -> EpisodeConfig:
    return EpisodeConfig(idle_s=args.case_idle, snooze_s=args.snooze)


def case_id_for(card_id: str, opening_transaction_id: str) -> str:
    """The deterministic id of the case a transaction opens (``case-`` + 16 hex digits)."""
    digest = hashlib.sha256(f"{card_id}\0{opening_transaction_id}".encode()).hexdigest()
    return CASE_ID_PREFIX + digest[:16]


def is_case_id(text: str) -> bool:
    """Whether ``text`` has the form of an episode case id (old-style cases use the transaction id)."""
    rest = text[len(CASE_ID_PREFIX) :]
    return text.startswith(CASE_ID_PREFIX) and len(rest) == 16 and all(c in "0123456789abcdef" for c in rest)


def score_band(error: float, threshold: float) -> int:
    """0 below the threshold, then one band per doubling of error / threshold, up to :data:`MAX_BAND`."""
    if threshold <= 0 or not math.isfinite(error):
        return MAX_BAND if error > 0 else 0
    ratio = error / threshold
    if ratio < 1:
        return 0
    return min(MAX_BAND, 1 + math.floor(math.log2(ratio)))


def components(reasons: Iterable[str], band: int) -> frozenset[str]:
    """The alert components of reason codes and a (highest) band."""
    return frozenset({*(REASON_PREFIX + r for r in reasons), BAND_PREFIX + str(band)})


def covered_band(alerted: Iterable[str]) -> int:
    """The highest band among alerted components (-1 without one)."""
    return max((int(c[len(BAND_PREFIX) :]) for c in alerted if c.startswith(BAND_PREFIX)), default=-1)


def escalation(reasons: Iterable[str], band: int, alerted: Iterable[str]) -> frozenset[str]:
    """The components a case with these reasons and highest band still has to alert (empty: no alert)."""
    done = frozenset(alerted)
    new = {REASON_PREFIX + r for r in reasons} - done
    if band > covered_band(done):
        new.add(BAND_PREFIX + str(band))
    return frozenset(new)


def joins(last_activity_ms: int, event_ms: int, opened_ms: int, config: EpisodeConfig) -> bool:
    """Whether a flagged transaction at ``event_ms`` joins an open case (quiet for less than the idle time).

    A transaction older than the case's opening (late data) joins when it is within the idle time before
    it: the same activity, arriving late.
    """
    idle_ms = config.idle_s * 1000
    return opened_ms - idle_ms <= event_ms <= last_activity_ms + idle_ms


def snoozed(closed_legit_at_ms: int | None, event_ms: int, config: EpisodeConfig) -> bool:
    """Whether a case opening at ``event_ms`` is within the snooze of the previous case's legit close."""
    if closed_legit_at_ms is None or config.snooze_s == 0:
        return False
    return event_ms < closed_legit_at_ms + config.snooze_s * 1000
