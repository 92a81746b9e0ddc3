"""The dashboard and the alert rules, evaluated on a real Prometheus scraping real services.

A short bounded run: the emulators (conftest), ``fraudscore serve``,
``fraudscore stream`` and ``fraudscore publish`` as subprocesses on free
ports, requests scored by hand through ``fraudscore score``, and Debian's
Prometheus (scrape and rule evaluation every second) with deploy/prometheus's
configuration and rules. Then every PromQL expression of the Grafana dashboard
and of the rule file must evaluate without error through the HTTP API, every
rule must be healthy in Prometheus' own evaluation, and the alert-rate and
throughput panels must return data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fraudscore.config import Resources
from fraudscore.dev.demo import DemoConfig, write_prometheus_config
from fraudscore.dev.emulators import Emulators
from fraudscore.dev.processes import free_port, stop_group
from tests.deploy_support import dashboard_queries, rule_expressions, variable_queries

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 240.0  # TensorFlow + Beam start-up on 2 shared cores dominates
# Panels that must show data after the run: the alert rate and the throughput.
MUST_HAVE_DATA = (
    "Alerts / min",
    "Flagged share",
    "Transactions / s",
    "Flagged per minute by reason",
    "Flagged share of transactions",
    "Transactions / s by outcome",
    "Scorer requests / s by status",
    "Analyst feedback: cases in the label window by verdict",
)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        stop_group(self.popen, signal.SIGINT)


class Procs:
    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self.started: list[Proc] = []

    def start(self, name: str, argv: list[str]) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def _fraudscore(*args: str) -> list[str]:
    return [sys.executable, "-m", "fraudscore.cli", *args]


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class PromAPI:
    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, expr: str) -> dict[str, Any]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            return _get(url)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:  # 400/422 carry Prometheus' error as JSON
            return json.loads(exc.read())  # type: ignore[no-any-return]

    def values(self, expr: str) -> list[float]:
        reply = self.query(expr)
        assert reply["status"] == "success", f"{expr}: {reply.get('error')}"
        data = reply["data"]
        if data["resultType"] == "scalar":
            return [float(data["result"][1])]
        return [float(item["value"][1]) for item in data["result"]]


def _wait(what: str, check: Callable[[], bool], deadline: float, procs: Procs) -> None:
    while not check():
        for proc in procs.started:
            if proc.name != "score" and proc.popen.poll() not in (None, 0):
                pytest.fail(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs.started)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(1.0)


@pytest.fixture
def running_system(
    tmp_path: Path, emulators: Emulators, unique_resources: Resources, trained_model_base: Path
) -> Iterator[tuple[PromAPI, Procs]]:
    from fraudscore.dev.generate import generate_frame, write_csv

    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is not installed (make setup)"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, **emulators.env, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = Procs(logs, env)
    config = DemoConfig(
        data_dir=tmp_path,
        scorer_port=free_port(),
        scorer_metrics_port=free_port(),
        stream_metrics_port=free_port(),
        prometheus_port=free_port(),
    )
    # deploy/prometheus/prometheus.yml with these ports (the demo's own rewrite), scraped every second.
    prom_config = write_prometheus_config(config)
    data = yaml.safe_load(prom_config.read_text())
    data["global"].update(scrape_interval="1s", evaluation_interval="1s")
    prom_config.write_text(yaml.safe_dump(data))

    # A small sample with fraud bursts; its own seed so it is not the training data.
    csv_path = tmp_path / "stream.csv"
    write_csv(generate_frame(1_500, 0.03, 7), csv_path)

    r = unique_resources
    try:
        procs.start("prometheus", [
            prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{config.prometheus_port}",
        ])  # fmt: skip
        procs.start("scorer", _fraudscore(
            "serve", "--model-base", str(trained_model_base), "--port", str(config.scorer_port),
            "--metrics-port", str(config.scorer_metrics_port),
        ))  # fmt: skip
        procs.start("stream", _fraudscore(
            "stream", "--model-base", str(trained_model_base), "--project", r.project,
            "--transactions-topic", r.transactions_topic, "--transactions-subscription", r.transactions_subscription,
            "--alerts-topic", r.alerts_topic, "--dlq-topic", r.dlq_topic, "--cases-table", r.cases_table,
            "--cases-by-time-table", r.cases_by_time_table, "--bigtable-instance", r.bigtable_instance,
            "--metrics-port", str(config.stream_metrics_port), "--label-metrics-interval", "1",
        ))  # fmt: skip
        api = PromAPI(f"http://127.0.0.1:{config.prometheus_port}")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        _wait("both targets up", lambda: _targets_up(api) == {"fraudscore-scorer", "fraudscore-stream"}, deadline,
              procs)  # fmt: skip
        # 1,500 rows over ~25 s of event time: bursts stay inside the card windows.
        procs.start("publisher", _fraudscore(
            "publish", "--data", str(csv_path), "--project", r.project, "--topic", r.transactions_topic,
            "--rate", "100", "--speedup", str(172_800 / 25),
        ))  # fmt: skip
        procs.start("score", _fraudscore(
            "score", "--target", f"127.0.0.1:{config.scorer_port}", "--csv", str(csv_path), "--limit", "300",
            "--batch-size", "50",
        ))  # fmt: skip
        _wait("transactions scored by the stream", lambda: _sum(api, "fraudscore_stream_transactions_total") >= 500,
              deadline, procs)  # fmt: skip
        _wait("a flagged case", lambda: _sum(api, "fraudscore_stream_flagged_total") > 0, deadline, procs)
        # The stream's label scan (every second here) counts the cases it wrote to Bigtable.
        _wait("the label scan counted cases", lambda: _sum(api, "fraudscore_label_window_cases") > 0, deadline, procs)
        _wait("requests scored by hand", lambda: _sum(api, "fraudscore_scorer_requests_total") > 0, deadline, procs)
        # Rates need two samples of a series: alerts are published a moment after their cases are flagged.
        _wait("data in every must-have panel", lambda: not _panels_without_data(api), deadline, procs)
        # The rules must have run over the counts just seen: a scrape of both targets, then an evaluation of
        # every rule group, both after this moment.
        seen = time.time()
        _wait("a scrape of both targets after the counts", lambda: _scraped_after(api, seen) is not None, deadline,
              procs)  # fmt: skip
        scraped = _scraped_after(api, seen)
        assert scraped is not None
        _wait("a rule evaluation after that scrape", lambda: _evaluated_after(api, scraped), deadline, procs)
        yield api, procs
    finally:
        procs.stop_all()


def _targets_up(api: PromAPI) -> set[str]:
    try:
        reply = api.query('up{job=~"fraudscore-.*"} == 1')
    except OSError:
        return set()
    return {item["metric"]["job"] for item in reply.get("data", {}).get("result", [])}


def _panels_without_data(api: PromAPI) -> list[str]:
    return [
        where
        for where, expr in dashboard_queries()
        if any(f"panel {title!r}" in where for title in MUST_HAVE_DATA) and not api.values(expr)
    ]


def _scraped_after(api: PromAPI, moment: float) -> float | None:
    """When the later of both targets' last scrapes was, once both were scraped after ``moment``; else None."""
    try:
        targets = _get(f"{api.base}/api/v1/targets")["data"]["activeTargets"]
    except OSError:
        return None
    scrapes = [_epoch(t["lastScrape"]) for t in targets if t["labels"]["job"].startswith("fraudscore-")]
    return max(scrapes) if len(scrapes) >= 2 and min(scrapes) > moment else None


