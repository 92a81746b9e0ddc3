"""Unit checks of fraudscore/dev/demo.py's pieces: its config, its Prometheus config, its child processes."""

from __future__ import annotations

import gzip
import json
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

import fraudscore.dev.demo as demo_module
from fraudscore.cli import build_parser
from fraudscore.dev.demo import (
    TRAIN_DATA,
    Child,
    Demo,
    DemoConfig,
    DemoError,
    _fraudscore,
    check_train_data,
    file_sha256,
    training_reason,
    write_prometheus_config,
)
from tests.support import process_alive

REPO = Path(__file__).resolve().parents[2]


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


def test_default_training_data_is_the_shipped_real_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = REPO / "samples/creditcard-real-dev.csv.gz"
    monkeypatch.chdir(tmp_path)  # an absolute path from the package's location: any working directory
    assert sample == TRAIN_DATA and TRAIN_DATA.is_absolute() and TRAIN_DATA.is_file()
    assert DemoConfig().train_data == sample and _config([]).train_data == sample
    assert _config(["--train-data", "x.csv.gz"]).train_data == Path("x.csv.gz")
    with gzip.open(sample, "rt") as f:
        header = f.readline().strip().split(",")
        rows = sum(1 for _ in f)
    assert header[0] == "Time" and header[-2:] == ["Amount", "Class"] and rows == 14_380
    check_train_data(DemoConfig())  # no error


def test_default_model_is_trained_on_the_sample_with_the_trainers_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No generated training data: one `fraudscore train --data <sample> --model-base <base>`, no other flag."""
    base = tmp_path / "models" / "creditcard"
    demo = Demo(DemoConfig(data_dir=tmp_path / "demo", model_base=base), threading.Event())
    ran: list[tuple[str, list[str]]] = []

    def run_to_end(name: str, argv: list[str]) -> None:
        ran.append((name, argv))
        _fake_version(base, 1, sha256=file_sha256(TRAIN_DATA), path=str(TRAIN_DATA))

    monkeypatch.setattr(demo, "_run_to_end", run_to_end)
    demo._ensure_model()
    assert ran == [("train", _fraudscore("train", "--data", str(TRAIN_DATA), "--model-base", str(base)))]
    ran.clear()
    demo._ensure_model()  # the model now matches: reused
    assert ran == []


def _fake_version(base: Path, version: int, **data: str) -> None:
    """A version directory ``list_versions`` counts as complete, its card naming its training data."""
    target = base / str(version)
    target.mkdir(parents=True)
    (target / "saved_model.pb").write_bytes(b"")
    (target / "model_card.json").write_text(json.dumps({"name": "creditcard", "version": version, "data": data}))


def test_a_model_trained_on_other_data_is_not_reused_as_the_real_data_model(tmp_path: Path) -> None:
    base = tmp_path / "creditcard"
    config = DemoConfig(data_dir=tmp_path / "demo", model_base=base)
    assert training_reason(config) == f"no model under {base}"
    # What an older demo left behind: a model trained on generated data in the data dir.
    _fake_version(base, 1, sha256="0" * 64, path=".cache/demo/train.csv")
    reason = training_reason(config)
    assert reason is not None and f"{base} v1 was trained on .cache/demo/train.csv" in reason
    _fake_version(base, 2, path="no sha256 recorded")
    assert training_reason(config) is not None
    # The newest version was trained on exactly this file (whoever trained it): reused.
    _fake_version(base, 3, sha256=file_sha256(TRAIN_DATA), path="anywhere/creditcard-real-dev.csv.gz")
    assert training_reason(config) is None
    other = tmp_path / "other.csv"
    other.write_text("Time,Amount,Class\n0,1,0\n")
    assert training_reason(DemoConfig(model_base=base, train_data=other)) is not None


def test_missing_training_data_is_a_one_line_error_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "samples" / "creditcard-real-dev.csv.gz"
    with pytest.raises(DemoError, match=f"^--train-data {missing}: no such file$"):
        check_train_data(DemoConfig(train_data=missing))
    # The shipped sample itself gone: `fraudscore demo` says where it was expected and how to override it.
    monkeypatch.setattr(demo_module, "TRAIN_DATA", missing)
    args = build_parser("demo").parse_args(
        ["demo", "--data-dir", str(tmp_path / "demo"), "--model-base", str(tmp_path / "models"),
         "--train-data", str(missing)]
    )  # fmt: skip
    assert demo_module.main(args) == 1
    out, err = capsys.readouterr()
    assert err == (
        f"fraudscore demo: the shipped real sample is missing: expected {missing} (samples/ of the source checkout; "
        "`git checkout samples/` restores it), or pass --train-data PATH\n"
    )
    assert "starting" not in out and not (tmp_path / "demo").exists(), out


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
    # Ctrl-C's handler set first: the demo's children start with SIGINT at its default (the demo handles it before
    # it spawns, and a handled signal is reset at exec), whereas this test's runner may ignore it (a background job).
    code = (
        "import signal,time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "try:\n print('ready', flush=True)\n time.sleep(60)\nexcept KeyboardInterrupt:\n print('bye')"
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


# The demo's own main(), with its start-up (emulators, model, scorer...) replaced by stand-in children that stop on
# the demo's stop signals as the real ones do; argv: data dir.
_DEMO_STAND_IN = """
import signal, sys
from fraudscore.cli import build_parser
from fraudscore.dev import demo

