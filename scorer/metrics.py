"""Prometheus metrics of the scorer, on their own registry and HTTP port.

The Grafana dashboard is built on exactly these names; rename nothing without
changing it. Each server owns a :class:`ScorerMetrics` (not the global
registry) so that tests can run several servers in one process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fraudscore.artifact import Scores
from fraudscore.telemetry import RECONSTRUCTION_ERROR_BUCKETS

T = TypeVar("T")

# Latencies on loopback run from ~1 ms (c=1) to ~150 ms (c=64 on 2 cores).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
ERROR_BUCKETS = RECONSTRUCTION_ERROR_BUCKETS


# Up to this many values, observe_many calls observe (~1 µs each) instead of paying its ~12 µs of numpy.
SMALL_OBSERVE = 8


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Observes many values at once: one lock per bucket instead of one per value.

    prometheus-client has no bulk observe and a 1,000-row ScoreBatch would pay
    ~1 µs per value; this adds per-bucket counts through the same (long-stable)
    internals ``observe`` uses, and falls back to ``observe`` if they change.
    A few values (the micro-batcher's usual batch) are observed one by one.
    """
    if len(values) <= SMALL_OBSERVE:
        for value in values.tolist():
            histogram.observe(value)
        return
    values = np.asarray(values, dtype=np.float64)  # the sum, as observe adds them, in float64
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(float(value))
        return
    # observe() puts a value in the first bucket whose upper bound is >= value.
    counts = np.bincount(np.searchsorted(np.asarray(bounds), values, side="left"), minlength=len(bounds))
    for bucket, count in zip(buckets, counts[: len(bounds)], strict=True):
        if count:
            bucket.inc(int(count))
    total.inc(float(values.sum()))


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "fraudscore_scorer_requests", "RPCs by method and status code", ["method", "code"], registry=r
        )
        self.latency = Histogram(
            "fraudscore_scorer_request_latency_seconds",
            "RPC latency in the server",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fraudscore_scorer_batch_size", "rows per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.scored = Counter("fraudscore_scorer_scored", "transactions scored", registry=r)
        self.anomalies = Counter("fraudscore_scorer_anomalies", "transactions flagged as anomalies", registry=r)
        self.reconstruction_error = Histogram(
            "fraudscore_reconstruction_error", "reconstruction error of scored rows", buckets=ERROR_BUCKETS, registry=r
        )
        self.out_of_range = Counter(
            "fraudscore_out_of_range_features", "features outside the training range (clipped)", registry=r
        )
        self.model_info = Gauge(
            "fraudscore_model_info", "1 for the model version being served", ["model", "version"], registry=r
        )
        self.fast_path = Gauge(
            "fraudscore_model_fast_path",
            "1 if the served version scores with the LiteRT fast path, 0 if with TensorFlow (fast path refused or off)",
            registry=r,
        )
        self.reload_failures = Counter(
            "fraudscore_model_reload_failures", "model versions refused (load or smoke score failed)", registry=r
        )
        self.reloads = Counter("fraudscore_model_reloads", "model versions swapped in", registry=r)
        self._request_children: dict[tuple[str, Any], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def serve_http(self, port: int, host: str = "127.0.0.1") -> tuple[int, Callable[[], None]]:
        """Starts the /metrics HTTP endpoint (port 0: a free one); returns its port and a stop function."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return int(server.server_port), stop

    def served(self, model: str, version: int, fast_path: bool = False) -> None:
        """Marks ``version`` as the one served (the gauge is 1 only for it), and what it scores with."""
        self.model_info.clear()
        self.model_info.labels(model=model, version=str(version)).set(1)
        self.fast_path.set(1 if fast_path else 0)

    def record_scores(self, scores: Scores) -> None:
        """Counts one model call's rows. A few rows (the micro-batcher's usual one) are counted from plain
        lists: a numpy reduction costs 2-4 µs however small its array, most of a one-row call's metrics."""
        if len(scores) <= SMALL_OBSERVE:
            anomalies, out_of_range = sum(scores.is_anomaly.tolist()), sum(scores.out_of_range_count.tolist())
        else:
            anomalies = int(np.count_nonzero(scores.is_anomaly))
            out_of_range = int(scores.out_of_range_count.sum())
        self.scored.inc(len(scores))
        if anomalies:  # inc(0) changes nothing and takes a lock
            self.anomalies.inc(anomalies)
        if out_of_range:
            self.out_of_range.inc(out_of_range)
        observe_many(self.reconstruction_error, scores.reconstruction_error)

    def _finish(
        self, method: str, context: grpc.aio.ServicerContext, start: float, failed: bool, cancelled: bool = False
    ) -> None:
        code = context.code()
        if code is None and cancelled:
            # grpc.aio cancels the handler when the deadline passes or the client goes away; the
            # client sees DEADLINE_EXCEEDED or CANCELLED, and so should the dashboard (not UNKNOWN).
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        # labels() costs a few µs a call; the per-(method, code) children are cached.
        key = (method, code)
        counter = self._request_children.get(key)
        if counter is None:
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            counter = self._request_children[key] = self.requests.labels(method=method, code=name)
        latency = self._latency_children.get(method)
        if latency is None:
            latency = self._latency_children[method] = self.latency.labels(method=method)
        counter.inc()
        latency.observe(time.perf_counter() - start)

    def unary(self, method: str, call: Callable[[Any, Any], Awaitable[T]]) -> Callable[[Any, Any], Awaitable[T]]:
        """Wraps a unary handler: counts it by final status code and times it.

        A handler cancelled by grpc counts as DEADLINE_EXCEEDED if its deadline has passed, else CANCELLED.
        """

        async def wrapped(request: Any, context: Any) -> T:
            start, failed, cancelled = time.perf_counter(), True, False
            try:
                result = await call(request, context)
                failed = False
                return result
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                self._finish(method, context, start, failed, cancelled)

        return wrapped

    def stream(
        self, method: str, call: Callable[[Any, Any], AsyncIterator[T]]
    ) -> Callable[[Any, Any], AsyncIterator[T]]:
        """Wraps a streaming handler the same way (the latency is the stream's lifetime)."""

        async def wrapped(requests: Any, context: Any) -> AsyncIterator[T]:
            start, failed, cancelled = time.perf_counter(), True, False
            try:
                async for item in call(requests, context):
                    yield item
                failed = False
            except (asyncio.CancelledError, GeneratorExit):
                cancelled = True
                raise
            finally:
                self._finish(method, context, start, failed, cancelled)

        return wrapped
