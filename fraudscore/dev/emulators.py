"""Local Pub/Sub and Bigtable emulators, and creating the resources the services share.

Used by ``make run`` / ``fraudscore demo``, by the integration-test fixtures and
as the ``fraudscore emulators`` command. By default it runs Google's in-memory
servers ``pstest`` and ``bttest`` built by ``make setup`` (deploy/emulators);
where ``gcloud`` is installed, ``backend="gcloud"`` runs its emulators instead.

Nothing else in the project knows it is talking to an emulator: the official
client libraries read ``PUBSUB_EMULATOR_HOST`` / ``BIGTABLE_EMULATOR_HOST``.
Putting those into the environment of child processes (:attr:`Emulators.env`)
or of this process (:meth:`Emulators.exported_env`) is this module's job, and
:func:`create_resources` uses only the official clients, so it works unchanged
against Google Cloud.

Each emulator runs in its own session and process group: Ctrl-C in a terminal (or its hangup)
reaches only the launcher, which then stops the group (SIGTERM, a grace period,
SIGKILL) and reaps it, which also takes down the Java process that
``gcloud ... start`` leaves behind otherwise. An ``atexit`` hook stops whatever
is still running if the caller forgets to.

Exceptions::

    EmulatorError             anything that stops the emulators from serving
    ├── EmulatorNotFound      binary or gcloud missing (run `make setup`)
    └── EmulatorStartError    exited or did not answer in time; carries its output
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Literal

from fraudscore.config import DEFAULT_PROJECT, EmulatorConfig, Resources
from fraudscore.dev.processes import free_port, on_stop_signals, say, signal_group, stop_group
from fraudscore.resources import create_resources, describe_resources

log = logging.getLogger(__name__)

Backend = Literal["binaries", "gcloud"]
BACKENDS: tuple[Backend, ...] = ("binaries", "gcloud")
PUBSUB_ENV = "PUBSUB_EMULATOR_HOST"
BIGTABLE_ENV = "BIGTABLE_EMULATOR_HOST"
# pstest rejects a subscription with ack_deadline_seconds=0, which the Python client sends by default.
STARTUP_TIMEOUT = {"binaries": 30.0, "gcloud": 120.0}  # the Java Pub/Sub emulator is slow to start
STOP_GRACE_SECONDS = 5.0
_LISTENING = b"LISTENING "


class EmulatorError(RuntimeError):
    """The emulators cannot be started or used."""


class EmulatorNotFound(EmulatorError):
    """The emulator program is not installed or not built."""


class EmulatorStartError(EmulatorError):
    """An emulator exited or did not answer in time; ``output`` is what it printed."""

    def __init__(self, name: str, reason: str, output: str) -> None:
        message = f"{name} emulator {reason}"
        if output:
            message += f"\n--- {name} emulator output (last lines) ---\n{output}"
        super().__init__(message)
        self.name = name
        self.reason = reason
        self.output = output


class EmulatorProcess:
    """One running emulator: its process group, address and captured output."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, *, stdin_lifeline: bool = False
    ) -> None:
        self.name = name
        self.argv = argv
        self.address: str | None = None
        # Unnamed temp files rather than pipes: nothing can block on a full pipe and nothing is left on disk.
        self._stdout: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.popen = subprocess.Popen(
                argv,
                # With a lifeline the child exits when this pipe closes: also when we die by SIGKILL,
                # which no atexit hook survives.
                stdin=subprocess.PIPE if stdin_lifeline else subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=self._stderr,
                env=env,
                start_new_session=True,  # own process group: we signal the group, terminals' Ctrl-C don't
            )
        except OSError as exc:
            self._close_files()
            raise EmulatorNotFound(f"cannot run {name} emulator {argv[0]}: {exc}") from exc
        _RUNNING.add(self)
        log.debug("started %s emulator pid %d: %s", name, self.popen.pid, " ".join(argv))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def first_line(self, prefix: bytes) -> str | None:
        """The first stdout line starting with ``prefix`` (without it), once printed in full."""
        data = os.pread(self._stdout.fileno(), 64 * 1024, 0)
        for line in data.splitlines(keepends=True):
            if line.startswith(prefix) and line.endswith(b"\n"):
                return line[len(prefix) :].decode("utf-8", "replace").strip()
        return None

    def output_tail(self, max_bytes: int = 4000) -> str:
        """The end of what the emulator printed, stderr first (that is where servers complain)."""
        parts = []
        for label, file in (("stderr", self._stderr), ("stdout", self._stdout)):
            if file.closed:
                continue
            size = os.fstat(file.fileno()).st_size
            data = os.pread(file.fileno(), max_bytes, max(0, size - max_bytes))
            text = data.decode("utf-8", "replace").strip()
            if text:
                parts.append(f"[{label}]\n{text}")
        return "\n".join(parts)

    def terminate(self) -> None:
        """Asks the whole process group to exit (SIGTERM) without waiting; :meth:`stop` finishes the job."""
        if self.alive():
            signal_group(self.popen.pid, signal.SIGTERM)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to the process group, wait, then SIGKILL; reaps the process. Safe to call twice."""
        pgid = self.popen.pid  # the group id is the leader's pid (start_new_session)
        try:
            if stop_group(self.popen, signal.SIGTERM, grace):
                log.warning("%s emulator pid %d ignored SIGTERM for %.0fs; killed it", self.name, pgid, grace)
            # Members that outlive the leader (gcloud's Java child) get the same treatment.
            if _live_group_members(pgid):
                signal_group(pgid, signal.SIGTERM)
                if not _wait_group_gone(pgid, grace):
                    signal_group(pgid, signal.SIGKILL)
                    if not _wait_group_gone(pgid, grace):
                        log.warning("%s emulator: processes %s survived SIGKILL", self.name, _live_group_members(pgid))
        finally:
            _RUNNING.discard(self)
            self._close_files()
        log.debug("stopped %s emulator pid %d (exit %s)", self.name, pgid, self.popen.returncode)

    def _close_files(self) -> None:
        popen = getattr(self, "popen", None)  # absent when Popen itself failed
        if popen is not None and popen.stdin is not None:
            popen.stdin.close()
        self._stdout.close()
        self._stderr.close()


# Processes started and not yet stopped, for the atexit safety net.
_RUNNING: set[EmulatorProcess] = set()


@atexit.register
def _stop_all() -> None:
    for proc in list(_RUNNING):
        with contextlib.suppress(Exception):
            proc.stop(grace=2.0)


def _live_group_members(pgid: int) -> list[int]:
    """Pids of the process group that still run.

    A member whose parent died first (gcloud's Java child) is reparented to init and stays a zombie
    until init reaps it: it holds no port or memory, so it does not count.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs: the group exists, which is all we can tell
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after "(comm)": state, ppid, pgrp, ...
        state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _live_group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _probe_pubsub(address: str, project: str, timeout: float) -> None:
    """A real ListTopics call (a TCP connect alone says nothing about the server being ready)."""
    import grpc
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    transport = PublisherGrpcTransport(channel=grpc.insecure_channel(address))
    try:
        client = PublisherClient(transport=transport)
        list(client.list_topics(request={"project": f"projects/{project}"}, timeout=timeout))
    finally:
        transport.close()


def _probe_bigtable(address: str, project: str, instance: str, timeout: float) -> None:
    """A real ListTables call on the emulator's admin API."""
    import grpc
    from google.cloud.bigtable_admin_v2 import BigtableTableAdminClient
    from google.cloud.bigtable_admin_v2.services.bigtable_table_admin.transports import (
        BigtableTableAdminGrpcTransport,
    )

    transport = BigtableTableAdminGrpcTransport(channel=grpc.insecure_channel(address))
    try:
        client = BigtableTableAdminClient(transport=transport)
        list(client.list_tables(parent=f"projects/{project}/instances/{instance}", timeout=timeout))
    finally:
        transport.close()


def _wait_ready(proc: EmulatorProcess, probe: Callable[[str, float], None], deadline: float, total: float) -> None:
    """Waits for the address (LISTENING line) if unknown, then until a probe request succeeds."""
    while proc.address is None:
        proc.address = proc.first_line(_LISTENING)
        if proc.address is None:
            _check_running(proc, deadline, total, "printed no LISTENING line")
            time.sleep(0.02)
    last_error = ""
    while True:
        _check_running(proc, deadline, total, f"did not answer on {proc.address} ({last_error})")
        try:
            probe(proc.address, max(0.2, min(2.0, deadline - time.monotonic())))
            return
        except Exception as exc:  # any failure of the probe request means "not ready yet"
            last_error = f"last error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            time.sleep(0.1)


def _check_running(proc: EmulatorProcess, deadline: float, total: float, what: str) -> None:
    if not proc.alive():
        raise EmulatorStartError(proc.name, f"exited with code {proc.popen.returncode}", proc.output_tail())
    if time.monotonic() > deadline:
        raise EmulatorStartError(proc.name, f"{what} within {total:.0f}s", proc.output_tail())


@dataclass
class Emulators:
    """The two emulators as one unit; use as a context manager (or call start() and stop()).

    >>> with Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0)) as emu, emu.exported_env():
    ...     create_resources(Resources())
    """

    config: EmulatorConfig = field(default_factory=EmulatorConfig)
    backend: Backend = "binaries"
    project: str = DEFAULT_PROJECT  # only used in readiness probes and by gcloud's Pub/Sub emulator
    startup_timeout: float | None = None  # default per backend (STARTUP_TIMEOUT)
    pubsub: EmulatorProcess | None = field(default=None, init=False)
    bigtable: EmulatorProcess | None = field(default=None, init=False)

    def start(self) -> Emulators:
        if self.backend not in BACKENDS:
            raise EmulatorError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.pubsub is not None or self.bigtable is not None:
            raise EmulatorError("these emulators were started already; create a new Emulators to start again")
        self._check_installed()
        total = self.startup_timeout or STARTUP_TIMEOUT[self.backend]
        deadline = time.monotonic() + total
        try:
            # Both start at once; the readiness waits then overlap.
            self.pubsub = self._launch("pubsub", self.config.pubsub_port)
            self.bigtable = self._launch("bigtable", self.config.bigtable_port)
            _wait_ready(self.pubsub, lambda a, t: _probe_pubsub(a, self.project, t), deadline, total)
            _wait_ready(self.bigtable, lambda a, t: _probe_bigtable(a, self.project, "probe", t), deadline, total)
        except BaseException:
            self.stop()
            raise
        log.info("Pub/Sub emulator on %s, Bigtable emulator on %s", self.pubsub_host, self.bigtable_host)
        return self

    def _binary(self, name: str) -> Path:
        return Path(self.config.bin_dir) / ("pstest" if name == "pubsub" else "bttest")

    def _check_installed(self) -> None:
        """Fails before anything starts, so a half-installed setup leaves no process behind."""
        if self.backend == "gcloud":
            if shutil.which("gcloud") is None:
                raise EmulatorNotFound("gcloud is not installed; use the default backend (`--backend binaries`)")
            return
        missing = [str(self._binary(n)) for n in ("pubsub", "bigtable") if not os.access(self._binary(n), os.X_OK)]
        if missing:
            raise EmulatorNotFound(f"emulator binaries missing: {', '.join(missing)}; run `make setup` to build them")

    def _launch(self, name: str, port: int) -> EmulatorProcess:
        host = self.config.host
        if self.backend == "binaries":
            argv = [str(self._binary(name)), "--addr", f"{host}:{port}", "--exit-on-stdin-eof"]
            return EmulatorProcess(name, argv, stdin_lifeline=True)
        gcloud = shutil.which("gcloud") or "gcloud"
        address = f"{host}:{port or free_port(host)}"
        argv = [gcloud, "beta", "emulators", name, "start", f"--host-port={address}"]
        if name == "pubsub":
            argv.append(f"--project={self.project}")
        # The child inherits our environment, minus prompts and update checks that would stall it.
        env = {
            **os.environ,
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        }
        proc = EmulatorProcess(name, argv, env=env)
        proc.address = address
        return proc

    def stop(self) -> None:
        """Stops both (signalled together, so their shutdowns overlap); safe to call twice."""
        running = [p for p in (self.pubsub, self.bigtable) if p is not None]
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.stop()

    def __enter__(self) -> Emulators:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return all(p is not None and p.alive() for p in (self.pubsub, self.bigtable))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in (self.pubsub, self.bigtable) if p is not None]

    @property
    def pubsub_host(self) -> str:
        if self.pubsub is None or self.pubsub.address is None:
            raise EmulatorError("the Pub/Sub emulator is not running")
        return self.pubsub.address

    @property
    def bigtable_host(self) -> str:
        if self.bigtable is None or self.bigtable.address is None:
            raise EmulatorError("the Bigtable emulator is not running")
        return self.bigtable.address

    @property
    def env(self) -> dict[str, str]:
        """The variables that point the official clients (in any process) at these emulators."""
        return {PUBSUB_ENV: self.pubsub_host, BIGTABLE_ENV: self.bigtable_host}

    def export_env(self, environ: MutableMapping[str, str] | None = None) -> dict[str, str | None]:
        """Sets :attr:`env` in ``environ`` (default ``os.environ``); returns the previous values."""
        target = os.environ if environ is None else environ
        previous = {name: target.get(name) for name in self.env}
        target.update(self.env)
        return previous

    @contextlib.contextmanager
    def exported_env(self, environ: MutableMapping[str, str] | None = None) -> Iterator[dict[str, str]]:
        """:meth:`export_env` for the duration of a ``with`` block, then the previous values come back."""
        target = os.environ if environ is None else environ
        previous = self.export_env(target)
        try:
            yield self.env
        finally:
            restore_env(previous, target)


