"""A real ``fraudscore serve`` (it imports TensorFlow and loads a model) prints none of TensorFlow's C++ start-up
lines on stderr by default, and prints them with the global ``-v`` flag (fraudscore/native_logs.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudscore.native_logs import LEVEL_VAR
from tests.integration.scorer_support import SERVING, wait_for

pytestmark = pytest.mark.integration

# What every command that imported TensorFlow printed on this CPU-only machine (issue #21): one regex each.
START_UP_LINES = (
    r"All log messages before absl::InitializeLog\(\)",
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers",
    r"failed call to cuInit",
    r"NodeDef mentions attribute use_unbounded_threadpool",
    r"oneDNN custom operations are on",
)
# Of those, what `serve` itself causes here (a GPU-less machine; no tf.data pipeline, no oneDNN notice).
SERVE_PRINTS = START_UP_LINES[:3]


def _serve_stderr(model_base: Path, log: Path, *global_flags: str) -> str:
    """Runs ``fraudscore [global_flags] serve`` until its model is SERVING, stops it; returns its stderr."""
    env = {key: value for key, value in os.environ.items() if key != LEVEL_VAR}  # not the caller's level
    argv = [sys.executable, "-m", "fraudscore.cli", *global_flags, "serve", "--model-base", str(model_base),
            "--port", "0", "--metrics-port", "-1"]  # fmt: skip
    with log.open("w") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("LISTENING "), log.read_text()
        with grpc.insecure_channel(line.split()[1]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            wait_for(lambda: health.Check(health_pb2.HealthCheckRequest()).status == SERVING, 120, "never SERVING")
        time.sleep(0.5)  # the fast path's check and its log lines come with SERVING; let stderr catch up
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text()


def test_tensorflow_start_up_lines_are_hidden_by_default_and_shown_with_verbose(
    trained_model_base: Path, tmp_path: Path
) -> None:
    quiet = _serve_stderr(trained_model_base, tmp_path / "quiet.log")
    assert "scorer.registry: serving model" in quiet, quiet  # our own INFO lines still come
    shown = [pattern for pattern in START_UP_LINES if re.search(pattern, quiet)]
    assert shown == [], quiet

    verbose = _serve_stderr(trained_model_base, tmp_path / "verbose.log", "-v")
    missing = [pattern for pattern in SERVE_PRINTS if not re.search(pattern, verbose)]
    assert missing == [], verbose
