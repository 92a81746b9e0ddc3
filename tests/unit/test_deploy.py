"""Static checks of deploy/: Prometheus config and rules, the Grafana dashboard, Kubernetes, docker-compose.

Each check runs the real tool where one exists (promtool, docker-compose) and
compares names against the real code: metric names against the registries
the scorer and the stream create, command lines against the real CLI parser,
probe ports and health service names against the scorer. No tool is optional:
a missing promtool or docker-compose fails (``make setup`` installs both).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_support import (
    DASHBOARD,
    PROM_DIR,
    ROOT,
    dashboard_queries,
    known_metric_names,
    metric_names_in,
    rule_expressions,
)

COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy/k8s"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (make setup installs it through apt)"
    return path


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


# ---------------------------------------------------------------------------------------------------------------------
# Prometheus


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_promtool_check_config(config: str) -> None:
    result = _run([_tool("promtool"), "check", "config", config], PROM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules() -> None:
    result = _run([_tool("promtool"), "check", "rules", "rules.yml"], PROM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests() -> None:
    """Synthetic series in rules_test.yml make each alert fire (and not fire) when it should."""
    result = _run([_tool("promtool"), "test", "rules", "rules_test.yml"], PROM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        t["alertname"]
        for case in yaml.safe_load((PROM_DIR / "rules_test.yml").read_text())["tests"]
        for t in case.get("alert_rule_test", [])
    }
    alerts = {
        r["alert"]
        for g in yaml.safe_load((PROM_DIR / "rules.yml").read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    # Every alert about fraudscore's own metrics has a firing case (target-down and errors are generic).
    assert alerts - tested <= {"FraudscoreTargetDown", "ScorerErrors"}, alerts - tested


def test_scrape_jobs_name_the_services() -> None:
    for config in ("prometheus.yml", "prometheus-compose.yml"):
        jobs = {c["job_name"] for c in yaml.safe_load((PROM_DIR / config).read_text())["scrape_configs"]}
        assert {"fraudscore-scorer", "fraudscore-stream"} <= jobs, config


def test_local_scrape_targets_are_the_default_metrics_ports() -> None:
    """prometheus.yml scrapes the ports that `fraudscore serve` and `fraudscore demo` use by default."""
    from fraudscore.cli import build_parser

    targets = {
        c["job_name"]: c["static_configs"][0]["targets"][0]
        for c in yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())["scrape_configs"]
    }
    serve = build_parser("serve").parse_args(["serve", "--model-base", "m"])
    assert targets["fraudscore-scorer"] == f"127.0.0.1:{serve.metrics_port}"
    demo = build_parser("demo").parse_args(["demo"])
    assert targets["fraudscore-scorer"] == f"127.0.0.1:{demo.scorer_metrics_port}"
    assert targets["fraudscore-stream"] == f"127.0.0.1:{demo.stream_metrics_port}"
    assert targets["prometheus"] == f"127.0.0.1:{demo.prometheus_port}"


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    known = known_metric_names()
    assert "fraudscore_scorer_requests_total" in known and "fraudscore_stream_transactions_total" in known
    recorded = {
        r["record"]
        for g in yaml.safe_load((PROM_DIR / "rules.yml").read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    for where, expr in [*rule_expressions(), *dashboard_queries()]:
        names = metric_names_in(expr)
        uses = set(re.findall(r"\b[a-z_]+:[a-z0-9_:]+\b", expr))
        assert uses <= recorded, f"{where}: undefined recording rules {sorted(uses - recorded)}"
        scrape_health = 'up{job=~"fraudscore-' in expr  # Prometheus' own per-target series
        assert names or uses or scrape_health, f"{where}: no fraudscore metric in {expr!r}"
        assert names <= known, f"{where}: unknown metrics {sorted(names - known)}"


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """promtool parses every dashboard query, once Grafana's variables are substituted."""
    rules = [{"record": f"dashboard:q{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run([_tool("promtool"), "check", "rules", str(path)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Grafana


def _panels() -> Iterator[dict[str, Any]]:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_panels_have_queries_units_and_thresholds() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in _panels() if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "duplicate panel titles"
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        if panel["type"] in ("timeseries", "stat"):
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
    coloured = [p["title"] for p in _panels() if p["fieldConfig"]["defaults"].get("thresholds")]
    assert len(coloured) >= 6, coloured
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= set(variables)
    for panel in _panels():
        for target in panel.get("targets", []):
            # Every series selector is narrowed by the job and instance variables.
            for selector in re.findall(r"fraudscore_[a-z0-9_]+\{([^}]*)\}", target["expr"]):
                assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, target["expr"]


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels():
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_covers_what_operations_watch() -> None:
    """The issue's list: alert rate and share, throughput, dead letters, latency, status codes, batch sizes,
    reconstruction error, skew, model version."""
    used: set[str] = set()
    for _, expr in dashboard_queries():
        used |= metric_names_in(expr)
    assert {
        "fraudscore_stream_alerts_published_total",
        "fraudscore_stream_cases_opened_total",
        "fraudscore_stream_cases_escalated_total",
        "fraudscore_stream_case_members_total",
        "fraudscore_stream_flagged_total",
        "fraudscore_stream_transactions_total",
        "fraudscore_stream_dead_letters_total",
        "fraudscore_scorer_request_latency_seconds_bucket",
        "fraudscore_scorer_requests_total",
        "fraudscore_scorer_batch_size_bucket",
        "fraudscore_reconstruction_error_bucket",
        "fraudscore_out_of_range_features_total",
        "fraudscore_model_info",
    } <= used


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    grafana = ROOT / "deploy/grafana"
    datasource = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    dashboard = json.loads(DASHBOARD.read_text())
    ds_var = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert datasource["type"] == "prometheus" and ds_var["current"]["value"] == datasource["uid"]
    provider = yaml.safe_load((grafana / "provisioning/dashboards/fraudscore.yml").read_text())["providers"][0]
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["volumes"]}
    assert (ROOT / mounts[provider["options"]["path"]]).resolve() == DASHBOARD.parent.resolve()
    assert datasource["url"].startswith("http://prometheus:")


# ---------------------------------------------------------------------------------------------------------------------
# Kubernetes


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _manifests() if d["kind"] == kind]


