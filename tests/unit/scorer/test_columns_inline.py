"""ScoreColumns alone on the server is scored on the event loop; with other calls in flight, on a thread;
a large call in chunks on the model thread while the call's thread builds the reply."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudscore import features
from fraudscore.fastpath import LITERT, FastPath
from fraudscore.model import Scores
from fraudscore.v1 import scorer_pb2 as pb
from scorer import columns
from scorer.batcher import MicroBatcher
from scorer.metrics import ScorerMetrics
from scorer.servicer import INLINE_COLUMNS_ROWS, PIPELINE_CHUNK_ROWS, FraudScorerServicer

NAMES = features.MODEL_FEATURES


class Model:
    def __init__(self, fail_after: int | None = None) -> None:
        self.features, self.threshold, self.version, self.path = NAMES, 1.0, 1, Path("1")
        self.has_fraud_probability = False
        self.fast_path = FastPath(LITERT, "fake")
        self.threads: list[str] = []
        self.fail_after = fail_after

    def score(self, rows: np.ndarray) -> Scores:
        self.threads.append(threading.current_thread().name)
        if self.fail_after is not None and len(self.threads) > self.fail_after:
            raise RuntimeError("the model failed")
        errors = np.abs(rows).sum(axis=1)
        return Scores(errors, np.abs(rows), errors > 1.0, np.zeros(len(rows), np.int32))


class Registry:
    def __init__(self, model: Model) -> None:
        self.current = model

    def get(self, version: int = 0) -> Model:
        return self.current


class Context:
    def code(self) -> None:
        return None

    async def abort(self, code: Any, message: str) -> None:
        raise AssertionError(f"aborted: {code} {message}")


def _request(n: int) -> Any:
    matrix = np.abs(np.random.default_rng(0).normal(0, 1, (n, len(NAMES)))).astype(np.float32)
    return columns.request_of([f"t{i}" for i in range(n)], NAMES, matrix)


async def _call(servicer: FraudScorerServicer, n: int, others_in_flight: int) -> Any:
    for _ in range(others_in_flight):  # as the gate counts calls that are still running
        servicer.gate._in_flight += 1
    try:
        return await servicer.ScoreColumns(_request(n), Context())
    finally:
        servicer.gate._in_flight -= others_in_flight


def _servicer(model: Model) -> FraudScorerServicer:
    metrics = ScorerMetrics()
    return FraudScorerServicer(
        Registry(model),  # type: ignore[arg-type]
        MicroBatcher(metrics, max_batch=16, max_wait_s=0.01),
        metrics,
        max_rows=10_000,
    )


@pytest.mark.parametrize(
    ("rows", "others", "on_loop"), [(1000, 0, True), (1000, 1, False), (INLINE_COLUMNS_ROWS, 0, True)]
)
def test_where_a_score_columns_call_runs(rows: int, others: int, on_loop: bool) -> None:
    model = Model()
    reply = pb.ScoreColumnsResponse.FromString(asyncio.run(_call(_servicer(model), rows, others)))
    assert reply.scored == rows and len(reply.transaction_ids) == rows
    assert (model.threads == [threading.main_thread().name]) == on_loop and len(model.threads) == 1


@pytest.mark.parametrize("rows", [INLINE_COLUMNS_ROWS + 1, 3 * PIPELINE_CHUNK_ROWS + 5])
def test_a_large_call_is_scored_in_chunks_on_the_model_thread_with_the_same_reply(rows: int) -> None:
    model = Model()
    got = pb.ScoreColumnsResponse.FromString(asyncio.run(_call(_servicer(model), rows, 0)))
    chunks = -(-rows // PIPELINE_CHUNK_ROWS)
    assert model.threads == ["columns-model_0"] * chunks
    request = _request(rows)
    batch = columns.decode(request, model)  # type: ignore[arg-type]
    want = columns.encode(request, model, batch, model.score(batch.rows))  # type: ignore[arg-type]
    assert got == want and got.scored == rows


def test_a_chunk_that_fails_fails_the_call() -> None:
    model = Model(fail_after=1)
    with pytest.raises(AssertionError, match="INTERNAL.*the model failed"):
        asyncio.run(_call(_servicer(model), 4 * PIPELINE_CHUNK_ROWS, 0))
    assert 2 <= len(model.threads) <= 4
