"""Benchmark of the gRPC scorer against its floor and a naive baseline, measured in one run.

    python -m bench.scorer [--model-base models/<name>] [--duration 3] [--columns-rows 1000 4000 10000]

On loopback, with the load generator in its own process (bench/scorer_load.py):
(a) gRPC floor: the standard health Check on the same server; (b) naive: the
same server with batching off; (c) Score as built; (d) ScoreBatch (one message
per row) of 1,000 rows; (e) ScoreColumns (one float32 matrix) at each call size
of ``--columns-rows`` with 1 client (the goal's figure; 2 clients at 1,000 rows,
the server's throughput, as context), each against the in-process
``LoadedModel.score`` rows/s at the same call size measured in the same round
(the LiteRT fast path when it passed its load-time check), and against a
transport floor: bench/echo_server.py answering the same request bytes with a
reply of the real reply's size. The whole-run in-process figures at 1,000 rows
(TensorFlow's signature too) and the cost of one model call at 1-1,000 rows
both ways come last. ``FRAUDSCORE_FAST_PATH=off`` measures everything with
TensorFlow. Writes bench/results/scorer.json (or ``--out``) and prints markdown
tables with the ratios.
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
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.scorer_load import CHANNEL_OPTIONS, columns_request
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc

RESULTS = Path(__file__).resolve().parent / "results" / "scorer.json"
BATCH_ROWS = 1000
# The call sizes of ScoreColumns; the server's default largest call is 10,000 rows (--max-request-rows).
COLUMNS_ROWS = (BATCH_ROWS, 4000, 10_000)
GOAL_RATIO = 0.5  # issue 12: ScoreColumns >= 0.5x the in-process rows/s


def columns_label(rows: int) -> str:
    """The run label of ScoreColumns at ``rows`` per call (the 1,000-row points keep their earlier label)."""
    return "score_columns" if rows == BATCH_ROWS else f"score_columns@{rows}"


# ScoreColumns asking for no top features (top_k=0) at the largest call size: context for the goal's figure.
SCORES_ONLY_LABEL = "score_columns_scores_only"


def echo_label(rows: int) -> str:
    return f"echo@{rows}"


def goal_key(rows: int) -> str:
    return f"ScoreColumns >= {GOAL_RATIO}x in-process ({rows:,}-row calls)"


@contextlib.contextmanager
def _listening(cmd: list[str]) -> Iterator[str]:
    """A server subprocess that prints ``LISTENING host:port`` once its port is open; yields that target."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"{' '.join(cmd[2:4])} did not start: {line!r}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@contextlib.contextmanager
def server(model_base: Path, *extra: str) -> Iterator[str]:
    """A `fraudscore serve` subprocess; yields its target once it is SERVING."""
    cmd = [sys.executable, "-m", "fraudscore.cli", "serve", "--model-base", str(model_base), "--port", "0"]
    with _listening([*cmd, "--metrics-port", "-1", *extra]) as target:
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 120
            while health.Check(health_pb2.HealthCheckRequest()).status != health_pb2.HealthCheckResponse.SERVING:
                if time.monotonic() > deadline:
                    raise RuntimeError("server never became SERVING")
                time.sleep(0.1)
        yield target


def echo_server(reply_bytes: int) -> contextlib.AbstractContextManager[str]:
    """A bench/echo_server.py subprocess answering every call with ``reply_bytes`` bytes; yields its target."""
    return _listening([sys.executable, "-m", "bench.echo_server", "--reply-bytes", str(reply_bytes)])


