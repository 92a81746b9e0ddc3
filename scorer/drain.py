"""The pieces of a graceful shutdown that grpc.aio does not give: a call gate and health watches that end.

``grpc.aio.Server.stop`` shuts the core server down at once, and the core
cancels every call it has received but not yet handed to Python (with 32
clients, a dozen calls already sent came back CANCELLED within 2 ms of
SIGTERM). So the server drains in steps (see ``server.RunningServer.drain``):
health NOT_SERVING; calls keep being served as usual for the drain delay (at
least :data:`SETTLE_S`, so calls already sent reach their handler); then the
:class:`CallGate` closes: a new FraudScorer call gets UNAVAILABLE (retry
elsewhere) while the calls in flight finish; then the server keeps refusing
until no call has come or ended for :data:`SETTLE_S` (at most
:data:`REFUSING_S`); only then the core server stops, given
:data:`CORE_STOP_S`, not the rest of the grace period (see there).

Why wait for quiet: a client whose call has just finished sends its next one at
once. Stopping the core as soon as nothing is in flight cancelled those calls,
taken in by the core but not yet handed to a handler: with 32 clients 29-31
calls per SIGTERM came back CANCELLED, which clients do not retry. Refused
instead, each gets UNAVAILABLE and goes elsewhere (0 CANCELLED in 10 SIGTERMs).

``Health.Watch`` streams never end by themselves and would hold ``stop`` for
the whole grace period; :class:`HealthServicer` ends them once NOT_SERVING has
been sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2

T = TypeVar("T")

# Shortest time between NOT_SERVING and the first refusal: calls a client sent before SIGTERM may still be
# queued in the gRPC core or the event loop; this lets them reach their handler and be served.
SETTLE_S = 0.25
SHUTTING_DOWN = "server is shutting down: retry on another instance"
# Longest the server keeps refusing once none of our calls is in flight, while calls keep coming (clients that
# retry at once, a balancer that never notices NOT_SERVING): the core cancels the calls it holds at the stop.
REFUSING_S = 2.0
# How long the core server's stop may take once none of our calls is in flight. What it still has to send (the
# replies of the calls that just ended, refusals) takes milliseconds. What it would wait for beyond that is not
# ours and never ends by itself: a reflection session a tool keeps open, or a call that grpc.aio takes from the
# core at the instant it stops and never hands to a handler (a client sending its next call then: 1 SIGTERM in 5
# under the shutdown test's load waited out the whole --grace for one such call). Those are cancelled after this.
CORE_STOP_S = 2.0


class CallGate:
    """Counts the calls in flight and, once closed, refuses new ones with UNAVAILABLE; notes when a call last
    came or ended (``clock``: seconds, monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._open = True
        self._in_flight = 0
        self._clock = clock
        self._last_activity = clock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def close(self) -> None:
        self._open = False

    async def wait_idle(self, timeout: float) -> bool:
        """Waits until no call is in flight, at most ``timeout`` seconds; returns whether none is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._in_flight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self._in_flight == 0

    def quiet_for(self) -> float:
        """Seconds since a call last came (taken or refused) or ended; 0 while one is in flight."""
        return 0.0 if self._in_flight else self._clock() - self._last_activity

    async def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Waits until no call has come or ended for ``quiet`` seconds, at most ``timeout``; returns whether so."""
        deadline = self._clock() + timeout
        while self.quiet_for() < quiet:
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(min(0.01, quiet))
        return True

    def _enter(self) -> bool:
        self._last_activity = self._clock()
        if self._open:
            self._in_flight += 1
        return self._open

    def _leave(self) -> None:
        self._in_flight -= 1
        self._last_activity = self._clock()

    def unary(self, call: Callable[[Any, Any], Awaitable[T]]) -> Callable[[Any, Any], Awaitable[T]]:
        async def gated(request: Any, context: grpc.aio.ServicerContext) -> T:
            if not self._enter():
                await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            try:
                return await call(request, context)
            finally:
                self._leave()

        return gated

    def stream(self, call: Callable[[Any, Any], AsyncIterator[T]]) -> Callable[[Any, Any], AsyncIterator[T]]:
        async def gated(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[T]:
            if not self._enter():
                await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            try:
                async for item in call(requests, context):
                    yield item
            finally:
                self._leave()

        return gated


class HealthServicer(health.aio.HealthServicer):
    """grpc's health servicer, whose Watch streams end (OK) when :meth:`end_watches` is called."""

    def __init__(self) -> None:
        super().__init__()
        self._watches_ended = asyncio.Event()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        watch = asyncio.ensure_future(super().Watch(request, context))
        ended = asyncio.ensure_future(self._watches_ended.wait())
        try:
            await asyncio.wait({watch, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, ended):
                task.cancel()
            await asyncio.gather(watch, ended, return_exceptions=True)

    def end_watches(self) -> None:
        """Ends every open Watch stream (call after the last status change has been written)."""
        self._watches_ended.set()
