"""Unit checks of fraudscore/demo.py's pieces: its config, its Prometheus config, its child processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from fraudscore.cli import build_parser
from fraudscore.demo import Child, Demo, DemoConfig, DemoError, write_prometheus_config


def _config(argv: list[str]) -> DemoConfig:
    return DemoConfig.from_args(build_parser("demo").parse_args(["demo", *argv]), env={})


def test_flags_build_the_config() -> None:
    config = _config(["--data-dir", "/tmp/d", "--scorer-port", "1234", "--rate", "20", "--no-publisher"])
    assert config.data_dir == Path("/tmp/d") and config.logs == Path("/tmp/d/logs")
    assert (config.scorer_port, config.rate, config.publisher, config.prometheus) == (1234, 20.0, False, True)
    assert _config([]) == DemoConfig(), "flag defaults and DemoConfig defaults agree"


def test_env_names_the_project() -> None:
    args = build_parser("demo").parse_args(["demo"])
    config = DemoConfig.from_args(args, env={"FRAUDSCORE_PROJECT": "other-project"})
    assert config.resources.project == "other-project"


def test_prometheus_config_gets_the_demo_ports_and_passes_promtool(tmp_path: Path) -> None:
    config = DemoConfig(data_dir=tmp_path, scorer_metrics_port=1111, stream_metrics_port=2222, prometheus_port=3333)
    path = write_prometheus_config(config)
    data = yaml.safe_load(path.read_text())
    targets = {c["job_name"]: c["static_configs"][0]["targets"] for c in data["scrape_configs"]}
    assert targets == {
        "fraudscore-scorer": ["127.0.0.1:1111"],
        "fraudscore-stream": ["127.0.0.1:2222"],
        "prometheus": ["127.0.0.1:3333"],
    }
    assert all(Path(rule).is_absolute() and Path(rule).is_file() for rule in data["rule_files"])
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (make setup)"
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_busy_port_is_refused_with_the_flag_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = Demo(DemoConfig(data_dir=tmp_path, stream_metrics_port=port, pubsub_port=0, bigtable_port=0,
                               scorer_port=0, scorer_metrics_port=0, prometheus_port=0), threading.Event())  # fmt: skip
        with pytest.raises(DemoError, match=f"--stream-metrics-port {port}: .* in use"):
            demo._check_ports()


def _python_child(tmp_path: Path, code: str, stop_signal: signal.Signals) -> Child:
    child = Child("test", [sys.executable, "-c", code], tmp_path / "logs" / "test.log", stop_signal)
    return child.start(os.environ)


def test_child_stops_on_its_signal_and_logs_output(tmp_path: Path) -> None:
    code = (
        "import time,sys\ntry:\n print('ready', flush=True)\n time.sleep(60)\nexcept KeyboardInterrupt:\n print('bye')"
    )
    child = _python_child(tmp_path, code, signal.SIGINT)
    deadline = time.monotonic() + 20
    while "ready" not in child.tail():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.stop(grace=10)
    assert child.exit_code() == 0
    assert child.tail().splitlines() == ["ready", "bye"]


def test_child_that_ignores_its_signal_is_killed_with_its_group(tmp_path: Path) -> None:
    # The child ignores SIGINT and starts a grandchild in the same process group.
    code = (
        "import signal,subprocess,sys,time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import signal,time; "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = _python_child(tmp_path, code, signal.SIGINT)
    deadline = time.monotonic() + 20
    while not child.tail().strip().isdigit():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(child.tail().strip())
    started = time.monotonic()
    child.stop(grace=0.5)
    assert child.exit_code() == -signal.SIGKILL
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while Path(f"/proc/{grandchild}").exists() and "Z" not in Path(f"/proc/{grandchild}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "grandchild survived"
        time.sleep(0.05)
