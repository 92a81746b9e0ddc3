"""SIGTERM under load: a real `fraudscore serve` process on loopback, real concurrent clients.

Every call a client sent before the SIGTERM must finish OK; NOT_SERVING must be visible before the first
refusal; the process exits 0, and promptly even with a Health.Watch stream open.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from tests.integration.scorer_support import (
    NOT_SERVING,
    SERVING,
    copy_base,
    source_model,
    start_serve,
    transactions,
)

pytestmark = pytest.mark.integration
CLIENTS = 32
GRACE_S = 20


@pytest.fixture(scope="module")
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_base(source_model(request), tmp_path_factory.mktemp("shutdown") / "model")


@pytest.fixture(scope="module")
def tx(request: pytest.FixtureRequest) -> pb.Transaction:
    return transactions(Path(request.getfixturevalue("train_csv")), 1)[0]


@pytest.fixture
def serve(base: Path, tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(procs: list[subprocess.Popen[str]], base: Path, log: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    return start_serve(base, log.open("w"), "--grace", str(GRACE_S), *flags, started=procs)


@dataclass
class Call:
    start: float
    end: float
    code: grpc.StatusCode
    details: str


@pytest.mark.parametrize("drain_delay", ["0", "0.5"])
def test_sigterm_under_load_finishes_every_call_already_sent(serve, base, tmp_path, tx, drain_delay) -> None:
    proc, target = _start(serve, base, tmp_path / "serve.log", "--drain-delay", drain_delay)
    calls: list[Call] = []
    seen: dict[str, float] = {}

    async def client(done: asyncio.Event) -> None:
        # Each client its own connection; it stops at its first failure, as a client that moves elsewhere.
        async with grpc.aio.insecure_channel(target) as channel:
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            while not done.is_set():
                start = time.monotonic()
                try:
                    await stub.Score(pb.ScoreRequest(transaction=tx), timeout=30)
                    code, details = grpc.StatusCode.OK, ""
                except grpc.aio.AioRpcError as exc:
                    code, details = exc.code(), exc.details() or ""
                calls.append(Call(start, time.monotonic(), code, details))
                if code != grpc.StatusCode.OK:
                    return

    async def watch_health() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
            try:
                async for reply in stream:
                    if reply.status == NOT_SERVING and "not_serving" not in seen:
                        seen["not_serving"] = time.monotonic()
            except grpc.aio.AioRpcError:
                pass

    async def run() -> None:
        done = asyncio.Event()
        watcher = asyncio.create_task(watch_health())
        clients = [asyncio.create_task(client(done)) for _ in range(CLIENTS)]
        deadline = time.monotonic() + 60
        while sum(c.code == grpc.StatusCode.OK for c in calls) < 20 * CLIENTS and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        seen["sigterm"] = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*clients), 60)  # each ends at its first failure
        done.set()
        await asyncio.wait_for(watcher, 60)

    asyncio.run(run())
    exit_code = proc.wait(timeout=60)
    exited = time.monotonic()
    before = [c for c in calls if c.start < seen["sigterm"]]
    assert len(before) >= 20 * CLIENTS
    failed_before = [
        (c.code, c.details, round(c.end - seen["sigterm"], 3)) for c in before if c.code != grpc.StatusCode.OK
    ]
    assert failed_before == [], failed_before
    refused = [c for c in calls if c.code != grpc.StatusCode.OK]
    assert len(refused) == CLIENTS  # every client stopped at a refusal (or at the closed port)
    assert "not_serving" in seen, "NOT_SERVING never seen on the Watch stream"
    first_refusal = min(c.end for c in refused)
    assert seen["not_serving"] <= first_refusal, (seen, first_refusal)
    assert exit_code == 0
    assert exited - seen["sigterm"] < 10, exited - seen["sigterm"]


def test_open_health_watch_does_not_hold_shutdown(serve, base, tmp_path) -> None:
    proc, target = _start(serve, base, tmp_path / "serve.log")
    with grpc.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert next(watch).status == SERVING
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        assert proc.wait(timeout=GRACE_S + 10) == 0
        elapsed = time.monotonic() - start
        # The Watch stream is ended by the server, not cut by the grace period running out.
        assert list(watch) == []
    assert elapsed < 5, f"exit took {elapsed:.1f} s with --grace {GRACE_S}"
