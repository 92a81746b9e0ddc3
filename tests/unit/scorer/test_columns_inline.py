"""ScoreColumns alone on the server is scored on the event loop; with other calls in flight, on a thread."""

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
from scorer.servicer import INLINE_COLUMNS_ROWS, FraudScorerServicer

NAMES = features.MODEL_FEATURES


class Model:
    def __init__(self) -> None:
        self.features, self.threshold, self.version, self.path = NAMES, 1.0, 1, Path("1")
        self.has_fraud_probability = False
        self.fast_path = FastPath(LITERT, "fake")
        self.threads: list[str] = []

    def score(self, rows: np.ndarray, *, explain: bool = False, only_flagged: bool = False) -> Scores:
        self.threads.append(threading.current_thread().name)
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


@pytest.mark.parametrize(
    ("rows", "others", "on_loop"),
    [(1000, 0, True), (1000, 1, False), (INLINE_COLUMNS_ROWS + 1, 0, False)],
)
def test_where_a_score_columns_call_runs(rows: int, others: int, on_loop: bool) -> None:
    model = Model()
    metrics = ScorerMetrics()
    servicer = FraudScorerServicer(
        Registry(model),  # type: ignore[arg-type]
        MicroBatcher(metrics, max_batch=16, max_wait_s=0.01),
        metrics,
        max_rows=10_000,
    )
    reply = pb.ScoreColumnsResponse.FromString(asyncio.run(_call(servicer, rows, others)))
    assert reply.scored == rows and len(reply.transaction_ids) == rows
    assert (model.threads == [threading.main_thread().name]) == on_loop and len(model.threads) == 1
