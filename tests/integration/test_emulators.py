"""The local emulators with the official clients: the foundation every other integration test stands on."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from google.cloud import bigtable
from google.cloud.bigtable import column_family as cf
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

from fraudscore.config import ColumnFamily, EmulatorConfig, Resources
from fraudscore.dev.emulators import (
    BIGTABLE_ENV,
    PUBSUB_ENV,
    Emulators,
    EmulatorStartError,
    with_suffix,
)
from fraudscore.resources import close_bigtable_client, create_resources, gc_rule

pytestmark = [
    pytest.mark.integration,
    # google-cloud-bigtable announces every emulator connection as a RuntimeWarning.
    pytest.mark.filterwarnings("ignore:Connecting to Bigtable emulator:RuntimeWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
FRAUDSCORE = ROOT / ".venv" / "bin" / "fraudscore"


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def bigtable_client(emulators: Emulators, resources: Resources) -> Iterator[bigtable.Client]:
    client = bigtable.Client(project=resources.project, admin=True)
    yield client
    close_bigtable_client(client)


# ---------------------------------------------------------------------------------------------------------------------
# The session fixture itself


def test_fixture_exports_the_emulator_addresses(emulators: Emulators) -> None:
    assert os.environ[PUBSUB_ENV] == emulators.pubsub_host
    assert os.environ[BIGTABLE_ENV] == emulators.bigtable_host
    assert emulators.env == {PUBSUB_ENV: emulators.pubsub_host, BIGTABLE_ENV: emulators.bigtable_host}
    assert emulators.alive()


def test_default_resources_exist(emulators: Emulators, resources: Resources, bigtable_client: bigtable.Client) -> None:
    with PublisherClient() as publisher:
        topics = {t.name for t in publisher.list_topics(request={"project": f"projects/{resources.project}"})}
    assert {resources.topic_path(t) for t in ("transactions", "fraud-alerts", "transactions-dlq")} <= topics
    with SubscriberClient() as subscriber:
        for topic, subscription in resources.topic_subscriptions.items():
            sub = subscriber.get_subscription(request={"subscription": resources.subscription_path(subscription)})
            assert sub.topic == resources.topic_path(topic)
            assert sub.ack_deadline_seconds == 60
    tables = {t.table_id for t in bigtable_client.instance(resources.bigtable_instance).list_tables()}
    assert set(resources.tables) <= tables


def test_unique_resources_do_not_collide(unique_resources: Resources, resources: Resources) -> None:
    ours = {*unique_resources.topic_subscriptions.items(), *unique_resources.tables}
    default = {*resources.topic_subscriptions.items(), *resources.tables}
    assert not ours & default
    assert unique_resources.project == resources.project


# ---------------------------------------------------------------------------------------------------------------------
# Pub/Sub


def test_pubsub_publish_pull_ack_round_trip(unique_resources: Resources) -> None:
    topic = unique_resources.topic_path(unique_resources.transactions_topic)
    subscription = unique_resources.subscription_path(unique_resources.transactions_subscription)
    payloads = [(f'{{"transactionId": "t-{i}"}}'.encode(), {"source": "test", "seq": str(i)}) for i in range(3)]
    with PublisherClient() as publisher:
        ids = [publisher.publish(topic, data, **attrs).result(timeout=10) for data, attrs in payloads]
    assert len(set(ids)) == 3

    with SubscriberClient() as subscriber:
        received: list[Any] = []
        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:
            response = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=5)
            received += response.received_messages
        got = sorted((m.message.data, dict(m.message.attributes)) for m in received)
        assert got == sorted(payloads)
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]})
        # Acked messages are not redelivered.
        again = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=5)
        assert list(again.received_messages) == []


# ---------------------------------------------------------------------------------------------------------------------
# Bigtable


def test_bigtable_write_read_and_gc_rule(unique_resources: Resources, bigtable_client: bigtable.Client) -> None:
    table = bigtable_client.instance(unique_resources.bigtable_instance).table(unique_resources.cases_table)
    families = table.list_column_families()
    declared = {f.name: f for f in unique_resources.tables[unique_resources.cases_table]}
    assert set(families) == set(declared)
    for name, family in declared.items():
        assert families[name].gc_rule == gc_rule(family)

    # "decision" keeps at most 5 versions; write 8 and read them back.
    max_versions = declared["decision"].max_versions
    start = datetime(2026, 1, 1, tzinfo=UTC)
    row = table.direct_row(b"card-1#case-1")
    row.set_cell("case", b"amount", b"12.50", timestamp=start)
    for i in range(max_versions + 3):
        row.set_cell("decision", b"label", f"v{i}".encode(), timestamp=start + timedelta(seconds=i))
    row.commit()

    data = table.read_row(b"card-1#case-1")
    assert data is not None
    assert data.cells["case"][b"amount"][0].value == b"12.50"
    assert data.cells["decision"][b"label"][0].value == f"v{max_versions + 2}".encode()  # newest first

    # bttest starts its garbage collector (a pass about every second) on the first ModifyColumnFamilies
    # call, not on CreateTable: re-apply the declared rule, then watch it trim the old versions.
    table.column_family("decision", gc_rule=gc_rule(declared["decision"])).update()
    deadline = time.monotonic() + 10
    while len(data.cells["decision"][b"label"]) > max_versions and time.monotonic() < deadline:
        time.sleep(0.3)
        data = table.read_row(b"card-1#case-1")
        assert data is not None
    versions = [c.value for c in data.cells["decision"][b"label"]]
    assert versions == [f"v{i}".encode() for i in range(max_versions + 2, 2, -1)]


def test_create_resources_is_idempotent(emulators: Emulators, resources: Resources) -> None:
    fresh = with_suffix(resources, f"idem-{os.getpid()}-{time.monotonic_ns()}")
    first = create_resources(fresh)
    second = create_resources(fresh)
    assert len(first.created) == 2 * len(fresh.topic_subscriptions) + len(fresh.tables)
    assert first.existing == [] and first.updated == []
    assert sorted(second.existing) == sorted(first.created)
    assert second.created == [] and second.updated == []


def test_create_resources_repairs_an_existing_table(
    unique_resources_factory: Any, bigtable_client: bigtable.Client
) -> None:
    fresh = unique_resources_factory("repair")
    table = bigtable_client.instance(fresh.bigtable_instance).table(fresh.cases_by_time_table)
    # Someone changed the GC rule by hand; a family added to the schema since is missing.
    table.column_family("ref", gc_rule=cf.MaxVersionsGCRule(3)).update()
    wanted = (ColumnFamily("ref", max_versions=1), ColumnFamily("audit", max_versions=2, max_age_days=30))

    class Evolved(Resources):
        @property
        def tables(self) -> dict[str, tuple[ColumnFamily, ...]]:
            return {self.cases_by_time_table: wanted}

    evolved = Evolved(**asdict(fresh))
    report = create_resources(evolved)
    assert f"{table.name}/columnFamilies/ref" in report.updated
    assert f"{table.name}/columnFamilies/audit" in report.created
    families = table.list_column_families()
    assert families["ref"].gc_rule == cf.MaxVersionsGCRule(1)
    assert families["audit"].gc_rule == cf.GCRuleUnion([cf.MaxVersionsGCRule(2), cf.MaxAgeGCRule(timedelta(days=30))])


# ---------------------------------------------------------------------------------------------------------------------
# Lifecycle


def test_start_stop_leaves_no_process() -> None:
    emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0))
    with emulators:
        pids = emulators.pids
        assert len(pids) == 2 and all(not _pid_gone(pid) for pid in pids)
        host, port = emulators.pubsub_host.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=2).close()
    assert all(_pid_gone(pid) for pid in pids)
    emulators.stop()  # a second stop is harmless


def test_exception_inside_with_block_still_stops() -> None:
    emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0))
    with pytest.raises(RuntimeError, match="boom"), emulators:
        pids = emulators.pids
        raise RuntimeError("boom")
    assert all(_pid_gone(pid) for pid in pids)


def test_atexit_stops_emulators_a_program_forgot() -> None:
    program = (
        "from fraudscore.config import EmulatorConfig\n"
        "from fraudscore.dev.emulators import Emulators\n"
        "emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0)).start()\n"
        "print(*emulators.pids)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pids = [int(p) for p in result.stdout.split()]
    assert len(pids) == 2
    assert all(_pid_gone(pid) for pid in pids)


def test_emulators_exit_when_their_launcher_is_killed() -> None:
    # SIGKILL skips atexit; the stdin lifeline is what stops the emulators then.
    program = (
        "import sys, time\n"
        "from fraudscore.config import EmulatorConfig\n"
        "from fraudscore.dev.emulators import Emulators\n"
        "emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0)).start()\n"
        "print(*emulators.pids, flush=True)\n"
        "time.sleep(120)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout is not None
        pids = [int(p) for p in launcher.stdout.readline().split()]
        assert len(pids) == 2 and all(not _pid_gone(pid) for pid in pids)
    finally:
        launcher.kill()
        launcher.wait()
    # Orphans are reaped by init, not by us: allow it a moment.
    deadline = time.monotonic() + 15
    while not all(_pid_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_pid_gone(pid) for pid in pids), [_proc_state(pid) for pid in pids]


def test_exported_env_is_restored(emulators: Emulators) -> None:
    environ = {PUBSUB_ENV: "elsewhere:1"}
    with emulators.exported_env(environ) as env:
        assert environ == env
    assert environ == {PUBSUB_ENV: "elsewhere:1"}


def test_port_in_use_gives_an_error_with_the_emulator_output() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        emulators = Emulators(EmulatorConfig(pubsub_port=port, bigtable_port=0), startup_timeout=10)
        with pytest.raises(EmulatorStartError) as err:
            emulators.start()
    assert err.value.name == "pubsub"
    assert "exited with code" in str(err.value)
    assert "address already in use" in str(err.value)  # pstest's own stderr
    assert all(_pid_gone(pid) for pid in emulators.pids)


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed")
def test_gcloud_backend(tmp_path: Path) -> None:
    emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0), backend="gcloud")
    environ: dict[str, str] = {}
    with emulators:
        pids = emulators.pids
        environ.update(emulators.env)
        assert emulators.alive()
    assert all(_pid_gone(pid) for pid in pids)
    # gcloud runs the real server as its child; stopping the process group takes that down too.
    for address in environ.values():
        host, port = address.rsplit(":", 1)
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=1).close()


# ---------------------------------------------------------------------------------------------------------------------
# `fraudscore emulators`


def _lines(stream: IO[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_prints_status_serves_and_stops_on_signal(
    stop_signal: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = subprocess.Popen(
        [str(FRAUDSCORE), "emulators", "--pubsub-port", "0", "--bigtable-port", "0", "--project", "fraud-cli-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines(proc.stdout)  # type: ignore[arg-type]
        status: list[str] = []
        while not status or "Press Ctrl-C" not in status[-1]:
            try:
                status.append(lines.get(timeout=60))
            except queue.Empty:
                pytest.fail(f"no status block; got {status}, stderr {proc.stderr.read() if proc.poll() else ''}")
        text = "".join(status)
        env = dict(re.findall(r"export (\w+)=(\S+)", text))
        pids = [int(p) for p in re.findall(r"\(pid (\d+)", text)]
        assert set(env) == {PUBSUB_ENV, BIGTABLE_ENV, "FRAUDSCORE_PROJECT"} and len(pids) == 2
        assert "transactions-dlq" in text and "flagged-by-time" in text

        monkeypatch.setenv(PUBSUB_ENV, env[PUBSUB_ENV])
        monkeypatch.setenv(BIGTABLE_ENV, env[BIGTABLE_ENV])
        cli_resources = Resources(project="fraud-cli-test")
        with PublisherClient() as publisher:
            topics = {t.name for t in publisher.list_topics(request={"project": "projects/fraud-cli-test"})}
        assert topics == {cli_resources.topic_path(t) for t in cli_resources.topic_subscriptions}
        client = bigtable.Client(project=cli_resources.project, admin=True)
        tables = {t.table_id for t in client.instance(cli_resources.bigtable_instance).list_tables()}
        close_bigtable_client(client)
        assert tables == set(cli_resources.tables)

        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()  # type: ignore[union-attr]
        assert all(_pid_gone(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_reports_a_startup_failure() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(FRAUDSCORE), "emulators", "--pubsub-port", "0", "--bigtable-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "bigtable emulator exited" in result.stderr and "address already in use" in result.stderr
