"""``fraudscore serve``: the FraudScorer service on grpc.aio.

Start-up: the port opens at once with health NOT_SERVING; the newest model
loads on a thread, then health turns SERVING. A poller loads newer versions
as they appear (see registry). On SIGTERM/SIGINT the server drains: health
NOT_SERVING; calls are served as usual for the drain delay (at least
drain.SETTLE_S) so load balancers notice and calls already sent are taken;
then new calls get UNAVAILABLE, health Watch streams end, in-flight calls
finish within the grace period, calls keep being refused until they stop
coming, and the process exits 0 (see scorer/drain.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fraudscore import collector
from fraudscore.v1 import scorer_pb2
from scorer.auth import BearerTokenInterceptor, server_credentials
from scorer.batcher import DirectScorer, MicroBatcher, RowScorer
from scorer.config import BatchConfig, ConfigError, ServeConfig, add_arguments, grpc_server_options
from scorer.drain import CORE_STOP_S, REFUSING_S, SETTLE_S, CallGate, HealthServicer
from scorer.metrics import ScorerMetrics
from scorer.registry import ModelRegistry
from scorer.servicer import FraudScorerServicer, add_to_server

log = logging.getLogger(__name__)
__all__ = ["RunningServer", "StartupError", "add_arguments", "main", "serve", "start"]
SERVICE = scorer_pb2.DESCRIPTOR.services_by_name["FraudScorer"].full_name
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class RunningServer:
    """A started scorer; ``drain()`` shuts it down gracefully."""

    config: ServeConfig
    server: grpc.aio.Server
    port: int
    metrics_port: int | None
    health: HealthServicer
    registry: ModelRegistry
    metrics: ScorerMetrics
    scorer: RowScorer
    tasks: list[asyncio.Task[None]]
    stop_metrics: Callable[[], None] | None
    gate: CallGate = field(default_factory=CallGate)
    _drained: asyncio.Future[None] | None = field(default=None, init=False)

    async def drain(self) -> None:
        if self._drained is not None:  # idempotent: a second call waits for the first
            await asyncio.shield(self._drained)
            return
        self._drained = asyncio.get_running_loop().create_future()
        try:
            await self._drain()
        finally:
            self._drained.set_result(None)

    async def _drain(self) -> None:
        await self.health.enter_graceful_shutdown()
        # Serve as usual meanwhile: load balancers see NOT_SERVING, calls already sent reach their handler.
        await asyncio.sleep(max(self.config.drain_delay_s, SETTLE_S))
        self.gate.close()
        self.health.end_watches()
        for task in self.tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.grace_s
        if not await self.gate.wait_idle(self.config.grace_s):
            log.warning("%d calls still in flight after the grace period; cancelling them", self.gate.in_flight)
        elif not await self.gate.wait_quiet(SETTLE_S, min(REFUSING_S, max(0.0, deadline - loop.time()))):
            # Stopping the core now would cancel the calls it holds; refused, clients retry them elsewhere.
            log.info("calls still arriving after %.1f s of refusals; stopping anyway", REFUSING_S)
        try:
            # Nothing of ours is in flight now: the core server has only replies and refusals left to send, and
            # calls that are not ours to wait for (drain.CORE_STOP_S); it cancels those, and calls arriving since.
            await self.server.stop(min(CORE_STOP_S, max(0.0, deadline - loop.time())))
        finally:
            await self.scorer.stop()
            if self.stop_metrics:
                self.stop_metrics()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class StartupError(RuntimeError):
    """A port that cannot be opened; the message names the flag and the address."""


async def start(config: ServeConfig) -> RunningServer:
    """Opens the port (health NOT_SERVING) and starts loading and watching models.

    Raises StartupError, having started nothing, when the gRPC or the metrics port cannot be opened.
    """
    metrics = ScorerMetrics()
    registry = ModelRegistry(config.model_base, metrics, keep=config.keep_versions)
    scorer = _row_scorer(config.batch, metrics)
    interceptors = [BearerTokenInterceptor(config.token, reflection=config.auth_reflection)] if config.token else []
    server = grpc.aio.server(interceptors=interceptors, options=grpc_server_options(config.max_message_bytes))
    gate = CallGate()
    add_to_server(FraudScorerServicer(registry, scorer, metrics, config.max_request_rows, gate), server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    for name in ("", SERVICE):
        await health_servicer.set(name, NOT_SERVING)
    # Both ports are opened before anything starts, so a port in use fails start-up cleanly.
    metrics_port, stop_metrics = None, None
    if config.metrics_port is not None:
        try:
            metrics_port, stop_metrics = metrics.serve_http(config.metrics_port, config.host)
        except OSError as exc:
            raise StartupError(
                f"--metrics-port {config.metrics_port}: cannot listen on {config.host}:{config.metrics_port}"
                f" ({exc.strerror or exc})"
            ) from None
    address = f"{config.host}:{config.port}"
    try:
        if config.tls:
            port = server.add_secure_port(address, server_credentials(config.tls))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        if stop_metrics:
            stop_metrics()
        raise StartupError(
            f"--port {config.port}: cannot listen on {address} (in use, e.g. by another fraudscore serve?)"
        ) from None
    await server.start()
    await scorer.start()
    watcher = asyncio.create_task(_watch_models(config, registry, health_servicer), name="model-watcher")
    log.info(
        "listening on %s:%d (%s), metrics on %s", config.host, port, "TLS" if config.tls else "plaintext", metrics_port
    )
    return RunningServer(
        config, server, port, metrics_port, health_servicer, registry, metrics, scorer, [watcher], stop_metrics, gate
    )


def _row_scorer(batch: BatchConfig, metrics: ScorerMetrics) -> RowScorer:
    if not batch.enabled:
        return DirectScorer(metrics)
    return MicroBatcher(metrics, max_batch=batch.max_batch, max_wait_s=batch.max_wait_ms / 1000)


async def _watch_models(
    config: ServeConfig, registry: ModelRegistry, health_servicer: health.aio.HealthServicer
) -> None:
    while True:
        loaded = await asyncio.to_thread(registry.poll)
        if loaded is not None:
            # TensorFlow leaves millions of long-lived objects; a full GC pass over them stalls
            # every request for 100+ ms. Freezing them keeps collections to request garbage.
            collector.freeze_long_lived()
        if loaded is not None and registry.current is not None:
            for name in ("", SERVICE):
                await health_servicer.set(name, SERVING)
        elif registry.current is None:
            log.warning("no usable model version under %s yet; health stays NOT_SERVING", config.model_base)
        await asyncio.sleep(config.reload_interval_s)


async def serve(config: ServeConfig) -> None:
    """Runs the scorer until SIGTERM or SIGINT, then drains it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start(config)
    print(f"LISTENING {config.host}:{running.port}", flush=True)
    try:
        await stop.wait()
        log.info("draining: health NOT_SERVING, finishing in-flight calls (grace %.1f s)", config.grace_s)
    finally:
        await running.drain()
    log.info("stopped")


def main(args: argparse.Namespace) -> int:
    try:
        config = ServeConfig.from_args(args, os.environ)
    except ConfigError as exc:
        print(f"fraudscore serve: {exc}", file=sys.stderr)
        return 2
    if not config.model_base.is_dir():
        print(
            f"fraudscore serve: --model-base {config.model_base} is not a directory (train a model first)",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(serve(config))
    except StartupError as exc:
        print(f"fraudscore serve: {exc}", file=sys.stderr)
        return 1
    return 0
