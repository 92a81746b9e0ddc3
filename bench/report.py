"""Renders the README's benchmark tables from bench/results/*.json.

`python -m bench.report` prints Markdown; the README's tables are pasted from
it, so every figure there traces back to a results file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.scorer import columns_table

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def train_table(d: dict[str, Any]) -> str:
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in d["stages_seconds"].items())
    return "\n".join(
        [
            "| rows | wall | peak RSS | goal | stages |",
            "| ---: | ---: | ---: | --- | --- |",
            f"| {d['rows']:,} | {d['wall_seconds']:.1f} s | {d['peak_rss_gb']:.2f} GB "
            f"| < {d['goal']['wall_seconds']:.0f} s, < {d['goal']['peak_rss_gb']:.0f} GB | {stages} |",
        ]
    )


def scorer_table(d: dict[str, Any]) -> str:
    floor = {r["concurrency"]: r for r in d["runs"] if r["label"] == "floor"}
    lines = [
        "| variant | clients | calls/s | rows/s | p50 ms | p99 ms | calls/s vs floor | p99 vs floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in d["runs"]:
        base = floor.get(r["concurrency"]) if r["mode"] in ("health", "score") else None
        ratio = f"{r['calls_per_s'] / base['calls_per_s']:.2f}" if base else ""
        p99 = f"{r['p99_ms'] / base['p99_ms']:.2f}" if base else ""
        lines.append(
            f"| {r['label']} | {r['concurrency']} | {r['calls_per_s']:,.0f} | {r['rows_per_s']:,.0f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ratio} | {p99} |"
        )
    runtime = d.get("runtime", "tensorflow")
    lines.append(
        f"| in-process model.score ({runtime}), 1,000-row batches | | | {d['in_process_rows_per_s']:,.0f} | | | | |"
    )
    if "in_process_tensorflow_rows_per_s" in d:
        lines.append(
            f"| in-process TensorFlow signature, 1,000-row batches | | | {d['in_process_tensorflow_rows_per_s']:,.0f} "
            "| | | | |"
        )
    goals = "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in d["summary"]["goals"].items())
    out = "\n".join(lines) + f"\n\nGoals in this run: {goals}."
    by_size = d["summary"].get("score_columns_by_call_size")
    if by_size:
        out += "\n\n" + columns_table({int(rows): c for rows, c in by_size.items()})
    calls = d.get("model_call_ms")
    if calls:
        sizes = list(next(iter(calls.values())))
        out += "\n\n| one model call, ms | " + " | ".join(f"{n} rows" for n in sizes) + " |\n"
        out += "| --- |" + " ---: |" * len(sizes) + "\n"
        names = {"model.score": f"`LoadedModel.score` ({runtime})", "tensorflow": "TensorFlow signature"}
        out += "\n".join(
            f"| {names.get(k, k)} | " + " | ".join(f"{v[n]:.3f}" for n in sizes) + " |" for k, v in calls.items()
        )
    return out


def stream_table(d: dict[str, Any]) -> str:
    lines = ["| measure | value | baseline in the same run | ratio |", "| --- | ---: | ---: | ---: |"]
    replay = d.get("replay")
    if replay:
        lines.append(
            f"| replay: parse + score + rules + Bigtable + alerts, tx per CPU-second | {replay['tx_per_cpu_s']:,.0f} "
            f"| model in-process {d['model_rows_per_s_batch512']:,.0f} rows/s "
            f"| {replay['tx_per_cpu_s'] / 10_000:.2f} of the 10,000/core goal |"
        )
    streaming = d.get("streaming", {})
    bare = streaming.get("bare_read_count_msg_per_s")
    for key, run in streaming.items():
        if key.startswith("stream_job_") and isinstance(run, dict):
            lines.append(
                f"| DirectRunner streaming drain, `--card-aggregation {key.removeprefix('stream_job_')}`, msg/s "
                f"| {run['msg_per_s']:,.0f} | bare read-and-count {bare:,.0f} | {run['ratio_to_bare']:.2f} |"
            )
    for key, runs in d.items():
        if not key.startswith("latency_tx_anomaly_"):
            continue
        rate = key.removeprefix("latency_tx_anomaly_").removesuffix("_per_s")
        for mode, value in runs.items():
            lines.append(
                f"| TX_ANOMALY event-time-to-alert at {rate} tx/s, `{mode}`, p50 / p99 "
                f"| {value['p50_s']:.2f} s / {value['p99_s']:.2f} s | goal p99 < 2 s | {value['alerts']:.0f} alerts |"
            )
    return "\n".join(lines)


def quality_table(d: dict[str, Any]) -> str:
    from bench.quality import envelope_budget_table, explanation_table, goals_line, probe_table, table

    v = d["verdict"]
    out = (
        table(d) + f"\n\nSeeds {d['seeds']}, {d['split']}. Best baseline by PR-AUC: {v['best_baseline_by_pr_auc']} "
        f"(margin of the default {v['pr_auc_margin_over_best_baseline']:+.4f}); beats every baseline's mean "
        f"PR-AUC: {'yes' if v['beats_every_baseline_mean_pr_auc'] else 'NO'}; recall at precision >= 0.85 not "
        f"below the best baseline's: {'yes' if v['recall_at_p085_not_below_best_baseline'] else 'NO'}."
    )
    if "probes" in v:
        out += f"\n\n{probe_table(d)}\n\nProbe goals (the default): {goals_line(v['probes'])}."
    if "explanations" in v:
        out += f"\n\n{explanation_table(d)}\n\nExplanation goals (the default): {goals_line(v['explanations'])}."
    if "envelope_budgets" in d["summary"]["default"]:
        out += f"\n\nEnvelope budgets (limit chosen on validation normals):\n\n{envelope_budget_table(d)}"
    return out


def explain_cost_table(d: dict[str, Any]) -> str:
    from bench.explain_cost import table

    load = d["load_average_1m"]
    return (
        f"{table(d)}\n\n{d['model']}, {d['fast_path']}; load average (1 min) {load['start']:.1f} -> {load['end']:.1f}."
    )


def main() -> None:
    for name, render in (
        ("quality", quality_table),
        ("train", train_table),
        ("scorer", scorer_table),
        ("explain_cost", explain_cost_table),
        ("stream", stream_table),
    ):
        data = _load(name)
        if data is not None:
            print(f"### {name} (bench/results/{name}.json)\n\n{render(data)}\n")


if __name__ == "__main__":
    main()