SLEEPER = "import time\\nprint('ready', flush=True)\\n" \\
    "try:\\n time.sleep(120)\\nexcept KeyboardInterrupt:\\n print('stopped')"
PROMETHEUS = "import signal,sys,time\\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(print('stopped')))\\n" \\
    "print('ready', flush=True)\\ntime.sleep(120)"

def run(self):
    for name in ("scorer", "stream"):
        self._spawn(name, [sys.executable, "-c", SLEEPER], signal.SIGINT)
    self._spawn("prometheus", [sys.executable, "-c", PROMETHEUS], signal.SIGTERM)
    self.publisher = self._spawn("publisher", [sys.executable, "-c", SLEEPER], signal.SIGINT)
    print("fraudscore demo is running", flush=True)
    return self._watch()

demo.Demo.run = run
sys.exit(demo.main(build_parser("demo").parse_args(["demo", "--data-dir", sys.argv[1]])))
"""


def _on_a_terminal(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """``argv`` as the leader of a new session whose controlling terminal is a fresh pty; returns it and the master."""
    import fcntl
    import pty
    import termios

    master, terminal = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the child is single-threaded
    )  # fmt: skip
    os.close(terminal)
    return proc, master


def test_a_closed_terminal_stops_every_child_like_ctrl_c(tmp_path: Path) -> None:
    # A closed window or a dropped SSH session: the kernel sends SIGHUP to the demo (the session leader) and every
    # write to its terminal fails from then on. Its children run in their own sessions and get no SIGHUP.
    proc, master = _on_a_terminal([sys.executable, "-c", _DEMO_STAND_IN, str(tmp_path / "demo")])
    children: list[int] = []
    try:
        logs = [tmp_path / "demo" / "logs" / f"{name}.log" for name in ("scorer", "stream", "prometheus", "publisher")]
        deadline = time.monotonic() + 60
        while not all(log.is_file() and "ready" in log.read_text() for log in logs):
            assert proc.poll() is None, f"the demo exited with {proc.returncode}"
            assert time.monotonic() < deadline, "stand-in children never ready"
            time.sleep(0.1)
        children += [int(pid) for pid in _children_of(proc.pid)]
        assert len(children) == 4, children
        os.close(master)  # the terminal goes away
        master = -1
        assert proc.wait(timeout=60) == 0
        stray = [pid for pid in children if process_alive(pid)]
        assert stray == [], f"children left running after the hangup: {stray}"
        # Each was stopped by its own stop signal (SIGINT, Prometheus SIGTERM), as at Ctrl-C, not killed.
        assert [log.read_text().split() for log in logs] == [["ready", "stopped"]] * 4
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in children:  # each leads its own group (start_new_session)
            if process_alive(pid):
                os.killpg(pid, signal.SIGKILL)


def _children_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
