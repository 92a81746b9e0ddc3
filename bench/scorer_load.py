"""The load generator of bench/scorer.py, run as its own process (2 cores: keep it off the server's loop).

    python -m bench.scorer_load --target 127.0.0.1:PORT --mode score --concurrency 64 --duration 3

Prints one JSON line: calls, rows, seconds, latency percentiles. ``--mode echo`` calls bench/echo_server.py
with the bytes of ``--request-file`` as they are (a real ScoreColumns request's, written by bench/scorer.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.echo_server import METHOD as ECHO_METHOD
from fraudscore import schema
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.v1.transaction_pb2 import Transaction
from scorer import columns

WARMUP_S = 0.5
# The clients' message limits: above any call size the benchmark sends.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def synthetic(n: int, seed: int = 0) -> list[Transaction]:
    """Plausible transactions: the cost of scoring does not depend on the values."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        tx = Transaction(
            transaction_id=f"bench-{i}",
            card_id=f"card-{i % 1000}",
            merchant_id="m-1",
            amount=float(rng.uniform(1, 300)),
            v=rng.normal(0, 1.5, 28).tolist(),
        )
        tx.event_time.FromSeconds(1_700_000_000 + i)
        out.append(tx)
    return out


def columns_request(names: Sequence[str], rows: int, top_k: int | None = None) -> pb.ScoreColumnsRequest:
    """The ScoreColumns request of ``rows`` synthetic transactions, the same bytes every time (``top_k=0``:
    scores only)."""
    txs = synthetic(rows)
    matrix = schema.feature_matrix(txs, names)
    return columns.request_of([tx.transaction_id for tx in txs], tuple(names), matrix, top_k=top_k)


async def run(
    target: str, mode: str, concurrency: int, duration: float, batch_rows: int, request_file: Path | None = None
) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        if mode == "health":
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            call, rows_per_call = (lambda: health.Check(request)), 1
        elif mode == "score":
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            requests = [pb.ScoreRequest(transaction=tx) for tx in synthetic(256)]
            it = iter(range(1 << 62))
            call, rows_per_call = (lambda: stub.Score(requests[next(it) % 256])), 1
        elif mode == "batch":
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            batch = pb.ScoreBatchRequest(transactions=synthetic(batch_rows))
            call, rows_per_call = (lambda: stub.ScoreBatch(batch)), batch_rows
        elif mode == "echo":
            if request_file is None:
                raise ValueError("--request-file: required with --mode echo")
            payload = request_file.read_bytes()
            # No serializers: the bytes go out and come back as they are, the transport's cost alone.
            echo = channel.unary_unary(ECHO_METHOD)
            call, rows_per_call = (lambda: echo(payload)), batch_rows
        else:
            stub = scorer_pb2_grpc.FraudScorerStub(channel)
            names = tuple((await stub.GetModelInfo(pb.GetModelInfoRequest())).features)
            table = columns_request(names, batch_rows, top_k=0 if mode == "columns-scores" else None)
            call, rows_per_call = (lambda: stub.ScoreColumns(table)), batch_rows
        latencies: list[float] = []
        start = time.perf_counter()
        measure_from, end = start + WARMUP_S, start + WARMUP_S + duration

        async def worker() -> None:
            while (now := time.perf_counter()) < end:
                await call()
                if now >= measure_from:
                    latencies.append(time.perf_counter() - now)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - measure_from
    lat = np.array(latencies) * 1000
    return {
        "calls": len(latencies),
        "seconds": seconds,
        "calls_per_s": len(latencies) / seconds,
        "rows_per_s": len(latencies) * rows_per_call / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="scorer address host:port")
    parser.add_argument(
        "--mode",
        choices=("health", "score", "batch", "columns", "columns-scores", "echo"),
        required=True,
        help="which call to make (columns-scores: ScoreColumns with top_k=0, scores only)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="calls in flight at once")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured after a short warm-up")
    parser.add_argument("--batch-rows", type=int, default=1000, help="rows per ScoreBatch/ScoreColumns/echo call")
    parser.add_argument("--request-file", type=Path, help="echo: the request bytes to send")
    args = parser.parse_args()
    if args.mode == "echo" and args.request_file is None:
        parser.error("--request-file: required with --mode echo")
    result = asyncio.run(
        run(args.target, args.mode, args.concurrency, args.duration, args.batch_rows, args.request_file)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
