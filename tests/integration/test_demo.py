"""``fraudscore demo`` (what ``make run`` runs) end to end, as a user would drive it.

Starts the demo as a subprocess on free ports with an existing model, and
``--train-data`` naming the file that model was trained on so that the demo
reuses it (the training path is the trainer's own test; the choice of the
default training data is in tests/unit/test_deploy_demo.py), waits for its
status block, then
uses the commands the block prints: ``fraudscore cases list`` until a case
exists and ``fraudscore score`` by hand. Ctrl-C (SIGINT) must then stop every
process the demo started, exit 0, free every port and release the data
directory (Prometheus' lock) so that the next run can reuse it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fraudscore.dev.processes import free_port
from tests.support import phase, process_alive

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 300.0  # emulators, TensorFlow in the scorer and the stream, Prometheus, on 2 shared cores
CASES_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 90.0  # each child gets at most 15 s; they stop one after another


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As a server binds: connections in TIME_WAIT don't count, a listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children in their own sessions included), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses.
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _wait_for_line(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        match = re.search(pattern, text, flags=re.MULTILINE)
        if match:
            return match
        if proc.poll() is not None:
            pytest.fail(f"demo exited with {proc.returncode} before {pattern!r}:\n{text[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {pattern!r} within {timeout:.0f} s:\n{text[-4000:]}")
        time.sleep(1.0)


@pytest.fixture
def demo(
    tmp_path: Path, trained_model_base: Path, train_csv: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, dict[str, int]]]:
    ports = {name: free_port() for name in ("scorer", "scorer_metrics", "stream_metrics", "prometheus", "console")}
    data_dir = tmp_path / "demo"
    out = tmp_path / "demo.out"
    argv = [
        sys.executable, "-m", "fraudscore.cli", "demo",
        "--data-dir", str(data_dir), "--model-base", str(trained_model_base), "--train-data", str(train_csv),
        "--pubsub-port", "0", "--bigtable-port", "0",
        "--scorer-port", str(ports["scorer"]), "--scorer-metrics-port", str(ports["scorer_metrics"]),
        "--stream-metrics-port", str(ports["stream_metrics"]), "--prometheus-port", str(ports["prometheus"]),
        "--console-port", str(ports["console"]),
        # A short file with more fraud than the default, so a case appears within seconds.
        "--stream-rows", "3000", "--fraud-rate", "0.03", "--rate", "100",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as sink:
        # Its own session, as in a terminal where Ctrl-C reaches only the foreground launcher.
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # fmt: skip
    try:
        yield proc, out, ports
    finally:
        seen = _descendants(proc.pid)
        if proc.poll() is None:  # the test failed before stopping it: stop it the way a user would, then hard
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in seen:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_demo_runs_cases_appear_scorer_answers_and_ctrl_c_stops_everything(
    demo: tuple[subprocess.Popen[bytes], Path, dict[str, int]], tmp_path: Path
) -> None:
    proc, out, ports = demo
    with phase("start: the demo runs with its children"):
        _wait_for_line(out, r"^fraudscore demo is running$", proc, START_TIMEOUT_S)
        exports = _wait_for_line(out, r"export PUBSUB_EMULATOR_HOST=(\S+) BIGTABLE_EMULATOR_HOST=(\S+)", proc, 5)
        env = {**os.environ, "PUBSUB_EMULATOR_HOST": exports.group(1), "BIGTABLE_EMULATOR_HOST": exports.group(2)}
        children = _descendants(proc.pid)
        # Emulators (2), scorer, stream, publisher, Prometheus at least.
        assert len(children) >= 6, children

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "fraudscore.cli", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)

    with phase("cases appear, the scorer answers"):
        # The commands the status block prints: list cases (until one exists) and score by hand.
        deadline = time.monotonic() + CASES_TIMEOUT_S
        cases: list[dict[str, object]] = []
        while not cases:
            assert proc.poll() is None, out.read_text()[-4000:]
            listed = cli("cases", "list", "--since", "1h", "--json")
            assert listed.returncode == 0, listed.stderr
            cases = json.loads(listed.stdout)
            if not cases:
                assert time.monotonic() < deadline, f"no case within {CASES_TIMEOUT_S:.0f} s\n{out.read_text()[-4000:]}"
                time.sleep(3.0)
        assert cases[0]["reasons"] and cases[0]["case_id"] and cases[0]["members"] >= 1
        stream_csv = tmp_path / "demo" / "stream-sparse-cards.csv"
        scored = cli("score", "--target", f"127.0.0.1:{ports['scorer']}", "--csv", str(stream_csv), "--limit", "3")
        assert scored.returncode == 0, scored.stderr
        assert len(scored.stdout.strip().splitlines()) == 3, scored.stdout

    with phase("the console shows the case"):
        console = _wait_for_line(out, r"console +(http://\S+/) +\(log in with the token in (\S+)\)", proc, 5)
        assert console.group(1) == f"http://127.0.0.1:{ports['console']}/"
        token = Path(console.group(2)).read_text().strip()
        with requests.Session() as http:
            login = http.get(console.group(1) + "login", timeout=10).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
            assert csrf is not None
            form = {"analyst": "demo-test", "token": token, "csrf_token": csrf.group(1)}
            assert http.post(console.group(1) + "login", data=form, timeout=10).ok
            page = http.get(console.group(1) + f"cases/{cases[0]['case_id']}", timeout=10)
            assert page.status_code == 200 and str(cases[0]["card_id"]) in page.text

    with phase("Ctrl-C stops everything"):
        # Ctrl-C: everything stops, cleanly, in bounded time.
        children |= _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(STOP_TIMEOUT_S) == 0, out.read_text()[-4000:]
        stray = {pid for pid in children if process_alive(pid)}
        assert not stray, f"processes left behind: {stray}"
        assert all(_port_free(port) for port in ports.values()), ports
        text = out.read_text()
        assert "stopped; data dir" in text and "killing it" not in text, text[-4000:]
        assert "training the default model" not in text, "a model trained on --train-data (same sha256) is reused"
        # Prometheus released its database: the next run can open the same data directory.
        assert not (tmp_path / "demo" / "prometheus" / "lock").exists()
