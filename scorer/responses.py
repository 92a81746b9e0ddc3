"""Turning one model call's arrays into response messages (pure helpers, no gRPC).

Per-row numpy work costs ~30 µs a row, more than gRPC's own cost of a call,
so each model call's outputs are converted once, vectorized, into plain Python
rows (``outcomes``), on the batcher's worker thread; a handler then only
copies values into its message. ``top_k`` gives exactly what
``fraudscore.model.top_contributions`` gives row by row (a unit test holds
them equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fraudscore.model import LoadedModel, Scores
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1.transaction_pb2 import Transaction

TOP_K = 3


class Outcome(NamedTuple):
    """One scored row, as plain Python values."""

    reconstruction_error: float
    is_anomaly: bool
    out_of_range: int
    top: list[tuple[str, float]]


def top_k(feature_errors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: indices of the k largest errors, their shares of the row's error, and whether it has any."""
    order = np.argsort(feature_errors, axis=1)[:, ::-1][:, :k]
    totals = feature_errors.sum(axis=1)
    picked = np.take_along_axis(feature_errors, order, axis=1).astype(np.float64)
    return order, picked / np.where(totals > 0, totals, 1.0).astype(np.float64)[:, None], totals > 0


def outcomes(model: LoadedModel, scores: Scores, k: int = TOP_K) -> list[Outcome]:
    names = model.features
    order, shares, has_error = top_k(scores.feature_errors, k)
    return [
        Outcome(error, anomaly, oor, [(names[f], s) for f, s in zip(cols, row_shares, strict=True)] if has else [])
        for error, anomaly, oor, cols, row_shares, has in zip(
            scores.reconstruction_error.tolist(),
            scores.is_anomaly.tolist(),
            scores.out_of_range_count.tolist(),
            order.tolist(),
            shares.tolist(),
            has_error.tolist(),
            strict=True,
        )
    ]


def fill(response: pb.ScoreResponse, transaction_id: str, model: LoadedModel, outcome: Outcome) -> pb.ScoreResponse:
    response.transaction_id = transaction_id
    response.reconstruction_error = outcome.reconstruction_error
    response.threshold = model.threshold
    response.is_anomaly = outcome.is_anomaly
    response.out_of_range_features = outcome.out_of_range
    response.model_version = model.version
    for name, share in outcome.top:
        response.top_features.add(name=name, share=share)
    return response


def batch_response(
    txs: Sequence[Transaction], errors: dict[int, pb.RowError], model: LoadedModel, scored: list[Outcome]
) -> pb.ScoreBatchResponse:
    """One RowResult per request row, in order: the error of a bad row, the score of a good one."""
    reply = pb.ScoreBatchResponse(scored=len(scored), failed=len(errors))
    rows = iter(scored)
    for i, tx in enumerate(txs):
        result = reply.results.add()
        if i in errors:
            result.error.CopyFrom(errors[i])
        else:
            fill(result.score, tx.transaction_id, model, next(rows))
    return reply
