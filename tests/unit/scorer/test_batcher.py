"""The micro-batcher with a fake model: coalescing, bounds, per-model groups, cancellation, errors."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudscore.fastpath import LITERT, TENSORFLOW, FastPath
from fraudscore.model import Scores
from scorer.batcher import INLINE_MAX_ROWS, DirectScorer, MicroBatcher
from scorer.metrics import ScorerMetrics


class FakeModel:
    """Error = sum of the row + offset; records the size of every call."""

    def __init__(self, offset: float = 0.0, version: int = 1, fail: bool = False, fast: bool = False) -> None:
        self.offset, self.version, self.fail = offset, version, fail
        self.fast_path = FastPath(LITERT if fast else TENSORFLOW, "fake")
        self.features = ("V1", "V2", "Amount")
        self.threshold = 1.0
        self.path = Path(str(version))
        self.calls: list[int] = []
        self.threads: set[str] = set()

    def score(self, rows: np.ndarray, *, explain: bool = False, only_flagged: bool = False) -> Scores:
        self.calls.append(len(rows))
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("boom")
        errors = rows.sum(axis=1) + self.offset
        return Scores(errors, np.abs(rows), errors > self.threshold, np.zeros(len(rows), np.int32))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _score_many(scorer: Any, models: list[FakeModel], n: int) -> list[Any]:
    await scorer.start()
    try:
        rows = [np.array([i, 0.0, 0.0], np.float32) for i in range(n)]
        return await asyncio.gather(*(scorer.score_row(models[i % len(models)], rows[i]) for i in range(n)))
    finally:
        await scorer.stop()


def test_concurrent_requests_share_model_calls_and_get_their_own_row() -> None:
    model = FakeModel()
    out = run(_score_many(MicroBatcher(ScorerMetrics(), max_batch=256, max_wait_s=0.05), [model], 100))
    assert [o.reconstruction_error for o in out] == [float(i) for i in range(100)]
    assert sum(model.calls) == 100 and len(model.calls) < 10
    assert threading.main_thread().name not in model.threads  # the call runs off the event loop


def test_batch_size_is_bounded() -> None:
    model = FakeModel()
    run(_score_many(MicroBatcher(ScorerMetrics(), max_batch=8, max_wait_s=0.05), [model], 50))
    assert max(model.calls) == 8 and sum(model.calls) == 50


def test_each_row_is_scored_by_the_model_its_request_chose() -> None:
    old, new = FakeModel(offset=0.0, version=1), FakeModel(offset=1000.0, version=2)
    out = run(_score_many(MicroBatcher(ScorerMetrics(), max_batch=256, max_wait_s=0.05), [old, new], 40))
    for i, outcome in enumerate(out):
        assert outcome.reconstruction_error == i + (0.0 if i % 2 == 0 else 1000.0)
    assert sum(old.calls) == 20 and sum(new.calls) == 20


def test_model_failure_reaches_every_waiting_request() -> None:
    async def body() -> list[Any]:
        batcher = MicroBatcher(ScorerMetrics(), max_batch=256, max_wait_s=0.05)
        await batcher.start()
        try:
            row = np.zeros(3, np.float32)
            return await asyncio.gather(
                *(batcher.score_row(FakeModel(fail=True), row) for _ in range(3)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    results = run(body())
    assert all(isinstance(r, RuntimeError) and str(r) == "boom" for r in results)


def test_cancelled_request_is_not_scored() -> None:
    async def body(model: FakeModel) -> None:
        batcher = MicroBatcher(ScorerMetrics(), max_batch=256, max_wait_s=0.2)
        await batcher.start()
        try:
            row = np.zeros(3, np.float32)
            abandoned = asyncio.create_task(batcher.score_row(model, row))
            await asyncio.sleep(0)
            abandoned.cancel()
            with pytest.raises(asyncio.CancelledError):
                await abandoned
            await asyncio.sleep(0.3)
        finally:
            await batcher.stop()

    model = FakeModel()
    run(body(model))
    assert model.calls == []


def test_lone_request_does_not_wait_for_max_wait() -> None:
    async def body() -> float:
        batcher = MicroBatcher(ScorerMetrics(), max_batch=256, max_wait_s=2.0)
        await batcher.start()
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await batcher.score_row(FakeModel(), np.zeros(3, np.float32))
            return loop.time() - start
        finally:
            await batcher.stop()

    assert run(body()) < 1.0


def test_direct_scorer_makes_one_call_per_request() -> None:
    model = FakeModel()
    out = run(_score_many(DirectScorer(ScorerMetrics()), [model], 12))
    assert model.calls == [1] * 12 and [o.reconstruction_error for o in out] == [float(i) for i in range(12)]


def test_batch_sizes_are_recorded() -> None:
    metrics = ScorerMetrics()
    run(_score_many(MicroBatcher(metrics, max_batch=4, max_wait_s=0.05), [FakeModel()], 10))
    assert metrics.batch_size._sum.get() == 10
    assert metrics.scored._value.get() == 10


def test_fast_path_rows_are_scored_at_once_on_the_event_loop() -> None:
    model = FakeModel(fast=True)
    out = run(_score_many(MicroBatcher(ScorerMetrics(), max_batch=256, max_wait_s=0.05), [model], 3))
    assert [o.reconstruction_error for o in out] == [0.0, 1.0, 2.0]
    assert model.calls == [1, 1, 1] and model.threads == {threading.main_thread().name}


async def _join_forming_batch(batcher: MicroBatcher, first: FakeModel, fast: FakeModel, n: int) -> list[Any]:
    """A TensorFlow model's row opens a batch; ``n`` fast-path rows arrive while it forms."""
    await batcher.start()
    try:
        rows = [np.array([i, 0.0, 0.0], np.float32) for i in range(n + 1)]
        return await asyncio.gather(
            batcher.score_row(first, rows[0]), *(batcher.score_row(fast, rows[i]) for i in range(1, n + 1))
        )
    finally:
        await batcher.stop()


@pytest.mark.parametrize("n", [3, INLINE_MAX_ROWS + 1])
def test_fast_path_rows_join_a_batch_already_forming(n: int) -> None:
    slow, fast = FakeModel(offset=1000.0), FakeModel(fast=True)
    batcher = MicroBatcher(ScorerMetrics(), max_batch=256, max_wait_s=0.5, idle_gap_s=0.05)
    out = run(_join_forming_batch(batcher, slow, fast, n))
    assert [o.reconstruction_error for o in out] == [1000.0, *(float(i) for i in range(1, n + 1))]
    assert slow.calls == [1] and fast.calls == [n]
    # Up to INLINE_MAX_ROWS fast-path rows are scored on the event loop, more on the batcher's thread.
    on_loop = fast.threads == {threading.main_thread().name}
    assert on_loop == (n <= INLINE_MAX_ROWS)
