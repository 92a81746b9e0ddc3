"""The durable sample of scored traffic: which transactions are kept, and why the sample exists.

Analysts label only flagged cases, so labels alone see nothing below the threshold: a precision
estimate needs no more, but an alert-rate estimate (``fraudscore calibrate --budget``) and a supervised
second stage (negatives that are not only flagged-then-cleared) do. The stream therefore writes a
uniform random sample of *all* scored transactions, flagged or not, to the ``traffic-sample`` table
(:class:`fraudscore.config.Resources`), with the raw features, both scores, the model version and the
event time (:meth:`cases.store.CaseStore.write_sample`).

Selection-bias handling:

- the sample is chosen by a hash of the transaction id, independent of every score, so it is a
  uniform sample of traffic at rate ``r`` (``--sample-rate``, default 1%); a redelivered message makes
  the same decision and rewrites the same row (idempotent);
- ``--budget q%`` takes the sample's score distribution (rescored with the current model) as the
  traffic's: the threshold whose share of sampled scores above it is ``q``;
- the second stage uses sampled rows as *presumed legit* negatives with weight ``1/r`` (each stands for
  ``1/r`` transactions of traffic), next to the analysts' labels. Presumed, not known: at the real
  sample's fraud prevalence (~0.17%) about 1 sampled row in 580 is a fraud labelled legit, label noise
  of ~0.2% on the negatives; rows whose transaction has an analyst's label are dropped from the sample
  (the label wins), which removes that noise exactly where the model flagged.

Not sampled: transactions that could not be parsed or scored (the dead-letter topic has them).
"""

from __future__ import annotations

import hashlib

DEFAULT_SAMPLE_RATE = 0.01
_SCALE = float(1 << 32)


def sample_point(transaction_id: str) -> float:
    """A number in [0, 1) fixed by the transaction id: sampled at rate r when below r.

    SHA-256 bits 32..63 (the case store's time-index bucket uses bits 0..31, so the two stay independent).
    """
    digest = hashlib.sha256(transaction_id.encode("utf-8")).digest()
    return int.from_bytes(digest[4:8], "big") / _SCALE


def sampled(transaction_id: str, rate: float) -> bool:
    """Whether the transaction belongs to the traffic sample at ``rate`` (0 = none, 1 = all)."""
    return rate > 0 and (rate >= 1 or sample_point(transaction_id) < rate)


def check_rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"--sample-rate must be within 0..1 (a fraction of traffic), got {rate}")
    return rate
