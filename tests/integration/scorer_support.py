"""Shared pieces of the scorer's integration tests: a real server on loopback, a real model.

``ServerThread`` runs ``scorer.server.start`` on its own event loop in a
background thread, so tests can talk to it with ordinary (sync) gRPC clients
and one server can serve a whole module of tests.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudscore import schema
from fraudscore.v1.transaction_pb2 import Transaction
from scorer import server as scorer_server
from scorer.config import ServeConfig

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServerThread:
    def __init__(self, config: ServeConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.running: scorer_server.RunningServer = self.call(scorer_server.start(config))
        self.port = self.running.port
        self.target = f"127.0.0.1:{self.port}"

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def drain(self) -> None:
        self.call(self.running.drain())

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def health(self, service: str = "") -> int:
        with grpc.insecure_channel(self.target) as channel:
            return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service)).status)

    def wait_serving(self, timeout: float = 60) -> None:
        wait_for(lambda: self.running.registry.current is not None, timeout, "model never loaded")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.05)


def start_serve(
    base: Path, stderr: IO[str], *flags: str, started: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], str]:
    """``fraudscore serve`` as a child process on a free port; returns it and its target once SERVING.

    The process is appended to ``started`` before anything can fail, so the caller can always stop it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudscore.cli", "serve", "--model-base", str(base), "--port", "0",
         "--metrics-port", "-1", *flags],
        stdout=subprocess.PIPE, stderr=stderr, text=True,
    )  # fmt: skip
    started.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("LISTENING "), line
    target = line.split()[1]
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        wait_for(lambda: health.Check(health_pb2.HealthCheckRequest()).status == SERVING, 60, "never SERVING")
    return proc, target


def config(base: Path, **changes: Any) -> ServeConfig:
    defaults: dict[str, Any] = {"port": 0, "metrics_port": None, "reload_interval_s": 0.2, "grace_s": 5.0}
    return ServeConfig(model_base=base, **{**defaults, **changes})


def source_model(request: pytest.FixtureRequest) -> Path:
    """The trained model's base (conftest's ``trained_model_base``)."""
    return Path(request.getfixturevalue("trained_model_base"))


def copy_base(source: Path, target: Path) -> Path:
    """A private copy of a model base (tests add versions to it)."""
    shutil.copytree(source, target)
    return target


def transactions(csv_path: Path, n: int) -> list[Transaction]:
    with csv_path.open(newline="") as f:
        return [schema.from_csv_row(row, row_number=i) for i, row in enumerate(itertools.islice(csv.DictReader(f), n))]
