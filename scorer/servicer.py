"""The FraudScorer RPCs. Errors become gRPC status codes here and only here.

Every rejection names the field to fix: ``transaction.v: expected 28 values``,
``model_version: version 7 is not loaded``, ``transactions: empty batch``.
ScoreBatch instead reports a bad row in its RowResult (index, field, reason)
and still scores the good rows. ScoreStream answers in order and ends with
INVALID_ARGUMENT at the first bad request. ScoreColumns takes the batch as one
float32 matrix (scorer/columns.py) and reports bad rows like ScoreBatch. Validation rules come from
fraudscore/schema.py; the feature list and threshold from the model's card.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import NoReturn

import grpc

from fraudscore import schema
from fraudscore.model import LoadedModel
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.v1.transaction_pb2 import Transaction
from scorer import columns
from scorer.batcher import RowScorer, score_rows
from scorer.decode import Malformed, parser, row_wire_errors
from scorer.drain import CallGate
from scorer.metrics import ScorerMetrics
from scorer.registry import ModelRegistry, UnknownVersion
from scorer.responses import fill
from scorer.wire import ReplyEncoder

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["FraudScorer"].full_name
# A ScoreColumns call alone on the server is scored on the event loop up to this many rows (~1-2 ms of
# work with the fast path: a call arriving meanwhile waits at most that); with one client this took
# 1,000-row calls from ~497 to ~581/s (README, Scorer benchmark).
INLINE_COLUMNS_ROWS = 2048


class FraudScorerServicer(scorer_pb2_grpc.FraudScorerServicer):
    def __init__(
        self,
        registry: ModelRegistry,
        scorer: RowScorer,
        metrics: ScorerMetrics,
        max_rows: int,
        gate: CallGate | None = None,
    ) -> None:
        self._registry = registry
        self._scorer = scorer
        self._metrics = metrics
        self._max_rows = max_rows
        self._encoder = ReplyEncoder()
        # The gate (shutdown: in-flight count, refusal) inside the metrics wrapper, so refusals are counted.
        self.gate = gate = gate or CallGate()
        self.Score = metrics.unary("Score", gate.unary(self.Score))  # type: ignore[method-assign,assignment]
        self.ScoreBatch = metrics.unary("ScoreBatch", gate.unary(self.ScoreBatch))  # type: ignore[method-assign,assignment]
        self.ScoreStream = metrics.stream("ScoreStream", gate.stream(self.ScoreStream))  # type: ignore[method-assign,assignment]
        self.ScoreColumns = metrics.unary("ScoreColumns", gate.unary(self.ScoreColumns))  # type: ignore[method-assign,assignment]
        self.GetModelInfo = metrics.unary("GetModelInfo", gate.unary(self.GetModelInfo))  # type: ignore[method-assign,assignment]

    async def _model(self, version: int, context: grpc.aio.ServicerContext) -> LoadedModel:
        try:
            return self._registry.get(version)
        except UnknownVersion as exc:
            if self._registry.current is None:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, f"model_version: {exc}")
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"model_version: {exc}")

    async def _score_one(
        self, method: str, request: pb.ScoreRequest | Malformed, context: grpc.aio.ServicerContext
    ) -> pb.ScoreResponse:
        if isinstance(request, Malformed):
            await _reject(method, request, context)
        if not request.HasField("transaction"):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "transaction: missing")
        model = await self._model(request.model_version, context)
        try:
            row = schema.validated_row(request.transaction, model.features)
        except schema.InvalidTransaction as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"transaction.{exc.field}: {exc.reason}")
        try:
            outcome = await self._scorer.score_row(model, row)
        except Exception as exc:  # TF raises many types; the caller gets INTERNAL with the reason
            await _abort(context, grpc.StatusCode.INTERNAL, f"model version {model.version} failed: {exc}")
        return fill(pb.ScoreResponse(), request.transaction.transaction_id, model, outcome)

    async def Score(self, request: pb.ScoreRequest | Malformed, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        return await self._score_one("Score", request, context)

    async def ScoreStream(
        self, request_iterator: AsyncIterator[pb.ScoreRequest | Malformed], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScoreResponse]:
        async for request in request_iterator:
            yield await self._score_one("ScoreStream", request, context)

    async def ScoreBatch(
        self, request: pb.ScoreBatchRequest | Malformed, context: grpc.aio.ServicerContext
    ) -> pb.ScoreBatchResponse:
        if isinstance(request, Malformed):
            await _reject("ScoreBatch", request, context)
        n = len(request.transactions)
        if n == 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "transactions: empty batch")
        if n > self._max_rows:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"transactions: {n} rows, limit {self._max_rows}")
        model = await self._model(request.model_version, context)
        try:
            # Thousands of rows of validation and message building: on a thread, like the model
            # call, so the event loop keeps serving other calls meanwhile.
            return await asyncio.to_thread(self._score_batch, request.transactions, model)
        except Exception as exc:  # as in _score_one
            await _abort(context, grpc.StatusCode.INTERNAL, f"model version {model.version} failed: {exc}")

    def _score_batch(self, txs: Sequence[Transaction], model: LoadedModel) -> pb.ScoreBatchResponse:
        """Validates every row, scores the good ones in one model call, answers row by row."""
        wire = row_wire_errors(txs)  # a field sent with the wrong wire type (the deserializer skips the rows)
        if not wire:
            rows, errors = schema.checked_feature_matrix(txs, model.features)
        else:
            kept = [i for i in range(len(txs)) if i not in wire]
            rows, kept_errors = schema.checked_feature_matrix([txs[i] for i in kept], model.features)
            errors = {**wire, **{kept[j]: exc for j, exc in kept_errors.items()}}
        scores = score_rows(model, rows, self._metrics) if len(rows) else None
        return self._encoder.batch_response(txs, errors, model, scores)

    async def ScoreColumns(
        self, request: pb.ScoreColumnsRequest | Malformed, context: grpc.aio.ServicerContext
    ) -> bytes:
        """The serialized ScoreColumnsResponse (see columns.ids_field; add_to_server sends it as it is)."""
        if isinstance(request, Malformed):
            await _reject("ScoreColumns", request, context)
        try:
            columns.check_shape(request, self._max_rows)
        except columns.BadRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        # Resolved once: every row is scored by this version even if a newer one is swapped in meanwhile.
        model = await self._model(request.model_version, context)
        try:
            batch = columns.decode(request, model)
        except columns.BadRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            if self.gate.in_flight <= 1 and request.rows <= INLINE_COLUMNS_ROWS:
                # The only call in flight: nothing waits on the event loop, so the hop to a thread and
                # back (and the GIL passed between them) would only add to this call's latency.
                return self._score_columns(request, model, batch)
            # The model call and the reply on a thread, as in ScoreBatch, so the loop keeps serving other calls.
            return await asyncio.to_thread(self._score_columns, request, model, batch)
        except Exception as exc:  # as in _score_one
            await _abort(context, grpc.StatusCode.INTERNAL, f"model version {model.version} failed: {exc}")

    def _score_columns(self, request: pb.ScoreColumnsRequest, model: LoadedModel, batch: columns.Batch) -> bytes:
        # Explanations only when top features are asked for, and only of the flagged rows: they cost one model
        # call on F copies of each row explained (a 10,000-row call explaining every row took 31-36x as long).
        explain = batch.top_k > 0
        scores = (
            score_rows(model, batch.rows, self._metrics, explain=explain, only_flagged=True)
            if len(batch.rows)
            else None
        )
        reply = columns.encode(request, model, batch, scores, echo_ids=False)
        return reply.SerializeToString() + columns.ids_field(request)

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest | Malformed, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo:
        if isinstance(request, Malformed):
            await _reject("GetModelInfo", request, context)
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
            runtime=model.fast_path.runtime,
            runtime_detail=model.fast_path.detail,
            threshold_score=card.threshold_score,
            second_stage=card.second_stage_line(),
            normal_ranges=[
                pb.NormalRange(feature=name, p01=low, median=median, p99=high)
                for name, (low, median, high) in model.normal_ranges.items()
            ],
            envelope_limit=model.envelope_limit or 0.0,
        )


def add_to_server(servicer: FraudScorerServicer, server: grpc.aio.Server) -> None:
    """Registers the servicer like the generated ``add_FraudScorerServicer_to_server``, with request
    deserializers that turn a malformed message into :class:`Malformed` instead of raising (see decode)."""
    handlers = {
        "Score": grpc.unary_unary_rpc_method_handler(
            servicer.Score, parser(pb.ScoreRequest), pb.ScoreResponse.SerializeToString
        ),
        "ScoreBatch": grpc.unary_unary_rpc_method_handler(
            servicer.ScoreBatch,
            parser(pb.ScoreBatchRequest, skip=("transactions",)),
            pb.ScoreBatchResponse.SerializeToString,
        ),
        "ScoreStream": grpc.stream_stream_rpc_method_handler(
            servicer.ScoreStream, parser(pb.ScoreRequest), pb.ScoreResponse.SerializeToString
        ),
        "ScoreColumns": grpc.unary_unary_rpc_method_handler(
            servicer.ScoreColumns, parser(pb.ScoreColumnsRequest), _serialized
        ),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelInfo, parser(pb.GetModelInfoRequest), pb.ModelInfo.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


def _serialized(reply: bytes) -> bytes:
    """The response serializer of a handler that serializes its reply itself."""
    return reply


async def _reject(method: str, request: Malformed, context: grpc.aio.ServicerContext) -> NoReturn:
    """INVALID_ARGUMENT for a request that could not be decoded, logged in one line (no traceback)."""
    log.warning("%s from %s: rejected %s", method, context.peer(), request)
    await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(request))


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this keeps type checkers honest