def test_k8s_manifests_parse_and_are_listed_in_kustomization() -> None:
    kinds = {d["kind"] for d in _manifests()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_scorer_probes_and_ports_match_the_scorer() -> None:
    from fraudscore.cli import build_parser
    from scorer.server import SERVICE

    (deployment,) = _by_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve"
    args = build_parser("serve").parse_args(container["args"])  # the real flags, or SystemExit
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": args.port, "metrics": args.metrics_port}
    defaults = build_parser("serve").parse_args(["serve", "--model-base", "m"])
    assert (args.port, args.metrics_port) == (defaults.port, defaults.metrics_port)
    assert args.host == "0.0.0.0", "the probes and the Service reach the pod IP, not loopback"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc_probe = container[probe]["grpc"]
        assert grpc_probe["port"] == args.port, probe
        # "" is the server as a whole; the scorer also reports health under its service name.
        assert grpc_probe.get("service", "") in ("", SERVICE), probe
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    volumes = {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert args.model_base.startswith("/app/models/") and mounts["/app/models"] in volumes
    # Drain (delay + grace) fits in the pod's termination period.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert args.grace + args.drain_delay < grace


def test_k8s_service_hpa_pdb_select_the_scorer() -> None:
    (deployment,) = _by_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    for service in _by_kind("Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports or port["targetPort"] in ports.values(), port
    (hpa,) = _by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (pdb,) = _by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a PDB as large as the minimum blocks drains"


# ---------------------------------------------------------------------------------------------------------------------
# docker-compose and the Dockerfile


def _compose() -> dict[str, Any]:
    result = _run([_tool("docker-compose"), "-f", str(COMPOSE), "config"], ROOT)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_accepts_the_file() -> None:
    services = _compose()["services"]
    assert {"pubsub", "bigtable", "init", "trainer", "scorer", "stream", "publisher", "prometheus", "grafana"} <= set(
        services
    )
    assert services["publisher"].get("profiles") == ["publisher"]


def test_compose_services_have_health_checks_and_ordered_dependencies() -> None:
    services = _compose()["services"]
    one_shot = {name for name, s in services.items() if s.get("restart", "no") == "no" and "healthcheck" not in s}
    assert one_shot == {"init", "trainer"}, one_shot
    for name, service in services.items():
        if name not in one_shot and name != "publisher":
            assert service["healthcheck"]["test"], name
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            assert spec["condition"] == expected, f"{name} -> {dependency}"
    assert services["scorer"]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert {"init", "trainer"} <= set(services["stream"]["depends_on"])
    assert services["publisher"]["depends_on"]["stream"]["condition"] == "service_healthy"


def test_compose_commands_parse_with_the_real_cli() -> None:
    """Every fraudscore service's command line is accepted by `fraudscore`'s own parser."""
    from fraudscore.cli import COMMANDS, build_parser

    services = _compose()["services"]
    checked = 0
    for service in services.values():
        if "build" not in service:
            continue
        command = service.get("command")
        if isinstance(command, list) and command and command[0] in COMMANDS:
            build_parser(command[0]).parse_args(command)
            checked += 1
        for line in re.findall(r"fraudscore ([a-z]+ [^;&|)]*)", " ".join(command or []) if command else ""):
            argv = line.split()
            if argv[0] in COMMANDS:
                build_parser(argv[0]).parse_args(argv)
                checked += 1
    assert checked >= 5, checked


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2
    final = text[text.rindex("\nFROM ") :]
    assert re.search(r"^USER\s+(?!root|0\b)\S+", final, flags=re.MULTILINE), "the final stage must not run as root"
    assert "requirements.lock" in text and "COPY --from=builder" in final
    assert "pip install" not in final, "the final stage copies the built virtualenv, it installs nothing"
    for package in ("fraudscore", "trainer", "scorer", "stream"):
        assert f"COPY {package} " in text, package


def test_compose_trainer_trains_on_the_real_sample_the_image_carries() -> None:
    """The one-shot trainer trains on the shipped real sample, which the image holds (and only that of samples/)."""
    sample = "samples/creditcard-real-dev.csv.gz"
    assert (ROOT / sample).is_file()
    command = " ".join(_compose()["services"]["trainer"]["command"])
    assert f"fraudscore train --data {sample} --model-base models/creditcard" in command
    assert "generate" not in command
    final = (ROOT / "Dockerfile").read_text().split("\nFROM ")[-1]
    copied = re.search(r"^COPY (?:--chown=\S+ )?(.*) /app/samples/$", final, flags=re.MULTILINE)
    assert copied and sample in copied.group(1).split(), "the final stage copies the sample into /app/samples"
    assert re.search(r"^WORKDIR /app$", final, flags=re.MULTILINE), "the trainer's relative path starts at /app"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert f"!{sample}" in ignore and "!samples/" not in ignore, "the build context lets in the sample, nothing more"


# ---------------------------------------------------------------------------------------------------------------------
# Dataflow


def test_dataflow_launch_command_parses_with_the_real_cli() -> None:
    """deploy/dataflow/launch.sh's `fraudscore stream` line, with its shell variables filled in."""
    import shlex

    from fraudscore.cli import build_parser

    script = (ROOT / "deploy/dataflow/launch.sh").read_text()
    command = script[script.index("exec fraudscore stream") :].split('"$@"')[0]
    argv = shlex.split(re.sub(r'"\$[A-Z_]+"|\$[A-Z_]+', "x", command.replace("\\\n", " ")))[2:]
    args = build_parser("stream").parse_args(argv)
    assert args.runner == "DataflowRunner" and args.metrics_port == 0 and args.id_label == "transaction_id"
    for script_name in ("launch.sh", "create_resources.sh"):
        result = _run(["bash", "-n", script_name], ROOT / "deploy/dataflow")
        assert result.returncode == 0, result.stderr
