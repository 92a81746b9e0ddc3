"""Building response messages from model outputs (pure helpers, no gRPC).

ScoreBatch answers up to thousands of rows per call, so its path works on the
whole batch's arrays at once; ``top_k`` gives exactly what
``fraudscore.model.top_contributions`` gives row by row (a unit test holds them
equal) without a Python-level numpy call per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fraudscore.model import LoadedModel, Scores, top_contributions
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1.transaction_pb2 import Transaction

TOP_K = 3


def response_for(transaction_id: str, model: LoadedModel, scores: Scores, i: int) -> pb.ScoreResponse:
    """The response for row ``i`` of a model call."""
    return pb.ScoreResponse(
        transaction_id=transaction_id,
        reconstruction_error=float(scores.reconstruction_error[i]),
        threshold=model.threshold,
        is_anomaly=bool(scores.is_anomaly[i]),
        top_features=[
            pb.FeatureContribution(name=name, share=share)
            for name, share in top_contributions(scores.feature_errors[i], model.features, TOP_K)
        ],
        out_of_range_features=int(scores.out_of_range_count[i]),
        model_version=model.version,
    )


def top_k(feature_errors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: indices of the k largest errors, their shares of the row's error, and whether it has any."""
    order = np.argsort(feature_errors, axis=1)[:, ::-1][:, :k]
    totals = feature_errors.sum(axis=1)
    shares = (
        np.take_along_axis(feature_errors, order, axis=1).astype(np.float64)
        / np.where(totals > 0, totals, 1.0).astype(np.float64)[:, None]
    )
    return order, shares, totals > 0


def batch_response(
    txs: Sequence[Transaction],
    errors: dict[int, pb.RowError],
    model: LoadedModel,
    scores: Scores | None,
) -> pb.ScoreBatchResponse:
    """One RowResult per request row, in order: the error of a bad row, the score of a good one."""
    reply = pb.ScoreBatchResponse(scored=len(txs) - len(errors), failed=len(errors))
    if scores is not None:
        order, shares, has_error = top_k(scores.feature_errors, TOP_K)
        recon = scores.reconstruction_error.tolist()
        anomaly = scores.is_anomaly.tolist()
        out_of_range = scores.out_of_range_count.tolist()
        order_list, share_list, has_list = order.tolist(), shares.tolist(), has_error.tolist()
    names, threshold, version = model.features, model.threshold, model.version
    j = 0
    for i, tx in enumerate(txs):
        result = reply.results.add()
        if i in errors:
            result.error.CopyFrom(errors[i])
            continue
        s = result.score
        s.transaction_id = tx.transaction_id
        s.reconstruction_error = recon[j]
        s.threshold = threshold
        s.is_anomaly = anomaly[j]
        s.out_of_range_features = out_of_range[j]
        s.model_version = version
        if has_list[j]:
            for f, share in zip(order_list[j], share_list[j], strict=True):
                s.top_features.add(name=names[f], share=share)
        j += 1
    return reply
