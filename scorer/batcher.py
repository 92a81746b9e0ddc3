"""Micro-batching: concurrent Score calls share one model call.

In TensorFlow a model call costs ~1 ms here whether it scores 1 row or 512, so
scoring each request alone caps the server near 1,000 requests/s and wastes the
CPU. The batcher queues rows; one worker takes everything queued (up to
``max_batch`` rows, after waiting at most ``max_wait`` for company) and scores
it in one call on a thread, so the event loop keeps accepting requests and the
next batch fills while this one runs. With the LiteRT fast path
(``fraudscore.fastpath``) a batch of up to ``INLINE_MAX_ROWS`` rows costs
~10-60 µs, less than the hop to a thread and back, so it is scored on the event
loop itself; and a fast-path row that finds no batch forming is scored at once
in its own handler: under gRPC load the batches held ~1.07 rows, and the hops
through the batcher task cost more than they saved (README, Scorer benchmark).
Each row is scored by the model its request resolved at arrival,
so a hot swap never moves a request mid-flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fraudscore.model import LoadedModel, Scores
from scorer.metrics import ScorerMetrics
from scorer.responses import Outcome, outcomes

# Once several requests wait, a batch leaves when none has arrived for this long.
IDLE_GAP_S = 0.0005
# Batches up to this size are scored on the event loop when the model has its fast path (~60 µs at 64 rows).
INLINE_MAX_ROWS = 64


def score_rows(
    model: LoadedModel, rows: np.ndarray, metrics: ScorerMetrics, *, explain: bool = True, only_flagged: bool = False
) -> Scores:
    """One model call (two with ``explain``: the occlusion of each feature, of the flagged rows only with
    ``only_flagged``), counted; runs on a worker thread."""
    scores = model.score(rows, explain=explain, only_flagged=only_flagged)
    metrics.batch_size.observe(len(rows))
    metrics.record_scores(scores)
    return scores


def run_model(model: LoadedModel, rows: np.ndarray, metrics: ScorerMetrics) -> list[Outcome]:
    """One model call, counted and converted to per-row outcomes; runs on a worker thread."""
    return outcomes(model, score_rows(model, rows, metrics))


class RowScorer(Protocol):
    async def score_row(self, model: LoadedModel, row: np.ndarray) -> Outcome: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class DirectScorer:
    """One model call per request (batching off): the naive baseline of the benchmark."""

    def __init__(self, metrics: ScorerMetrics) -> None:
        self._metrics = metrics

    async def score_row(self, model: LoadedModel, row: np.ndarray) -> Outcome:
        rows = row[None, :]
        return (await asyncio.to_thread(run_model, model, rows, self._metrics))[0]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


@dataclass
class _Item:
    model: LoadedModel
    row: np.ndarray
    future: asyncio.Future[Outcome]


class MicroBatcher:
    def __init__(
        self, metrics: ScorerMetrics, *, max_batch: int, max_wait_s: float, idle_gap_s: float = IDLE_GAP_S
    ) -> None:
        self._metrics = metrics
        self._idle_gap_s = min(idle_gap_s, max_wait_s)
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._pending: list[_Item] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One model call at a time: TF already uses both cores inside a call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batcher")

    async def score_row(self, model: LoadedModel, row: np.ndarray) -> Outcome:
        if model.fast_path.enabled and not self._pending:
            # No batch is forming: score the row now, on the event loop. Through the batcher it would cost
            # three more loop turns (wake the batcher, let company arrive, wake this handler), more than
            # the fast path's one-row call, and under gRPC load batches held ~1.07 rows on average anyway.
            return run_model(model, row[None, :], self._metrics)[0]
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(model, row, future))
        self._arrived.set()
        return await future

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Lets the batch grow while requests keep arriving, up to max_batch rows or max_wait.

        Waiting a fixed time would tax a lone client by the whole wait. A lone
        request leaves as soon as a loop turn brings no company; once several
        have arrived, the batch waits until arrivals pause for ``idle_gap``,
        so a crowd fills it and spends one model call on many requests.
        """
        start = last_arrival = loop.time()
        count = len(self._pending)
        while count < self._max_batch:
            await asyncio.sleep(0)
            now = loop.time()
            if len(self._pending) != count:
                count, last_arrival = len(self._pending), now
            elif now - last_arrival >= (self._idle_gap_s if count > 1 else 0.0):
                return
            if now - start >= self._max_wait_s:
                return

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            await self._gather(loop)
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            if not self._pending:
                self._arrived.clear()
            # A request whose deadline passed (or whose client left) was cancelled: don't score it.
            live = [item for item in batch if not item.future.done()]
            for model in {id(item.model): item.model for item in live}.values():
                group = [item for item in live if item.model is model]
                rows = group[0].row[None, :] if len(group) == 1 else np.stack([item.row for item in group])
                try:
                    if model.fast_path.enabled and len(rows) <= INLINE_MAX_ROWS:
                        scored = run_model(model, rows, self._metrics)
                    else:
                        scored = await loop.run_in_executor(self._executor, run_model, model, rows, self._metrics)
                except Exception as exc:  # handed to each waiting request; the servicer maps it to a status
                    for item in group:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    continue
                for item, outcome in zip(group, scored, strict=True):
                    if not item.future.done():
                        item.future.set_result(outcome)
