"""The FraudScorer RPCs. Errors become gRPC status codes here and only here.

Every rejection names the field to fix: ``transaction.v: expected 28 values``,
``transactions[3].amount: ...`` (ScoreBatch reports bad rows in the response
instead and still scores the good ones), ``model_version: version 7 is not
loaded``. Parsing and validation rules come from fraudscore/schema.py; the
feature list and threshold from the loaded model's card.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
import numpy as np

from fraudscore import schema
from fraudscore.model import LoadedModel, Scores, top_contributions
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.v1.transaction_pb2 import Transaction
from scorer.batcher import RowScorer, run_model
from scorer.metrics import ScorerMetrics
from scorer.registry import ModelRegistry, UnknownVersion

TOP_K = 3


def response_for(transaction_id: str, model: LoadedModel, scores: Scores, i: int) -> pb.ScoreResponse:
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


class FraudScorerServicer(scorer_pb2_grpc.FraudScorerServicer):
    def __init__(self, registry: ModelRegistry, scorer: RowScorer, metrics: ScorerMetrics, max_rows: int) -> None:
        self._registry = registry
        self._scorer = scorer
        self._metrics = metrics
        self._max_rows = max_rows
        self.Score = metrics.unary("Score", self.Score)  # type: ignore[method-assign,assignment]
        self.ScoreBatch = metrics.unary("ScoreBatch", self.ScoreBatch)  # type: ignore[method-assign,assignment]
        self.ScoreStream = metrics.stream("ScoreStream", self.ScoreStream)  # type: ignore[method-assign,assignment]
        self.GetModelInfo = metrics.unary("GetModelInfo", self.GetModelInfo)  # type: ignore[method-assign,assignment]

    async def _model(self, version: int, context: grpc.aio.ServicerContext) -> LoadedModel:
        try:
            return self._registry.get(version)
        except UnknownVersion as exc:
            if self._registry.current is None:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, f"model_version: {exc}")
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"model_version: {exc}")

    async def _score_one(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        if not request.HasField("transaction"):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "transaction: missing")
        model = await self._model(request.model_version, context)
        try:
            schema.validate(request.transaction)
            row = schema.feature_row(request.transaction, model.features)
        except schema.InvalidTransaction as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"transaction.{exc.field}: {exc.reason}")
        try:
            scores, i = await self._scorer.score_row(model, row)
        except Exception as exc:  # TF raises many types; the caller gets INTERNAL with the reason
            await _abort(context, grpc.StatusCode.INTERNAL, f"model version {model.version} failed: {exc}")
        return response_for(request.transaction.transaction_id, model, scores, i)

    async def Score(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        return await self._score_one(request, context)

    async def ScoreStream(
        self, request_iterator: AsyncIterator[pb.ScoreRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScoreResponse]:
        async for request in request_iterator:
            yield await self._score_one(request, context)

    async def ScoreBatch(
        self, request: pb.ScoreBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreBatchResponse:
        n = len(request.transactions)
        if n == 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "transactions: empty batch")
        if n > self._max_rows:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"transactions: {n} rows, limit {self._max_rows}")
        model = await self._model(request.model_version, context)
        rows: list[list[float]] = []
        good: list[int] = []
        results = [pb.RowResult() for _ in range(n)]
        for i, tx in enumerate(request.transactions):
            error = _row_error(i, tx, model)
            if isinstance(error, pb.RowError):
                results[i].error.CopyFrom(error)
            else:
                rows.append(error)
                good.append(i)
        if rows:
            try:
                scores = await asyncio.to_thread(run_model, model, np.asarray(rows, np.float32), self._metrics)
            except Exception as exc:  # as in _score_one
                await _abort(context, grpc.StatusCode.INTERNAL, f"model version {model.version} failed: {exc}")
            for j, i in enumerate(good):
                results[i].score.CopyFrom(response_for(request.transactions[i].transaction_id, model, scores, j))
        return pb.ScoreBatchResponse(results=results, scored=len(good), failed=n - len(good))

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        model = await self._model(0, context)
        card = model.card
        return pb.ModelInfo(
            name=card.name,
            version=card.version,
            threshold=card.threshold,
            threshold_policy=card.threshold_policy,
            features=list(card.features),
            metrics=card.metrics,
            refused_versions=[
                pb.RefusedVersion(version=v, reason=reason) for v, reason in sorted(self._registry.refused.items())
            ],
            loaded_versions=self._registry.loaded_versions,
        )


def _row_error(i: int, tx: Transaction, model: LoadedModel) -> pb.RowError | list[float]:
    """The row's model features, or why it cannot be scored."""
    try:
        schema.validate(tx)
        return schema.feature_row(tx, model.features)
    except schema.InvalidTransaction as exc:
        return pb.RowError(index=i, transaction_id=tx.transaction_id, field=exc.field, reason=exc.reason)


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this keeps type checkers honest
