"""Reading analysts' labels and the traffic sample from Bigtable into arrays (issue 13).

- :func:`read_labels`: every labelled case -> a :class:`fraudscore.labels.LabelSet`. **The latest label
  wins** per transaction: an analyst who changes their mind (``cases label TXID --legit`` after
  ``--fraud``) changes the label; the earlier verdicts stay in the case's history and are counted as
  ``conflicting``. ``since`` selects by the time of that latest label. A label can only be given to a
  stored case (``fraudscore cases label`` refuses an unknown transaction), but a case written before
  cases kept their raw features cannot be rescored or learnt from: such cases, and any row whose
  record is missing or lacks a model feature, are counted in ``LabelSet.skipped`` by reason, never
  dropped silently.
- :func:`read_sample`: the durable sample of all scored traffic (:mod:`stream.sampling`) -> raw
  features and its sampling rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from cases.records import Case
from fraudscore.labels import FRAUD, LEGIT, LabelError, LabelSet

if TYPE_CHECKING:
    from cases.records import Decision
    from cases.store import CaseStore

NO_RECORD = "no case record"
NO_RAW = "no raw features (case written before cases kept them)"
MISSING_FEATURES = "lacks model features"
UNKNOWN_VERDICT = "unknown verdict"
_VERDICTS = {"fraud": FRAUD, "legit": LEGIT}


def _ordered(names: Sequence[str], values: Sequence[float], features: Sequence[str]) -> list[float] | None:
    """``values`` (in ``names`` order) in ``features`` order, or None when a feature is missing."""
    by_name = dict(zip(names, values, strict=True))
    try:
        return [float(by_name[f]) for f in features]
    except KeyError:
        return None


def read_labels(store: CaseStore, features: Sequence[str], since: datetime | None = None) -> LabelSet:
    """The labelled cases whose latest label is at or after ``since`` (all without), one row per transaction."""
    latest: dict[str, tuple[Case, Decision, list[float]]] = {}
    skipped: Counter[str] = Counter()
    conflicting: set[str] = set()
    for case, decisions in store.labelled():
        decision = decisions[0]
        if since is not None and decision.decided_at < since:
            continue
        if case is None:
            skipped[NO_RECORD] += 1
            continue
        if decision.verdict not in _VERDICTS:
            skipped[UNKNOWN_VERDICT] += 1
            continue
        if not case.has_raw_features:
            skipped[NO_RAW] += 1
            continue
        raw = _ordered(case.feature_names, case.raw_features, features)
        if raw is None:
            skipped[MISSING_FEATURES] += 1
            continue
        tx = case.transaction_id
        if len({d.verdict for d in decisions}) > 1:
            conflicting.add(tx)
        held = latest.get(tx)
        if held is not None:  # the same transaction under a second row key: its labels conflict if they differ
            if held[1].verdict != decision.verdict:
                conflicting.add(tx)
            if held[1].decided_at >= decision.decided_at:
                continue
        latest[tx] = (case, decision, raw)
    ids = sorted(latest)
    rows = [latest[tx] for tx in ids]
    return LabelSet(
        transaction_ids=tuple(ids),
        features=tuple(features),
        raw=np.asarray([r for _, _, r in rows], dtype=np.float32).reshape(len(rows), len(features)),
        labels=np.asarray([_VERDICTS[d.verdict] for _, d, _ in rows], dtype=np.int8),
        labelled_at=np.asarray([int(d.decided_at.timestamp() * 1000) for _, d, _ in rows], dtype=np.int64),
        reasons=tuple(c.reasons for c, _, _ in rows),
        skipped=dict(skipped),
        conflicting=len(conflicting),
    )


def read_sample(
    store: CaseStore,
    features: Sequence[str],
    since: datetime | None = None,
    *,
    exclude: Collection[str] = (),
) -> tuple[np.ndarray, float]:
    """Raw features ``[n, F]`` (float32, ``features`` order) of the traffic sample since ``since``, and its rate.

    ``exclude``: transaction ids to leave out (e.g. the labelled ones: their label beats "presumed legit").
    An empty sample is ``([0, F], 0.0)``. Rows written at different rates are no single uniform
    sample: a :class:`LabelError` names the rates (narrow ``since`` to one rate's period).
    """
    rows: list[list[float]] = []
    rates: set[float] = set()
    for record in store.sample_records(since):
        if record["transaction_id"] in exclude:
            continue
        raw = _ordered(record.get("feature_names") or (), record.get("raw_features") or (), features)
        if raw is None:
            raise LabelError(
                f"traffic sample row {record['transaction_id']}: lacks model features "
                f"(has {len(record.get('feature_names') or ())}, the model needs {', '.join(features)})"
            )
        rows.append(raw)
        rates.add(float(record["sampling_rate"]))
    if len(rates) > 1:
        listed = ", ".join(f"{r:g}" for r in sorted(rates))
        raise LabelError(f"the traffic sample mixes sampling rates {listed}: narrow --since to one rate's period")
    matrix: Any = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(features))
    return matrix, (rates.pop() if rates else 0.0)
