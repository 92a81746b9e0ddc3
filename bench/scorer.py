"""Benchmark of the gRPC scorer against its floor and a naive baseline, measured in one run.

    python -m bench.scorer [--model-base models/<name>] [--duration 3]

On loopback, with the load generator in its own process (bench/scorer_load.py):
(a) gRPC floor: the standard health Check on the same server; (b) naive: the
same server with batching off; (c) Score as built; (d) ScoreBatch (one message
per row) and ScoreColumns (one float32 matrix; 1 client, the goal's figure, and
2 clients, the server's throughput) of 1,000 rows against the
in-process ``LoadedModel.score`` rows/s at the same batch size (the LiteRT fast
path when it passed its load-time check; TensorFlow's signature is measured
too), and the cost of one model call at 1-1,000 rows both ways.
``FRAUDSCORE_FAST_PATH=off`` measures everything with TensorFlow. Writes
bench/results/scorer.json and prints a markdown table with the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

RESULTS = Path(__file__).resolve().parent / "results" / "scorer.json"
BATCH_ROWS = 1000
COLUMNS_CLIENTS = (1, 2)


@contextlib.contextmanager
def server(model_base: Path, *extra: str) -> Iterator[str]:
    """A `fraudscore serve` subprocess; yields its target once it is SERVING."""
    cmd = [sys.executable, "-m", "fraudscore.cli", "serve", "--model-base", str(model_base), "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--metrics-port", "-1", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"server did not start: {line!r}")
        target = line.split()[1]
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 120
            while health.Check(health_pb2.HealthCheckRequest()).status != health_pb2.HealthCheckResponse.SERVING:
                if time.monotonic() > deadline:
                    raise RuntimeError("server never became SERVING")
                time.sleep(0.1)
        yield target
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def load(target: str, mode: str, concurrency: int, duration: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scorer_load", "--target", target, "--mode", mode]
    cmd += ["--concurrency", str(concurrency), "--duration", str(duration), "--batch-rows", str(BATCH_ROWS)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    print(
        f"  {mode:<7} c={concurrency:<3} {result['calls_per_s']:8.0f} calls/s  p99 {result['p99_ms']:6.1f} ms",
        flush=True,
    )
    return {"mode": mode, "concurrency": concurrency, **result}


def _calls_per_s(score: Any, rows: np.ndarray, seconds: float) -> float:
    score(rows)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        score(rows)
        calls += 1
    return calls / (time.perf_counter() - start)


def in_process(model_base: Path, seconds: float) -> dict[str, Any]:
    """The limits: ``LoadedModel.score`` (the fast path when it passed its check, as the server uses it) and
    the SavedModel's signature in TensorFlow, called directly with 1,000-row batches; and the cost of one
    call of each at 1, 16, 256 and 1,000 rows."""
    from fraudscore import model as model_lib

    model = model_lib.load(model_base)
    rng = np.random.default_rng(0)
    call_ms: dict[str, dict[int, float]] = {"model.score": {}, "tensorflow": {}}
    for n in (1, 16, 256, BATCH_ROWS):
        rows = rng.normal(0, 1.5, (n, len(model.features))).astype(np.float32)
        for name, score in (("model.score", model.score), ("tensorflow", model.score_tensorflow)):
            call_ms[name][n] = 1000 / _calls_per_s(score, rows, min(seconds, 0.5))
    rows = rng.normal(0, 1.5, (BATCH_ROWS, len(model.features))).astype(np.float32)
    return {
        "runtime": model.fast_path.runtime,
        "runtime_detail": model.fast_path.detail,
        "rows_per_s": _calls_per_s(model.score, rows, seconds) * BATCH_ROWS,
        "tensorflow_rows_per_s": _calls_per_s(model.score_tensorflow, rows, seconds) * BATCH_ROWS,
        "call_ms": call_ms,
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput, with the spread of all rounds."""
    ordered = sorted(rounds, key=lambda r: r["calls_per_s"])
    return {**ordered[len(ordered) // 2], "calls_per_s_all": [round(r["calls_per_s"]) for r in rounds]}


def default_model_base() -> Path | None:
    bases = [p for p in Path("models").glob("*") if p.is_dir() and any(c.name.isdigit() for c in p.iterdir())]
    return max(bases, key=lambda p: p.stat().st_mtime) if bases else None


def summarize(runs: list[dict[str, Any]], limit: float) -> dict[str, Any]:
    by = {(r["label"], r["concurrency"]): r for r in runs}
    floor, built = (by[(k, 64)] for k in ("floor", "scorer"))
    floor1, built1 = by[("floor", 1)], by[("scorer", 1)]
    batch, cols, cols2 = by[("score_batch", 1)], by[("score_columns", 1)], by[("score_columns", 2)]
    return {
        "score_c1_vs_floor_p50": built1["p50_ms"] / floor1["p50_ms"],
        "score_c64_vs_floor_throughput": built["calls_per_s"] / floor["calls_per_s"],
        "score_c64_vs_floor_p99": built["p99_ms"] / floor["p99_ms"],
        "score_vs_naive": {
            c: by[("scorer", c)]["calls_per_s"] / by[("naive", c)]["calls_per_s"]
            for (label, c) in by
            if label == "scorer" and ("naive", c) in by
        },
        "score_batch_vs_in_process": batch["rows_per_s"] / limit,
        "score_columns_vs_in_process": cols["rows_per_s"] / limit,
        "score_columns_2_clients_vs_in_process": cols2["rows_per_s"] / limit,  # context, not the goal's figure
        "score_columns_vs_score_batch": cols["rows_per_s"] / batch["rows_per_s"],
        "goals": {  # issue 12's
            "p50 <= 2x floor at c=1": built1["p50_ms"] <= 2 * floor1["p50_ms"],
            "throughput >= 0.75x floor at c=64": built["calls_per_s"] >= 0.75 * floor["calls_per_s"],
            "p99 <= 2x floor at c=64": built["p99_ms"] <= 2 * floor["p99_ms"],
            "ScoreColumns >= 0.5x in-process": cols["rows_per_s"] >= 0.5 * limit,
        },
    }


def paired_ratios(samples: dict[tuple[str, int], list[dict[str, Any]]]) -> dict[str, Any]:
    """The goals' ratios round by round (scorer against the floor measured just before it) and their medians.

    On a shared machine the floor itself moves 2x between rounds; a ratio of two medians taken from
    different rounds carries that drift, a ratio within one round mostly does not.
    """
    floor1, built1 = samples[("floor", 1)], samples[("scorer", 1)]
    floor64, built64 = samples[("floor", 64)], samples[("scorer", 64)]
    rounds = {
        "score_c1_vs_floor_p50": [b["p50_ms"] / f["p50_ms"] for f, b in zip(floor1, built1, strict=True)],
        "score_c64_vs_floor_throughput": [
            b["calls_per_s"] / f["calls_per_s"] for f, b in zip(floor64, built64, strict=True)
        ],
        "score_c64_vs_floor_p99": [b["p99_ms"] / f["p99_ms"] for f, b in zip(floor64, built64, strict=True)],
    }
    return {
        "rounds": {name: [round(r, 3) for r in ratios] for name, ratios in rounds.items()},
        "median": {name: statistics.median(ratios) for name, ratios in rounds.items()},
    }


def table(runs: list[dict[str, Any]], limit: float, summary: dict[str, Any]) -> str:
    floor = {r["concurrency"]: r for r in runs if r["label"] == "floor"}
    lines = [
        "| what | clients | calls/s | rows/s | p50 ms | p99 ms | vs floor calls/s | vs floor p99 |",
        "|---" * 8 + "|",
    ]
    for r in runs:
        f = floor.get(r["concurrency"])
        per_row = r["mode"] in ("batch", "columns")
        ratio = f"{r['calls_per_s'] / f['calls_per_s']:.2f}" if f and not per_row else ""
        p99 = f"{r['p99_ms'] / f['p99_ms']:.2f}" if f and not per_row else ""
        lines.append(
            f"| {r['label']} | {r['concurrency']} | {r['calls_per_s']:,.0f} | {r['rows_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ratio} | {p99} |"
        )
    lines.append(f"| in-process model.score, {BATCH_ROWS}-row batches | - | - | {limit:,.0f} | | | | |")
    lines.append("")
    lines.append(f"Score at c=1: p50 {summary['score_c1_vs_floor_p50']:.2f}x the floor's")
    lines.append("Score vs naive: " + ", ".join(f"c={c}: {v:.2f}x" for c, v in summary["score_vs_naive"].items()))
    lines.append(f"ScoreBatch vs in-process: {summary['score_batch_vs_in_process']:.0%}")
    lines.append(
        f"ScoreColumns vs in-process: {summary['score_columns_vs_in_process']:.0%} "
        f"({summary['score_columns_vs_score_batch']:.1f}x ScoreBatch); with 2 clients "
        f"{summary['score_columns_2_clients_vs_in_process']:.0%}"
    )
    lines += [f"- {goal}: {'met' if ok else 'NOT met'}" for goal, ok in summary["goals"].items()]
    paired = summary.get("paired")
    if paired:
        lines.append("Round by round (scorer / floor measured just before it), median [all rounds]:")
        lines += [
            f"- {name}: {paired['median'][name]:.2f} [{', '.join(f'{r:.2f}' for r in ratios)}]"
            for name, ratios in paired["rounds"].items()
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="gRPC scorer benchmark (floor, naive, built, ScoreBatch, ScoreColumns)"
    )
    parser.add_argument("--model-base", type=Path, default=default_model_base(), help="model base to serve")
    parser.add_argument("--duration", type=float, default=1.5, help="measured seconds per point and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each point reports its median")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64], help="client concurrencies")
    parser.add_argument("--server-args", default="", help="extra `fraudscore serve` flags for the built scorer")
    args = parser.parse_args(argv)
    if args.model_base is None:
        parser.error("no model under models/: train one (fraudscore train ...) or pass --model-base")
    print(f"model {args.model_base}; {os.cpu_count()} cores; {args.rounds} x {args.duration:g} s per point", flush=True)
    # The machine may be shared: the load average before and after says how busy it was meanwhile.
    load_start = os.getloadavg()
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with (
        server(args.model_base, *args.server_args.split()) as built,
        server(args.model_base, "--no-batching") as naive,
    ):
        # Other work on the machine comes and goes: interleave the variants in short rounds
        # and keep each point's median round, so they share the same background.
        # Each concurrency's floor, scorer and naive run back to back, so that the per-round ratios compare
        # points measured within seconds of each other (see paired_ratios).
        points = [
            (label, target, mode, c)
            for c in args.concurrency
            for label, target, mode in (
                ("floor", built, "health"),
                ("scorer", built, "score"),
                ("naive", naive, "score"),
            )
        ]
        # ScoreColumns at one client is the goal's figure; one synchronous client leaves the server idle while
        # it builds and parses, so two clients (the server's throughput) are measured too, as context.
        points += [("score_batch", built, "batch", 1)]
        points += [("score_columns", built, "columns", c) for c in COLUMNS_CLIENTS]
        for _ in range(args.rounds):
            for label, target, mode, c in points:
                samples.setdefault((label, c), []).append(load(target, mode, c, args.duration))
    runs = [{"label": label, **_median(rounds)} for (label, _), rounds in samples.items()]
    paired = paired_ratios(samples)
    local = in_process(args.model_base, args.duration)
    limit = local["rows_per_s"]
    summary = summarize(runs, limit)
    summary["paired"] = paired
    ratio = paired["median"]
    summary["goals_round_by_round"] = {  # the same goals on the medians of the per-round ratios
        "p50 <= 2x floor at c=1": ratio["score_c1_vs_floor_p50"] <= 2,
        "throughput >= 0.75x floor at c=64": ratio["score_c64_vs_floor_throughput"] >= 0.75,
        "p99 <= 2x floor at c=64": ratio["score_c64_vs_floor_p99"] <= 2,
    }
    summary["score_columns_vs_in_process_tensorflow"] = summary["score_columns_vs_in_process"] * (
        limit / local["tensorflow_rows_per_s"]
    )
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_1_5_15_min": {"start": list(load_start), "end": list(os.getloadavg())},
        "model_base": str(args.model_base),
        "server_args": args.server_args,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "runs": runs,
        "in_process_rows_per_s": limit,
        "in_process_tensorflow_rows_per_s": local["tensorflow_rows_per_s"],
        "runtime": local["runtime"],
        "runtime_detail": local["runtime_detail"],
        "model_call_ms": local["call_ms"],
        "summary": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"runtime: {local['runtime']} ({local['runtime_detail']})")
    for name, costs in local["call_ms"].items():
        print(f"  one {name} call: " + ", ".join(f"{n} rows {ms:.3f} ms" for n, ms in costs.items()))
    print(table(runs, limit, summary))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