def restore_env(previous: dict[str, str | None], environ: MutableMapping[str, str] | None = None) -> None:
    """Undoes :meth:`Emulators.export_env` given the values it returned."""
    target = os.environ if environ is None else environ
    for name, value in previous.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value


# ---------------------------------------------------------------------------------------------------------------------
# Resources for one test or run


def with_suffix(resources: Resources, suffix: str) -> Resources:
    """The same resources under names ending in ``-<suffix>``: an isolated set for one test or run."""
    tail = f"-{suffix}"
    return replace(
        resources,
        transactions_topic=resources.transactions_topic + tail,
        transactions_subscription=resources.transactions_subscription + tail,
        alerts_topic=resources.alerts_topic + tail,
        alerts_subscription=resources.alerts_subscription + tail,
        dlq_topic=resources.dlq_topic + tail,
        dlq_subscription=resources.dlq_subscription + tail,
        cases_table=resources.cases_table + tail,
        cases_by_time_table=resources.cases_by_time_table + tail,
        sample_table=resources.sample_table + tail,
    )


# ---------------------------------------------------------------------------------------------------------------------
# `fraudscore emulators`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pubsub-port",
        type=int,
        help="Pub/Sub emulator port; 0 picks a free one (default $FRAUDSCORE_PUBSUB_PORT or 8085)",
    )
    parser.add_argument(
        "--bigtable-port",
        type=int,
        help="Bigtable emulator port; 0 picks a free one (default $FRAUDSCORE_BIGTABLE_PORT or 8086)",
    )
    parser.add_argument("--host", help="address to listen on (default $FRAUDSCORE_EMULATOR_HOST or 127.0.0.1)")
    parser.add_argument(
        "--project", help=f"project id of the resources (default $FRAUDSCORE_PROJECT or {DEFAULT_PROJECT})"
    )
    parser.add_argument("--instance", help="Bigtable instance of the tables (default $FRAUDSCORE_BIGTABLE_INSTANCE)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="binaries",
        help="binaries: pstest/bttest built by `make setup` (default); gcloud: `gcloud beta emulators ...`",
    )
    parser.add_argument("--no-create", action="store_true", help="start the emulators empty, create no resources")
    parser.add_argument(
        "--startup-timeout", type=float, help="seconds to wait for each emulator to answer (default 30, gcloud 120)"
    )


