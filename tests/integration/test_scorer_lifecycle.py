"""Start-up, hot reload under load, refusal of a broken version, deadlines and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from tests.integration.scorer_support import (
    NOT_SERVING,
    SERVING,
    ServerThread,
    config,
    copy_base,
    source_model,
    start_serve,
    transactions,
    wait_for,
)
from tests.support import copy_version

pytestmark = pytest.mark.integration
SERVICE = "fraudscore.v1.FraudScorer"


@pytest.fixture
def base(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return copy_base(source_model(request), tmp_path / "model")


@pytest.fixture
def tx(request: pytest.FixtureRequest) -> pb.Transaction:
    return transactions(Path(request.getfixturevalue("train_csv")), 1)[0]


def test_health_through_startup_serving_and_draining(base: Path, tmp_path: Path, tx) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    server = ServerThread(config(empty, drain_delay_s=1.0))
    try:
        assert server.health() == NOT_SERVING and server.health(SERVICE) == NOT_SERVING
        with grpc.insecure_channel(server.target) as channel:
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Score(pb.ScoreRequest(transaction=tx), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            shutil.copytree(base / "1", empty / ".tmp")
            (empty / ".tmp").rename(empty / "1")
            wait_for(lambda: server.health() == SERVING, 60, "health never turned SERVING")
            assert server.health(SERVICE) == SERVING
            assert stub.Score(pb.ScoreRequest(transaction=tx), timeout=5).model_version == 1
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert next(watch).status == SERVING
            draining = asyncio.run_coroutine_threadsafe(server.running.drain(), server.loop)
            assert next(watch).status == NOT_SERVING
            # During the drain delay the port is still open and says NOT_SERVING.
            assert server.health() == NOT_SERVING
            draining.result(30)
    finally:
        server.close()  # drain() is idempotent: a second call finds the server stopped


def test_hot_reload_under_load_has_no_failed_requests_and_refuses_a_broken_version(base: Path, tx) -> None:
    server = ServerThread(config(base, reload_interval_s=0.2))
    server.wait_serving()
    versions: list[int] = []
    failures: list[str] = []

    async def load() -> None:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            stop = asyncio.Event()

            async def worker() -> None:
                while not stop.is_set():
                    try:
                        versions.append((await stub.Score(pb.ScoreRequest(transaction=tx), timeout=10)).model_version)
                    except grpc.RpcError as exc:
                        failures.append(f"{exc.code()}: {exc.details()}")

            async def until(predicate, timeout: float = 30) -> None:
                deadline = time.monotonic() + timeout
                while not predicate() and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert predicate()

            workers = [asyncio.create_task(worker()) for _ in range(8)]
            await until(lambda: len(versions) >= 100)
            await asyncio.to_thread(copy_version, base, 1, 2)
            await until(lambda: versions[-1] == 2)
            broken = base / ".tmp-3"
            shutil.copytree(base / "2", broken)
            (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
            card = json.loads((broken / "model_card.json").read_text())
            (broken / "model_card.json").write_text(json.dumps({**card, "version": 3}))
            broken.rename(base / "3")
            await until(lambda: 3 in server.running.registry.refused)
            mark = len(versions)
            await until(lambda: len(versions) >= mark + 100)
            stop.set()
            await asyncio.gather(*workers)

    try:
        asyncio.run(load())
        assert failures == []
        assert versions[0] == 1 and versions[-1] == 2
        switch = versions.index(2)
        # After the swap, only requests that were already in flight may finish on version 1.
        assert all(v == 2 for v in versions[switch + 16 :])
        assert len(versions) > 300
        with grpc.insecure_channel(server.target) as channel:
            info = scorer_pb2_grpc.FraudScorerStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        assert info.version == 2 and list(info.loaded_versions) == [1, 2]
        assert [r.version for r in info.refused_versions] == [3]
        assert "SavedModel" in info.refused_versions[0].reason
        assert server.running.metrics.reload_failures._value.get() == 1
        assert server.running.metrics.reloads._value.get() == 2
    finally:
        server.close()


def test_deadline_is_honoured_and_the_server_keeps_serving(base: Path, tx) -> None:
    server = ServerThread(config(base))
    try:
        server.wait_serving()
        with grpc.insecure_channel(server.target) as channel:
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            big = pb.ScoreBatchRequest(transactions=[tx] * 10_000)
            with pytest.raises(grpc.RpcError) as caught:
                stub.ScoreBatch(big, timeout=0.005)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert stub.Score(pb.ScoreRequest(transaction=tx), timeout=5).model_version == 1
            assert len(stub.ScoreBatch(big, timeout=30).results) == 10_000
        # A call cut short by its deadline is not a server error on the dashboard.
        codes = {
            s.labels["code"]
            for metric in server.running.metrics.requests.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        }
        assert "UNKNOWN" not in codes, codes
    finally:
        server.close()


def test_sigterm_drains_in_flight_requests_and_exits_zero(base: Path, tmp_path: Path, tx) -> None:
    log = (tmp_path / "serve.log").open("w")
    started: list[subprocess.Popen[str]] = []
    try:
        proc, target = start_serve(base, log, "--grace", "20", started=started)
        with grpc.insecure_channel(target) as channel:
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            signalled = threading.Event()

            def requests() -> Iterator[pb.ScoreRequest]:
                yield pb.ScoreRequest(transaction=tx)
                assert signalled.wait(30)
                time.sleep(0.3)  # the server is draining by now
                for _ in range(5):
                    yield pb.ScoreRequest(transaction=tx)

            # A stream opened before SIGTERM is in flight: it must be served to its end.
            replies = stub.ScoreStream(requests(), timeout=60)
            assert next(replies).transaction_id == tx.transaction_id
            proc.send_signal(signal.SIGTERM)
            signalled.set()
            assert [r.transaction_id for r in replies] == [tx.transaction_id] * 5
        assert proc.wait(timeout=30) == 0
        assert "draining" in (tmp_path / "serve.log").read_text()
    finally:
        for child in started:
            if child.poll() is None:
                child.kill()
                child.wait()
        log.close()


def _serve(base: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fraudscore.cli", "serve", "--model-base", str(base), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _startup_failure(proc: subprocess.Popen[str]) -> str:
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (out, err)
    assert "LISTENING" not in out
    assert "Traceback" not in err and "Event loop is closed" not in err, err
    return err


def test_second_serve_on_the_same_grpc_port_fails_at_startup(base: Path) -> None:
    first = ServerThread(config(base))
    try:
        err = _startup_failure(_serve(base, "--port", str(first.port), "--metrics-port", "-1"))
        assert f"fraudscore serve: --port {first.port}: cannot listen on 127.0.0.1:{first.port}" in err
        assert first.health() in (SERVING, NOT_SERVING)  # the first one is untouched
    finally:
        first.close()


def test_metrics_port_in_use_fails_at_startup(base: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = _startup_failure(_serve(base, "--port", "0", "--metrics-port", str(port)))
    assert f"fraudscore serve: --metrics-port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)" in err
