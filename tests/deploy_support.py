"""Shared by the deploy checks (unit) and the dashboard run (integration): where the files are,
which PromQL they hold, and which metric names the real services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "deploy/prometheus"
DASHBOARD = ROOT / "deploy/grafana/dashboards/fraud.json"

# A raw metric name: not the tail of a recording rule's name (``job:fraudscore_...``).
_METRIC = re.compile(r"(?<![:\w])(fraudscore_[a-z0-9_]+)")
# Grafana's built-in and dashboard variables, as they are when "All" is chosen.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$job": ".*", "$instance": ".*"}


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    values = {**GRAFANA_VARIABLES, **(variables or {})}
    # Longest names first, so $__rate_interval is not read as $__r...
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def dashboard_queries(variables: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable, variables substituted."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    panels = [*dashboard["panels"], *(p for top in dashboard["panels"] for p in top.get("panels", []))]
    for panel in panels:
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {target['refId']}", substitute(target["expr"], variables)))
    return queries


def variable_queries(variables: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The series selectors inside the dashboard's ``label_values(selector, label)`` variables."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
        assert match, f"variable {var['name']}: unexpected query {query!r}"
        out.append((f"variable {var['name']}", substitute(match.group(1), variables)))
    return out


def rule_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load((PROM_DIR / "rules.yml").read_text())["groups"]
    return [(f"rule {rule.get('record') or rule.get('alert')}", rule["expr"]) for g in groups for rule in g["rules"]]


def metric_names_in(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def known_metric_names() -> set[str]:
    """Every series name the scorer's and the stream's Prometheus registries export.

    Read from the registries the real code builds (families without samples
    still have a name and type), expanded as the text exposition names them.
    """
    from prometheus_client import REGISTRY

    import stream.metrics  # registers the stream's metrics on the default registry
    from scorer.metrics import ScorerMetrics

    assert stream.metrics.NAMESPACE
    names: set[str] = set()
    for registry in (ScorerMetrics().registry, REGISTRY):
        for family in registry.collect():
            if not family.name.startswith("fraudscore_"):
                continue
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
            else:
                names.add(family.name)
    return names