def main(args: argparse.Namespace) -> int:
    base = EmulatorConfig.from_env()
    config = replace(
        base,
        host=args.host or base.host,
        pubsub_port=base.pubsub_port if args.pubsub_port is None else args.pubsub_port,
        bigtable_port=base.bigtable_port if args.bigtable_port is None else args.bigtable_port,
    )
    resources = Resources.from_env()
    resources = replace(
        resources,
        project=args.project or resources.project,
        bigtable_instance=args.instance or resources.bigtable_instance,
    )
    stop = threading.Event()
    previous = on_stop_signals(stop.set)
    emulators = Emulators(config, backend=args.backend, project=resources.project, startup_timeout=args.startup_timeout)
    try:
        with emulators, emulators.exported_env():
            if not args.no_create:
                create_resources(resources)
            _print_status(emulators, resources, created=not args.no_create)
            while not stop.wait(0.5):
                if not emulators.alive():
                    dead = [p for p in (emulators.pubsub, emulators.bigtable) if p is not None and not p.alive()]
                    for proc in dead:
                        say(f"{proc.name} emulator exited ({proc.popen.returncode}):\n{proc.output_tail()}", err=True)
                    return 1
            say("stopping emulators")
    except EmulatorError as exc:
        say(f"error: {exc}", err=True)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _print_status(emulators: Emulators, resources: Resources, *, created: bool) -> None:
    assert emulators.pubsub is not None and emulators.bigtable is not None
    lines = [
        f"Pub/Sub emulator   {emulators.pubsub_host}  (pid {emulators.pubsub.pid}, {emulators.backend})",
        f"Bigtable emulator  {emulators.bigtable_host}  (pid {emulators.bigtable.pid}, {emulators.backend})",
        "",
        "Point other shells at them:",
        *(f"  export {name}={value}" for name, value in emulators.env.items()),
    ]
    if resources.project != DEFAULT_PROJECT:
        lines.append(f"  export FRAUDSCORE_PROJECT={resources.project}")
    lines += ["", f"Resources in project {resources.project}" + ("" if created else " (not created: --no-create)")]
    lines += [f"  {line}" for line in describe_resources(resources)]
    lines += ["", "Press Ctrl-C to stop."]
    print("\n".join(lines), flush=True)