def _evaluated_after(api: PromAPI, moment: float) -> bool:
    """Every rule group's last evaluation started after ``moment``.

    Asked in two steps (scrape, then evaluation) because each API reply shows only the latest scrape and
    evaluation: "an evaluation after the latest scrape" holds only between an evaluation and the next scrape,
    a window a poll every second can miss for ever when both run every second.
    """
    try:
        groups = _get(f"{api.base}/api/v1/rules")["data"]["groups"]
    except OSError:
        return False
    return bool(groups) and all(_epoch(g.get("lastEvaluation", "")) > moment for g in groups)


def _epoch(rfc3339: str) -> float:
    """Prometheus' RFC 3339 timestamps (nanosecond fractions, "Z" or an offset) as epoch seconds; 0 for none."""
    from datetime import datetime

    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", rfc3339)
    if match is None or rfc3339.startswith("0001-"):
        return 0.0
    head, fraction, zone = match.groups()
    return datetime.fromisoformat(head + ("+00:00" if zone == "Z" else zone)).timestamp() + float(fraction or 0)


def _sum(api: PromAPI, metric: str) -> float:
    try:
        values = api.values(f"sum({metric})")
    except (OSError, AssertionError):
        return 0.0
    return values[0] if values else 0.0


def test_dashboard_and_rules_evaluate_on_real_prometheus(running_system: tuple[PromAPI, Procs]) -> None:
    api, _ = running_system
    queries = [*dashboard_queries(), *variable_queries(), *rule_expressions()]
    errors = {where: api.query(expr).get("error") for where, expr in queries}
    assert not {w: e for w, e in errors.items() if e}, "PromQL errors"

    empty = _panels_without_data(api)
    assert not empty, f"panels without data: {empty}"
    # The throughput stat shows a real rate, not just a series.
    throughput = dict(dashboard_queries())["panel 'Transactions / s' A"]
    assert api.values(throughput)[0] > 0
    # The dashboard's job variable lists both services.
    jobs = {item["metric"]["job"] for item in api.query(dict(variable_queries())["variable job"])["data"]["result"]}
    assert jobs == {"fraudscore-scorer", "fraudscore-stream"}

    # Prometheus' own evaluation of the rule file: every rule loaded and healthy.
    groups = _get(f"{api.base}/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == {name.split(" ", 1)[1] for name, _ in rule_expressions()}
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not unhealthy
    # The recorded alert rate (the series the demo points users at) exists for the stream job.
    recorded = api.query("job:fraudscore_stream_alerts:rate5m")["data"]["result"]
    assert [item["metric"]["job"] for item in recorded] == ["fraudscore-stream"]
