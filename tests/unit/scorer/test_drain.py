"""The call gate's shutdown bookkeeping: refusals after close, and waiting for calls to stop coming."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from scorer.drain import CallGate


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise grpc.RpcError(code, details)


async def _echo(request: Any, context: Any) -> Any:
    return request


def test_refused_calls_count_as_activity_so_quiet_waits_for_them() -> None:
    clock = _Clock()
    gate = CallGate(clock)
    call = gate.unary(_echo)

    async def run() -> None:
        assert await call("a", _Context()) == "a"
        gate.close()
        clock.now += 1.0
        assert gate.quiet_for() == 1.0
        with pytest.raises(grpc.RpcError):
            await call("b", _Context())  # a client's next call after the gate closed: refused, and noted
        assert gate.quiet_for() == 0.0 and gate.in_flight == 0
        # Calls keep coming: never quiet; the wait gives up at its timeout.
        assert not await gate.wait_quiet(0.25, timeout=0.0)
        clock.now += 0.25
        assert await gate.wait_quiet(0.25, timeout=0.0)

    asyncio.run(run())


def test_a_call_in_flight_is_never_quiet() -> None:
    clock = _Clock()
    gate = CallGate(clock)
    release = asyncio.Event()

    async def slow(request: Any, context: Any) -> Any:
        await release.wait()
        return request

    async def run() -> None:
        task = asyncio.create_task(gate.unary(slow)("a", _Context()))
        await asyncio.sleep(0)
        clock.now += 10.0
        assert gate.in_flight == 1 and gate.quiet_for() == 0.0
        release.set()
        await task
        assert gate.quiet_for() == 0.0  # it just ended: its client may send its next call now
        clock.now += 0.3
        assert await gate.wait_quiet(0.25, timeout=1.0)

    asyncio.run(run())