def wire_sizes(target: str, rows: int) -> tuple[bytes, int]:
    """One real ScoreColumns call of ``rows`` rows: its request's bytes and its reply's size in bytes."""
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = scorer_pb2_grpc.FraudScorerStub(channel)
        names = stub.GetModelInfo(pb.GetModelInfoRequest()).features
        request = columns_request(names, rows)
        try:
            reply = stub.ScoreColumns(request)
        except grpc.RpcError as e:
            raise SystemExit(f"--columns-rows: the scorer refused a {rows}-row call: {e.details()}") from e
    if reply.errors:  # a refused row would make the call cheaper than a real one
        raise RuntimeError(f"{len(reply.errors)} of the {rows} synthetic rows were refused: {reply.errors[0]}")
    return request.SerializeToString(), reply.ByteSize()


def load(
    target: str, mode: str, concurrency: int, duration: float, rows: int = BATCH_ROWS, request_file: Path | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scorer_load", "--target", target, "--mode", mode]
    cmd += ["--concurrency", str(concurrency), "--duration", str(duration), "--batch-rows", str(rows)]
    cmd += ["--request-file", str(request_file)] if request_file else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    per_call = f" x{rows}" if mode in ("columns", "columns-scores", "echo") else ""
    print(
        f"  {mode + per_call:<14} c={concurrency:<3} {result['calls_per_s']:8.0f} calls/s  "
        f"{result['rows_per_s']:10,.0f} rows/s  p99 {result['p99_ms']:6.1f} ms",
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


def in_process_rows_per_s(model: Any, rows: int, seconds: float) -> float:
    """``LoadedModel.score`` rows/s called directly with ``rows``-row matrices for ``seconds``."""
    matrix = np.random.default_rng(0).normal(0, 1.5, (rows, len(model.features))).astype(np.float32)
    return _calls_per_s(model.score, matrix, seconds) * rows


def in_process(model: Any, seconds: float) -> dict[str, Any]:
    """The limits: ``LoadedModel.score`` (the fast path when it passed its check, as the server uses it) and
    the SavedModel's signature in TensorFlow, called directly with 1,000-row batches; and the cost of one
    call of each at 1, 16, 256 and 1,000 rows."""
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
        "rows_per_s": in_process_rows_per_s(model, BATCH_ROWS, seconds),
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


def echo_bound(rows: int, model_rows_per_s: float, echo_calls_per_s: float) -> float:
    """The ratio to in-process ScoreColumns would reach if its server did nothing but the model call.

    A call of ``rows`` rows costs at least the model's time plus the transport's (the echo's time per call,
    one client), and in-process pays only the model's: model / (model + echo).
    """
    model_s = rows / model_rows_per_s
    return model_s / (model_s + 1 / echo_calls_per_s)


def columns_by_rows(
    samples: dict[tuple[str, int], list[dict[str, Any]]], in_process_rounds: dict[int, list[float]]
) -> dict[int, dict[str, Any]]:
    """Per call size: ScoreColumns (1 client), in-process and echo, each its median round, their ratios, and
    the same ratios round by round (each round's three were measured within seconds of each other)."""
    out: dict[int, dict[str, Any]] = {}
    for rows, local in sorted(in_process_rounds.items()):
        grpc_rounds, echo_rounds = samples[(columns_label(rows), 1)], samples[(echo_label(rows), 1)]
        built, echo, model = _median(grpc_rounds)["rows_per_s"], _median(echo_rounds)["calls_per_s"], _mid(local)
        ratios = [g["rows_per_s"] / m for g, m in zip(grpc_rounds, local, strict=True)]
        bounds = [echo_bound(rows, m, e["calls_per_s"]) for m, e in zip(local, echo_rounds, strict=True)]
        out[rows] = {
            "rows_per_s": built,
            "in_process_rows_per_s": model,
            "in_process_rows_per_s_all": [round(m) for m in local],
            "vs_in_process": built / model,
            "vs_in_process_rounds": [round(r, 3) for r in ratios],
            "vs_in_process_round_by_round": _mid(ratios),
            "model_call_ms": 1000 * rows / model,
            "echo_rows_per_s": echo * rows,
            "echo_call_ms": 1000 / echo,
            "echo_bound": echo_bound(rows, model, echo),
            "echo_bound_rounds": [round(b, 3) for b in bounds],
            "echo_bound_round_by_round": _mid(bounds),
        }
    return out


def _mid(values: Sequence[float]) -> float:
    """The median, taken like ``_median`` takes its round (the upper middle of an even count)."""
    return sorted(values)[len(values) // 2]


def summarize(runs: list[dict[str, Any]], limit: float, columns: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The goals' ratios; ``limit`` is the whole-run in-process rows/s at 1,000 rows, ``columns`` is
    ``columns_by_rows``: its largest call size decides the ScoreColumns goal (a bulk endpoint's figure)."""
    by = {(r["label"], r["concurrency"]): r for r in runs}
    bulk = max(columns)
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
            goal_key(bulk): columns[bulk]["vs_in_process"] >= GOAL_RATIO,
        },
        # Per call size; round by round: the median of the per-round ratios (see columns_by_rows).
        "goals_score_columns_by_call_size": {
            goal_key(rows): {
                "met": c["vs_in_process"] >= GOAL_RATIO,
                "met_round_by_round": c["vs_in_process_round_by_round"] >= GOAL_RATIO,
            }
            for rows, c in columns.items()
        },
        "score_columns_by_call_size": columns,
    }


def round_by_round_goals(paired: dict[str, Any], columns: dict[int, dict[str, Any]]) -> dict[str, bool]:
    """The goals on the medians of the per-round ratios (``paired_ratios`` and ``columns_by_rows``)."""
    ratio, bulk = paired["median"], max(columns)
    return {
        "p50 <= 2x floor at c=1": ratio["score_c1_vs_floor_p50"] <= 2,
        "throughput >= 0.75x floor at c=64": ratio["score_c64_vs_floor_throughput"] >= 0.75,
        "p99 <= 2x floor at c=64": ratio["score_c64_vs_floor_p99"] <= 2,
        goal_key(bulk): columns[bulk]["vs_in_process_round_by_round"] >= GOAL_RATIO,
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
        per_row = r["mode"] in ("batch", "columns", "columns-scores", "echo")
        ratio = f"{r['calls_per_s'] / f['calls_per_s']:.2f}" if f and not per_row else ""
        p99 = f"{r['p99_ms'] / f['p99_ms']:.2f}" if f and not per_row else ""
        lines.append(
            f"| {r['label']} | {r['concurrency']} | {r['calls_per_s']:,.0f} | {r['rows_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ratio} | {p99} |"
        )
    lines.append(f"| in-process model.score, {BATCH_ROWS}-row batches | - | - | {limit:,.0f} | | | | |")
    columns = summary["score_columns_by_call_size"]
    lines += [
        f"| in-process model.score, {rows:,}-row calls (median round) | - | - | {c['in_process_rows_per_s']:,.0f} |"
        + " |" * 4
        for rows, c in columns.items()
    ]
    lines += ["", columns_table(columns), ""]
    lines.append(f"Score at c=1: p50 {summary['score_c1_vs_floor_p50']:.2f}x the floor's")
    lines.append("Score vs naive: " + ", ".join(f"c={c}: {v:.2f}x" for c, v in summary["score_vs_naive"].items()))
    lines.append(f"ScoreBatch vs in-process: {summary['score_batch_vs_in_process']:.0%}")
    lines.append(
        f"ScoreColumns vs in-process: {summary['score_columns_vs_in_process']:.0%} "
        f"({summary['score_columns_vs_score_batch']:.1f}x ScoreBatch); with 2 clients "
        f"{summary['score_columns_2_clients_vs_in_process']:.0%}"
    )
    scores_only = summary.get("score_columns_scores_only_vs_in_process")
    if scores_only:
        lines.append(
            f"ScoreColumns scores only (top_k=0), {scores_only['rows']:,}-row calls: {scores_only['rows_per_s']:,.0f} "
            f"rows/s, {scores_only['vs_in_process']:.2f}x in-process (context, not the goal's figure)"
        )
    lines += [f"- {goal}: {'met' if ok else 'NOT met'}" for goal, ok in summary["goals"].items()]
    lines.append("ScoreColumns by call size (ratio of the medians; median of the per-round ratios):")
    lines += [
        f"- {goal}: {'met' if ok['met'] else 'NOT met'}; {'met' if ok['met_round_by_round'] else 'NOT met'}"
        for goal, ok in summary["goals_score_columns_by_call_size"].items()
    ]
    paired = summary.get("paired")
    if paired:
        lines.append("Round by round (scorer / floor measured just before it), median [all rounds]:")
        lines += [
            f"- {name}: {paired['median'][name]:.2f} [{', '.join(f'{r:.2f}' for r in ratios)}]"
            for name, ratios in paired["rounds"].items()
        ]
    return "\n".join(lines)


def columns_table(columns: dict[int, dict[str, Any]]) -> str:
    """ScoreColumns (1 client) per call size against in-process at that size and the echo's bound."""
    lines = [
        "| rows per call | ScoreColumns rows/s | in-process rows/s | ratio | ratio round by round [rounds] "
        "| echo rows/s | echo ms per call | model ms per call | echo bound [rounds] |",
        "|---" * 9 + "|",
    ]
    for rows, c in columns.items():
        ratios = ", ".join(f"{r:.2f}" for r in c["vs_in_process_rounds"])
        bounds = ", ".join(f"{b:.2f}" for b in c["echo_bound_rounds"])
        lines.append(
            f"| {rows:,} | {c['rows_per_s']:,.0f} | {c['in_process_rows_per_s']:,.0f} | {c['vs_in_process']:.2f} "
            f"| {c['vs_in_process_round_by_round']:.2f} [{ratios}] | {c['echo_rows_per_s']:,.0f} "
            f"| {c['echo_call_ms']:.3f} | {c['model_call_ms']:.3f} | {c['echo_bound']:.2f} [{bounds}] |"
        )
    return "\n".join(lines)


class Point(NamedTuple):
    """One measurement of a round: a load-generator run, or (mode "in-process") the model in this process."""

    label: str
    mode: str
    concurrency: int = 1
    target: str = ""
    rows: int = BATCH_ROWS
    request_file: Path | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="gRPC scorer benchmark (floor, naive, built, ScoreBatch, ScoreColumns by call size, echo)"
    )
    parser.add_argument("--model-base", type=Path, default=default_model_base(), help="model base to serve")
    parser.add_argument("--duration", type=float, default=1.5, help="measured seconds per point and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each point reports its median")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64], help="client concurrencies")
    parser.add_argument(
        "--columns-rows",
        type=int,
        nargs="+",
        default=list(COLUMNS_ROWS),
        help=f"ScoreColumns call sizes (rows); {BATCH_ROWS:,} is always measured; the largest decides the goal",
    )
    parser.add_argument("--server-args", default="", help="extra `fraudscore serve` flags for the built scorer")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args(argv)
    if args.model_base is None:
        parser.error("no model under models/: train one (fraudscore train ...) or pass --model-base")
    if min(args.columns_rows) < 1:
        parser.error(f"--columns-rows: each size must be at least 1 row, got {min(args.columns_rows)}")
    # 1,000 rows carries the earlier figures (ScoreBatch, 2 clients, the whole-run in-process reference).
    sizes = sorted({*args.columns_rows, BATCH_ROWS})
    print(f"model {args.model_base}; {os.cpu_count()} cores; {args.rounds} x {args.duration:g} s per point", flush=True)
    from fraudscore import model as model_lib  # TensorFlow: imported only when measuring

    # Loaded before the servers start: the in-process points run between the load generator's, while
    # the servers sit idle, so each call size has an in-process figure from the same round.
    model = model_lib.load(args.model_base)
    # The machine may be shared: the load average before and after says how busy it was meanwhile.
    load_start = os.getloadavg()
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    in_process_rounds: dict[int, list[float]] = {}
    wire: dict[int, dict[str, int]] = {}
    with contextlib.ExitStack() as stack:
        built = stack.enter_context(server(args.model_base, *args.server_args.split()))
        naive = stack.enter_context(server(args.model_base, "--no-batching"))
        requests = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scorer-")))
        # Other work on the machine comes and goes: interleave the variants in short rounds
        # and keep each point's median round, so they share the same background.
        # Each concurrency's floor, scorer and naive run back to back, so that the per-round ratios compare
        # points measured within seconds of each other (see paired_ratios).
        points = [
            Point(label, mode, c, target)
            for c in args.concurrency
            for label, target, mode in (
                ("floor", built, "health"),
                ("scorer", built, "score"),
                ("naive", naive, "score"),
            )
        ]
        points.append(Point("score_batch", "batch", 1, built))
        for rows in sizes:
            # The echo's request is a real call's bytes and its reply the real reply's size.
            request, reply_bytes = wire_sizes(built, rows)
            wire[rows] = {"request_bytes": len(request), "reply_bytes": reply_bytes}
            request_file = requests / f"score_columns_{rows}.bin"
            request_file.write_bytes(request)
            echo = stack.enter_context(echo_server(reply_bytes))
            # ScoreColumns at one client is the goal's figure, in-process at the same size right after it.
            points += [
                Point(columns_label(rows), "columns", 1, built, rows),
                Point("in-process", "in-process", rows=rows),
                Point(echo_label(rows), "echo", 1, echo, rows, request_file),
            ]
            if rows == max(sizes):
                # Context, not the goal's figure: scores only (top_k=0), the same outputs in-process score gives.
                points.append(Point(SCORES_ONLY_LABEL, "columns-scores", 1, built, rows))
            if rows == BATCH_ROWS:
                # One synchronous client leaves the server idle while it builds and parses, so two clients
                # (the server's throughput) are measured too, as context.
                points.append(Point(columns_label(rows), "columns", 2, built, rows))
        for _ in range(args.rounds):
            for p in points:
                if p.mode == "in-process":
                    rows_per_s = in_process_rows_per_s(model, p.rows, args.duration)
                    in_process_rounds.setdefault(p.rows, []).append(rows_per_s)
                    print(f"  {'in-process x' + str(p.rows):<14} {'':<5} {'':>8}         {rows_per_s:10,.0f} rows/s")
                    continue
                run = load(p.target, p.mode, p.concurrency, args.duration, p.rows, p.request_file)
                samples.setdefault((p.label, p.concurrency), []).append(run)
    runs = [{"label": label, **_median(rounds)} for (label, _), rounds in samples.items()]
    paired = paired_ratios(samples)
    columns = columns_by_rows(samples, in_process_rounds)
    for rows, sizes_on_wire in wire.items():
        columns[rows].update(sizes_on_wire)
    local = in_process(model, args.duration)
    limit = local["rows_per_s"]
    summary = summarize(runs, limit, columns)
    summary["paired"] = paired
    summary["goals_round_by_round"] = round_by_round_goals(paired, columns)
    scores_only = next((r for r in runs if r["label"] == SCORES_ONLY_LABEL), None)
    if scores_only is not None:
        bulk = max(columns)
        summary["score_columns_scores_only_vs_in_process"] = {
            "rows": bulk,
            "rows_per_s": scores_only["rows_per_s"],
            "vs_in_process": scores_only["rows_per_s"] / columns[bulk]["in_process_rows_per_s"],
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"runtime: {local['runtime']} ({local['runtime_detail']})")
    for name, costs in local["call_ms"].items():
        print(f"  one {name} call: " + ", ".join(f"{n} rows {ms:.3f} ms" for n, ms in costs.items()))
    print(table(runs, limit, summary))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
