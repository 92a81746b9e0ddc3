"""``fraudscore demo`` (``make run``): the whole system on one machine, on local emulators.

Starts, in order, each as a child process of its own with its log under
``<data dir>/logs``:

1. the Pub/Sub and Bigtable emulators, and the project's topics,
   subscriptions and tables (:mod:`fraudscore.dev.emulators`);
2. unless the newest model under ``<model base>`` was trained on the demo's
   training data (by default the shipped real sample,
   ``samples/creditcard-real-dev.csv.gz``; compared by sha256 with the model
   card's ``data.sha256``): ``fraudscore train`` on it with the trainer's
   defaults, as a new model version (the default model, with its report);
3. ``fraudscore serve`` (gRPC scorer) and ``fraudscore stream`` (the Beam job);
4. ``fraudscore publish`` replaying a separately generated sample with a small
   share of fraud bursts at a modest rate, restarted when it reaches the end;
5. Debian's ``prometheus`` with the rules of deploy/prometheus, scraping them;
6. ``fraudscore console``, the analysts' case console (``--console-port``, the token in
   ``<data dir>/console.token``, made on the first run).

Then it prints one status block and watches the children. Ctrl-C, SIGTERM or
SIGHUP (its terminal went away: a closed window, a dropped SSH session) stops
every process it started, newest first, by process group (each child runs in
its own session, so a terminal's Ctrl-C or hangup reaches only this launcher),
and leaves the data directory ready for the next run: the generated stream
file, the Prometheus database and the model are reused, logs are rewritten.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from fraudscore.config import EmulatorConfig, Resources
from fraudscore.dev.processes import group_alive, on_stop_signals, say, signal_group, stop_group

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy/prometheus"
# The default model is trained on real transactions (samples/README.md gives their provenance); the publisher
# still replays generated ones, which have the card ids and bursts the per-card rules need.
TRAIN_DATA = ROOT / "samples/creditcard-real-dev.csv.gz"
MODEL_NAME = "creditcard"
STOP_GRACE_S = 15.0  # the scorer drains within its own --grace (10 s) of SIGINT
READY_TIMEOUT_S = 300.0  # TensorFlow import and model load on 2 busy cores


class DemoError(RuntimeError):
    """Something the demo needs is missing or a child failed; the message says what to do."""


class Interrupted(DemoError):
    """Ctrl-C, SIGTERM or SIGHUP arrived while starting up."""


@dataclass(frozen=True)
class DemoConfig:
    """Everything ``fraudscore demo`` needs, built once from its flags."""

    data_dir: Path = Path(".cache/demo")
    model_base: Path = Path("models") / MODEL_NAME
    host: str = "127.0.0.1"
    pubsub_port: int = 8085
    bigtable_port: int = 8086
    scorer_port: int = 50051
    scorer_metrics_port: int = 9464
    stream_metrics_port: int = 9465
    prometheus_port: int = 9090
    console_port: int = 8080
    train_data: Path = TRAIN_DATA
    stream_rows: int = 100_000
    fraud_rate: float = 0.01  # in bursts of 1-6 per card (fraudscore.dev.generate)
    rate: float = 50.0
    prometheus: bool = True
    publisher: bool = True
    prometheus_config: Path = PROMETHEUS_DIR / "prometheus.yml"
    resources: Resources = field(default_factory=Resources)

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def console_token(self) -> Path:
        """The token analysts log in to the console with: made once, kept with the demo's data."""
        return self.data_dir / "console.token"

    @property
    def stream_csv(self) -> Path:
        return self.data_dir / "stream-sparse-cards.csv"

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str]) -> DemoConfig:
        resources = Resources.from_env(env)
        return cls(
            data_dir=Path(args.data_dir),
            model_base=Path(args.model_base),
            pubsub_port=args.pubsub_port,
            bigtable_port=args.bigtable_port,
            scorer_port=args.scorer_port,
            scorer_metrics_port=args.scorer_metrics_port,
            stream_metrics_port=args.stream_metrics_port,
            prometheus_port=args.prometheus_port,
            console_port=args.console_port,
            train_data=Path(args.train_data),
            stream_rows=args.stream_rows,
            fraud_rate=args.fraud_rate,
            rate=args.rate,
            prometheus=not args.no_prometheus,
            publisher=not args.no_publisher,
            resources=resources,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    parser.add_argument("--data-dir", default=str(d.data_dir), help="logs, generated data, Prometheus (%(default)s)")
    parser.add_argument(
        "--model-base",
        default=str(d.model_base),
        help="model versions; a new one is trained here unless the newest was trained on --train-data (%(default)s)",
    )
    parser.add_argument(
        "--train-data",
        default=str(d.train_data),
        help="labelled CSV (.csv, .csv.gz, Kaggle .zip) the default model is trained on, with the trainer's "
        "defaults (default: the shipped real sample, %(default)s)",
    )
    parser.add_argument("--pubsub-port", type=int, default=d.pubsub_port, help="Pub/Sub emulator port, 0 = free")
    parser.add_argument("--bigtable-port", type=int, default=d.bigtable_port, help="Bigtable emulator port, 0 = free")
    parser.add_argument("--scorer-port", type=int, default=d.scorer_port, help="gRPC scorer port (%(default)s)")
    parser.add_argument("--scorer-metrics-port", type=int, default=d.scorer_metrics_port, help="scorer /metrics")
    parser.add_argument("--stream-metrics-port", type=int, default=d.stream_metrics_port, help="stream /metrics")
    parser.add_argument("--prometheus-port", type=int, default=d.prometheus_port, help="Prometheus (%(default)s)")
    parser.add_argument("--console-port", type=int, default=d.console_port, help="analysts' console (%(default)s)")
    parser.add_argument("--stream-rows", type=int, default=d.stream_rows, help="generated rows the publisher replays")
    parser.add_argument("--fraud-rate", type=float, default=d.fraud_rate, help="fraud share of the replayed rows")
    parser.add_argument("--rate", type=float, default=d.rate, help="transactions per second published (%(default)s)")
    parser.add_argument("--no-prometheus", action="store_true", help="don't start Prometheus")
    parser.add_argument("--no-publisher", action="store_true", help="don't publish; feed the topic yourself")


# ---------------------------------------------------------------------------------------------------------------------
# Child processes


class Child:
    """One child process in its own session, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, stop_signal: signal.Signals) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, env: Mapping[str, str]) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # its own process group: we signal the group, a terminal's Ctrl-C doesn't
        )
        log.debug("started %s (pid %d): %s", self.name, self.popen.pid, " ".join(self.argv))
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Its stop signal to the group, then SIGKILL after ``grace``; reaps it. Safe to call twice."""
        if self.popen is None:
            return
        pgid = self.popen.pid  # start_new_session: the group id is the child's pid
        if stop_group(self.popen, self.stop_signal, grace):
            log.warning(
                "%s (pid %d) still running %.0f s after %s; killed it", self.name, pgid, grace, self.stop_signal.name
            )
        # Grandchildren that outlived the child (none expected) go the same way.
        if group_alive(pgid):
            signal_group(pgid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


def _fraudscore(*args: str) -> list[str]:
    return [sys.executable, "-m", "fraudscore.cli", *args]


# ---------------------------------------------------------------------------------------------------------------------
# The run


class Demo:
    """Starts the children in order, watches them, stops them all."""

    def __init__(self, config: DemoConfig, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.children: list[Child] = []
        self.emulators: Any = None
        self.env: dict[str, str] = {}
        self.publisher: Child | None = None
        self.replays = 0

    def run(self) -> int:
        from fraudscore.dev.emulators import Emulators
        from fraudscore.resources import create_resources

        c = self.config
        check_train_data(c)  # before anything starts: a missing sample is a one-line error, not a failed child
        c.logs.mkdir(parents=True, exist_ok=True)
        self._check_ports()
        emulator_config = EmulatorConfig(host=c.host, pubsub_port=c.pubsub_port, bigtable_port=c.bigtable_port)
        say("starting the Pub/Sub and Bigtable emulators")
        self.emulators = Emulators(emulator_config, project=c.resources.project).start()
        # The children find the emulators through the variables the official clients read; TensorFlow's log
        # level (quiet, or all with `fraudscore -v demo`) they inherit from ours (fraudscore.native_logs).
        self.env = {**os.environ, **self.emulators.env, "PYTHONUNBUFFERED": "1"}
        with self.emulators.exported_env():
            create_resources(c.resources)
        self._ensure_model()
        scorer = self._spawn(
            "scorer",
            _fraudscore(
                "serve",
                "--model-base",
                str(c.model_base),
                "--host",
                c.host,
                "--port",
                str(c.scorer_port),
                "--metrics-port",
                str(c.scorer_metrics_port),
            ),
            signal.SIGINT,
        )
        stream = self._spawn(
            "stream",
            _fraudscore(
                "stream",
                "--model-base",
                str(c.model_base),
                "--project",
                c.resources.project,
                "--bigtable-instance",
                c.resources.bigtable_instance,
                "--metrics-port",
                str(c.stream_metrics_port),
            ),
            signal.SIGINT,
        )
        prometheus = self._start_prometheus() if c.prometheus else None
        console = self._spawn(
            "console",
            _fraudscore(
                "console",
                "--host",
                c.host,
                "--port",
                str(c.console_port),
                "--token-file",
                str(ensure_token(c.console_token)),
                "--model-base",
                str(c.model_base),
            ),
            signal.SIGINT,
        )
        if c.publisher:
            # The publisher compresses the file's two days into minutes, which would make every busy card
            # look like a CARD_VELOCITY case; spreading the rows over many cards keeps per-card rates
            # (in compressed time) close to real ones, while fraud bursts stay bursts.
            self._ensure_csv(
                c.stream_csv, c.stream_rows, seed=1, fraud_rate=c.fraud_rate, cards=max(1, c.stream_rows // 2)
            )
        say("waiting for the scorer to load the model and the stream job to start")
        self._wait_until("scorer", scorer, lambda: _grpc_serving(f"{c.host}:{c.scorer_port}"))
        self._wait_until("stream", stream, lambda: _http_ok(f"http://{c.host}:{c.stream_metrics_port}/metrics"))
        self._wait_until("console", console, lambda: _http_ok(f"{self._console_url}/health"))
        if prometheus is not None:
            self._wait_until("prometheus", prometheus, lambda: _http_ok(self._prometheus_url + "/-/ready"))
        if c.publisher:
            self._start_publisher()
        say(self.status())
        return self._watch()

    @property
    def _console_url(self) -> str:
        return f"http://{self.config.host}:{self.config.console_port}"

    @property
    def _prometheus_url(self) -> str:
        return f"http://{self.config.host}:{self.config.prometheus_port}"

    def _check_ports(self) -> None:
        c = self.config
        wanted = {
            "--pubsub-port": c.pubsub_port,
            "--bigtable-port": c.bigtable_port,
            "--scorer-port": c.scorer_port,
            "--scorer-metrics-port": c.scorer_metrics_port,
            "--stream-metrics-port": c.stream_metrics_port,
            "--console-port": c.console_port,
        }
        if c.prometheus:
            wanted["--prometheus-port"] = c.prometheus_port
        for flag, port in wanted.items():
            if port == 0:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                # As the servers bind: connections in TIME_WAIT from a previous run don't count, a listener does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((c.host, port))
                except OSError:
                    raise DemoError(
                        f"{flag} {port}: port {c.host}:{port} is in use (another demo running?); "
                        f"stop it or pick another port with {flag}"
                    ) from None

    def _spawn(self, name: str, argv: list[str], stop_signal: signal.Signals) -> Child:
        child = Child(name, argv, self.config.logs / f"{name}.log", stop_signal).start(self.env)
        self.children.append(child)
        return child

    def _run_to_end(self, name: str, argv: list[str]) -> None:
        """A one-shot child (generate, train) that Ctrl-C can still interrupt."""
        child = self._spawn(name, argv, signal.SIGINT)
        while child.exit_code() is None:
            if self.stop.wait(0.2):
                raise Interrupted(f"interrupted during {name}")
        if child.exit_code() != 0:
            raise DemoError(f"{name} failed (exit {child.exit_code()}); log {child.log_path}:\n{child.tail()}")

    def _ensure_csv(self, path: Path, rows: int, *, seed: int, fraud_rate: float, cards: int | None = None) -> None:
        if path.is_file():
            return
        say(f"generating {rows:,} transactions into {path}")
        tmp = path.with_suffix(".csv.tmp")  # renamed when complete: an interrupted run leaves no half file
        args = [
            "generate",
            "--rows",
            str(rows),
            "--seed",
            str(seed),
            "--fraud-rate",
            str(fraud_rate),
            "--out",
            str(tmp),
        ]
        if cards is not None:
            args += ["--cards", str(cards)]
        self._run_to_end(f"generate-{path.stem}", _fraudscore(*args))
        tmp.rename(path)

    def _ensure_model(self) -> None:
        from fraudscore.versions import latest_version

        c = self.config
        reason = training_reason(c)
        if reason is None:
            return
        say(f"{reason}: training the default model on {c.train_data} (log {c.logs / 'train.log'})")
        self._run_to_end("train", _fraudscore("train", "--data", str(c.train_data), "--model-base", str(c.model_base)))
        version = latest_version(c.model_base)
        if version is None or training_reason(c) is not None:
            raise DemoError(f"training finished but {c.model_base} holds no complete model trained on {c.train_data}")
        report = c.model_base / str(version) / "report" / "report.md"
        say(f"trained {c.model_base} v{version}" + (f"; evaluation report {report}" if report.is_file() else ""))

    def _start_prometheus(self) -> Child:
        c = self.config
        binary = shutil.which("prometheus")
        if binary is None:
            raise DemoError("prometheus is not installed: run `make setup` (Debian package prometheus)")
        config_path = write_prometheus_config(c)
        storage = c.data_dir / "prometheus"
        storage.mkdir(parents=True, exist_ok=True)
        return self._spawn(
            "prometheus",
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address={c.host}:{c.prometheus_port}",
            ],
            signal.SIGTERM,
        )

    def _start_publisher(self) -> None:
        from fraudscore.dev.generate import DURATION_S

        c = self.config
        # Play the file's two days so fast that it arrives at about --rate: per-card bursts stay bursts.
        speedup = max(1.0, c.rate * DURATION_S / c.stream_rows)
        self.publisher = self._spawn(
            "publisher",
            _fraudscore(
                "publish",
                "--data",
                str(c.stream_csv),
                "--rate",
                str(c.rate),
                "--speedup",
                f"{speedup:.3f}",
                "--project",
                c.resources.project,
                "--topic",
                c.resources.transactions_topic,
            ),
            signal.SIGINT,
        )

    def _wait_until(self, name: str, child: Child, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            if child.exit_code() is not None:
                raise DemoError(f"{name} exited with code {child.exit_code()}; log {child.log_path}:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"{name} not ready after {READY_TIMEOUT_S:.0f} s; log {child.log_path}")
            if self.stop.wait(0.5):
                raise Interrupted(f"interrupted while waiting for {name}")

    def _watch(self) -> int:
        """Until a signal: restarts the publisher at the end of its file; a crashed service ends the demo."""
        while not self.stop.wait(1.0):
            for child in self.children:
                code = child.exit_code()
                if code is None:
                    continue
                if child is self.publisher and code == 0:
                    self.replays += 1
                    log.info("publisher reached the end of %s; replaying it (new transaction ids)", child.argv)
                    self.children.remove(child)
                    child.stop()
                    self._start_publisher()
                    break
                if child.name.startswith(("generate", "train")):
                    continue  # one-shot steps that finished before the services started
                say(f"{child.name} exited with code {code}; log {child.log_path}:\n{child.tail()}", err=True)
                return 1
            if self.emulators is not None and not self.emulators.alive():
                say("an emulator exited; stopping the demo", err=True)
                return 1
        return 0

    def shutdown(self) -> None:
        """Stops every child, newest first, then the emulators."""
        for child in reversed(self.children):
            if child.exit_code() is None:
                say(f"stopping {child.name} (pid {child.pid})")
            child.stop()
        if self.emulators is not None:
            say("stopping the emulators")
            self.emulators.stop()

    def status(self) -> str:
        from fraudscore.versions import latest_version

        c = self.config
        emu = self.emulators
        version = latest_version(c.model_base)
        lines = [
            "",
            "fraudscore demo is running",
            f"  scorer       {c.host}:{c.scorer_port} (gRPC)  model {c.model_base} v{version}",
            f"  metrics      http://{c.host}:{c.scorer_metrics_port}/metrics (scorer)  "
            f"http://{c.host}:{c.stream_metrics_port}/metrics (stream)",
        ]
        lines.append(f"  console      {self._console_url}/  (log in with the token in {c.console_token})")
        if c.prometheus:
            lines.append(f"  Prometheus   {self._prometheus_url}  (alert rate: job:fraudscore_stream_alerts:rate5m)")
        if c.publisher:
            lines.append(f"  publisher    {c.rate:g} tx/s from {c.stream_csv} ({c.fraud_rate:.1%} fraud, in bursts)")
        lines += [
            f"  emulators    Pub/Sub {emu.pubsub_host}  Bigtable {emu.bigtable_host}",
            f"  logs         {c.logs}/",
            "In another shell:",
            f"  export PUBSUB_EMULATOR_HOST={emu.pubsub_host} BIGTABLE_EMULATOR_HOST={emu.bigtable_host}",
            "  fraudscore cases list --since 15m                       # flagged cases",
            f"  fraudscore score --target {c.host}:{c.scorer_port} --csv {c.stream_csv} --limit 5   # score by hand",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)


def ensure_token(path: Path) -> Path:
    """A random console token in ``path`` (owner-only), made on the first run and kept for the next ones."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path


def check_train_data(config: DemoConfig) -> None:
    """A one-line :class:`DemoError` when the training data is not a file."""
    path = config.train_data
    if path.is_file():
        return
    if path == TRAIN_DATA:
        raise DemoError(
            f"the shipped real sample is missing: expected {path} (samples/ of the source checkout; "
            "`git checkout samples/` restores it), or pass --train-data PATH"
        )
    raise DemoError(f"--train-data {path}: no such file")


def file_sha256(path: Path) -> str:
    """The sha256 of the file's bytes, as the trainer records it in the model card's ``data.sha256``."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def training_reason(config: DemoConfig) -> str | None:
    """Why the demo must train a model first, or None when the newest model is the one for ``train_data``.

    The model lives in ``--model-base`` (``models/creditcard``), not in the data dir, so versioning the data dir's
    name would not stop a model that an older demo trained on generated data (``.cache/demo/train.csv``) from being
    served as if it were the real-data model. What identifies a model's training data is the sha256 of the exact
    file that the trainer records in the model card (``data.sha256``): a model trained on exactly this file, by
    the demo or by hand, is reused; one trained on anything else (generated data, another file, an older copy of
    the sample) or whose card says nothing gets a new version trained on top of it. Nothing is deleted: the
    scorer and the stream serve the newest version, and the old one stays for comparison or rollback.
    """
    from fraudscore.artifact import CARD_FILE
    from fraudscore.versions import latest_version

    version = latest_version(config.model_base)
    if version is None:
        return f"no model under {config.model_base}"
    try:
        data = json.loads((config.model_base / str(version) / CARD_FILE).read_text())["data"]
        trained_on, source = str(data["sha256"]), str(data.get("path", "unknown data"))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # unreadable card, or no data.sha256 in it
        trained_on, source = "", "data its card does not name"
    if trained_on == file_sha256(config.train_data):
        return None
    return f"{config.model_base} v{version} was trained on {source}, not on {config.train_data} (sha256 differs)"


def write_prometheus_config(config: DemoConfig) -> Path:
    """deploy/prometheus/prometheus.yml with the demo's ports and an absolute rules path, in the data dir."""
    source = config.prometheus_config
    data = yaml.safe_load(source.read_text())
    ports = {
        "fraudscore-scorer": config.scorer_metrics_port,
        "fraudscore-stream": config.stream_metrics_port,
        "prometheus": config.prometheus_port,
    }
    for scrape in data["scrape_configs"]:
        port = ports.get(scrape["job_name"])
        if port is not None:
            for static in scrape["static_configs"]:
                static["targets"] = [f"{config.host}:{port}"]
    data["rule_files"] = [str((source.parent / rule).resolve()) for rule in data.get("rule_files", [])]
    target = config.data_dir / "prometheus.yml"
    target.write_text(f"# written by fraudscore demo from {source}\n" + yaml.safe_dump(data, sort_keys=False))
    return target


def _grpc_serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2.0)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main(args: argparse.Namespace) -> int:
    config = DemoConfig.from_args(args, os.environ)
    stop = threading.Event()
    previous = on_stop_signals(stop.set)
    demo = Demo(config, stop)
    try:
        code = demo.run()
    except Interrupted:
        code = 0
    except DemoError as exc:
        say(f"fraudscore demo: {exc}", err=True)
        code = 1
    except Exception as exc:  # EmulatorError and friends: report, then still stop every child
        say(f"fraudscore demo: {type(exc).__name__}: {exc}", err=True)
        code = 1
    finally:
        # A second Ctrl-C during shutdown must not leave children behind: ignore it while stopping.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            demo.shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    say(f"stopped; data dir {config.data_dir} kept for the next run")
    return code


__all__ = [
    "TRAIN_DATA",
    "Demo",
    "DemoConfig",
    "DemoError",
    "add_arguments",
    "check_train_data",
    "ensure_token",
    "main",
    "training_reason",
    "write_prometheus_config",
]
