"""Turning one model call's arrays into response messages (pure helpers, no gRPC).

Per-row numpy work costs more than gRPC's own cost of a call (README, Benchmarks),
so each model call's outputs are converted once, vectorized, into plain Python
rows (``outcomes``), on the batcher's worker thread; a handler then only
copies values into its message. Top features come from
``fraudscore.model.top_k``, the batch form of ``top_contributions``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from fraudscore.model import LoadedModel, Scores, explained, sorted_top, top_features
from fraudscore.schema import InvalidTransaction
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1.transaction_pb2 import Transaction

TOP_K = 3


class Outcome(NamedTuple):
    """One scored row, as plain Python values."""

    reconstruction_error: float
    is_anomaly: bool
    out_of_range: int
    top: list[tuple[str, float]]
    fraud_probability: float | None = None  # None when the version has no second stage


def _columns(model: LoadedModel, scores: Scores, k: int) -> tuple[Iterator[Any] | list[Any], ...]:
    """Each per-row value of a model call as a Python list (one ``tolist`` per array, not per row)."""
    order, shares, has_error = top_features(scores, k)
    probability = scores.fraud_probability
    return (
        scores.reconstruction_error.tolist(),
        scores.is_anomaly.tolist(),
        scores.out_of_range_count.tolist(),
        names_of(model.features)[order].tolist(),
        shares.tolist(),
        has_error.tolist(),
        itertools.repeat(None, len(scores)) if probability is None else probability.tolist(),
    )


@functools.lru_cache(maxsize=16)
def names_of(features: tuple[str, ...]) -> np.ndarray:
    """The feature names as an object array, so a whole top-k index array maps to names at once."""
    return np.array(features, dtype=object)


def _rows(model: LoadedModel, scores: Scores, k: int = TOP_K) -> Iterator[tuple[Any, ...]]:
    return zip(*_columns(model, scores, k), strict=True)


# Up to this many rows, outcomes are built from plain lists (see _small_outcomes).
SMALL_BATCH_ROWS = 64


def outcomes(model: LoadedModel, scores: Scores, k: int = TOP_K) -> list[Outcome]:
    if len(scores) <= SMALL_BATCH_ROWS:
        return _small_outcomes(model, scores, k)
    return _bulk_outcomes(model, scores, k)


def _bulk_outcomes(model: LoadedModel, scores: Scores, k: int) -> list[Outcome]:
    return [
        Outcome(error, anomaly, oor, list(zip(names, shares, strict=True)) if has else [], probability)
        for error, anomaly, oor, names, shares, has, probability in _rows(model, scores, k)
    ]


def _small_outcomes(model: LoadedModel, scores: Scores, k: int) -> list[Outcome]:
    """``outcomes`` of a small batch, the micro-batcher's usual 1-2 rows, with the same values.

    ``top_k``'s fixed cost (~10 numpy calls, ~13 µs) is most of a one-row
    batch's. Here only its sort runs in numpy (``sorted_top``, what ``top_k``
    does for a few rows, so the same columns in the same order); the shares are
    the same float64 divisions, done on Python floats, and the rest is list indexing.
    """
    errors, given_totals = explained(scores)
    order = sorted_top(errors, k).tolist()
    values = errors.tolist()
    # As top_k: a given total only where some feature contributes (else the row has no top features).
    totals = (
        errors.sum(axis=1) if given_totals is None else np.where(errors.max(axis=1) > 0, given_totals, 0)
    ).tolist()
    names = model.features
    probability = scores.fraud_probability
    return [
        Outcome(
            error,
            anomaly,
            oor,
            [(names[j], row[j] / total) for j in top] if total > 0 else [],
            p,
        )
        for error, anomaly, oor, top, row, total, p in zip(
            scores.reconstruction_error.tolist(),
            scores.is_anomaly.tolist(),
            scores.out_of_range_count.tolist(),
            order,
            values,
            totals,
            itertools.repeat(None) if probability is None else probability.tolist(),
            strict=False,  # the repeat above is endless; the others have one item per row
        )
    ]


def fill(response: pb.ScoreResponse, transaction_id: str, model: LoadedModel, outcome: Outcome) -> pb.ScoreResponse:
    response.transaction_id = transaction_id
    response.reconstruction_error = outcome.reconstruction_error
    response.threshold = model.threshold
    response.is_anomaly = outcome.is_anomaly
    response.out_of_range_features = outcome.out_of_range
    response.model_version = model.version
    if outcome.fraud_probability is not None:
        response.fraud_probability = outcome.fraud_probability
    for name, share in outcome.top:
        response.top_features.add(name=name, share=share)
    return response


def batch_response(
    txs: Sequence[Transaction], errors: Mapping[int, InvalidTransaction], model: LoadedModel, scores: Scores | None
) -> pb.ScoreBatchResponse:
    """One RowResult per request row, in order: the error of a bad row, the score of a good one.

    ``scores`` holds the good rows in request order. A 1,000-row batch builds
    4,000 messages, the largest cost of ScoreBatch: everything per row is
    turned into Python lists in bulk first, and each message is filled by
    plain attribute sets on one ``add()`` (kwargs constructors and CopyFrom
    cost twice as much in upb).
    """
    reply = pb.ScoreBatchResponse(scored=len(txs) - len(errors), failed=len(errors))
    add = reply.results.add
    rows = _rows(model, scores) if scores is not None else iter(())
    threshold, version = model.threshold, model.version
    for i, tx in enumerate(txs):
        if errors and i in errors:
            exc = errors[i]
            error = add().error
            error.index, error.transaction_id, error.field, error.reason = i, tx.transaction_id, exc.field, exc.reason
            continue
        error_value, anomaly, out_of_range, top_names, top_shares, has_error, probability = next(rows)
        r = add().score
        r.transaction_id = tx.transaction_id
        r.reconstruction_error = error_value
        r.threshold = threshold
        if anomaly:  # false and 0 are proto3's defaults: setting them changes nothing
            r.is_anomaly = True
        if out_of_range:
            r.out_of_range_features = out_of_range
        r.model_version = version
        if probability is not None:  # absent, not 0, without a second stage
            r.fraud_probability = probability
        if has_error:
            top = r.top_features.add
            for name, share in zip(top_names, top_shares, strict=True):
                top(name=name, share=share)
    return reply
