"""Typed configuration of the scorer, built once by ``server.main`` from flags and env.

Defaults come from ``bench/scorer.py`` on this machine (2 cores): a model call
costs about the same whatever its size (README, Benchmarks), so the batcher waits at most a fraction of a
millisecond and lets batches grow naturally while a call is running.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fraudscore.config import TOKEN_ENV, ConfigError, read_file, read_token

__all__ = [
    "TOKEN_ENV",
    "BatchConfig",
    "ConfigError",
    "ServeConfig",
    "TlsConfig",
    "add_arguments",
    "grpc_server_options",
    "read_token",
]


@dataclass(frozen=True)
class BatchConfig:
    enabled: bool = True
    # Rows per model call; at 512 rows a call still costs about as much as 1 row.
    max_batch: int = 256
    # Upper bound on how long a batch waits for company; it leaves earlier once arrivals pause.
    max_wait_ms: float = 2.0


@dataclass(frozen=True)
class TlsConfig:
    cert: bytes
    key: bytes
    # With a client CA the server requires client certificates (mutual TLS).
    client_ca: bytes | None = None


@dataclass(frozen=True)
class ServeConfig:
    model_base: Path
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = 9464
    batch: BatchConfig = field(default_factory=BatchConfig)
    reload_interval_s: float = 10.0
    # Versions kept loaded besides the newest, so pinned requests keep working during a rollout.
    keep_versions: int = 2
    max_request_rows: int = 10_000
    max_message_bytes: int = 16 * 1024 * 1024
    grace_s: float = 10.0
    drain_delay_s: float = 0.0
    tls: TlsConfig | None = None
    token: str | None = field(default=None, repr=False)
    # With a token: require it for server reflection too (health stays open for probes).
    auth_reflection: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str]) -> ServeConfig:
        tls = None
        if args.tls_cert or args.tls_key:
            if not (args.tls_cert and args.tls_key):
                raise ConfigError("--tls-cert and --tls-key must be given together")
            tls = TlsConfig(
                cert=read_file(args.tls_cert, "--tls-cert"),
                key=read_file(args.tls_key, "--tls-key"),
                client_ca=read_file(args.tls_client_ca, "--tls-client-ca") if args.tls_client_ca else None,
            )
        elif args.tls_client_ca:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        token = read_token(args.token_file, env)
        if args.auth_reflection and token is None:
            raise ConfigError(f"--auth-reflection needs a bearer token (--token-file or {TOKEN_ENV})")
        if args.max_batch < 1 or args.max_wait_ms < 0:
            raise ConfigError("--max-batch must be >= 1 and --max-wait-ms >= 0")
        return cls(
            model_base=Path(args.model_base),
            host=args.host,
            port=args.port,
            metrics_port=None if args.metrics_port < 0 else args.metrics_port,
            batch=BatchConfig(enabled=not args.no_batching, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms),
            reload_interval_s=args.reload_interval,
            max_request_rows=args.max_request_rows,
            max_message_bytes=args.max_message_bytes,
            grace_s=args.grace,
            drain_delay_s=args.drain_delay,
            tls=tls,
            token=token,
            auth_reflection=args.auth_reflection,
        )


def grpc_server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """The gRPC server options of `fraudscore serve` (and of bench/echo_server.py, to move the same bytes)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # gRPC sets SO_REUSEPORT by default: a second `serve` on the same port would bind too, and the
        # two would share the traffic silently. Without it, a port in use is an error at start-up.
        ("grpc.so_reuseport", 0),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `fraudscore serve` flags (server.main builds a ServeConfig from them)."""
    d, b = ServeConfig, BatchConfig
    parser.add_argument("--model-base", required=True, help="directory of model versions, e.g. models/creditcard")
    parser.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=d.port, help="gRPC port; 0 picks a free one (default %(default)s)")
    parser.add_argument(
        "--metrics-port", type=int, default=d.metrics_port, help="Prometheus /metrics port; -1 disables"
    )
    parser.add_argument(
        "--max-batch", type=int, default=b.max_batch, help="most rows per model call (default %(default)s)"
    )
    parser.add_argument("--max-wait-ms", type=float, default=b.max_wait_ms, help="longest wait for a batch to fill")
    parser.add_argument("--no-batching", action="store_true", help="one model call per request (for comparison)")
    parser.add_argument(
        "--reload-interval", type=float, default=d.reload_interval_s, help="seconds between checks for new versions"
    )
    parser.add_argument(
        "--max-request-rows", type=int, default=d.max_request_rows, help="most transactions per ScoreBatch"
    )
    parser.add_argument(
        "--max-message-bytes", type=int, default=d.max_message_bytes, help="largest request or response"
    )
    parser.add_argument(
        "--grace", type=float, default=d.grace_s, help="seconds in-flight calls get to finish on shutdown"
    )
    parser.add_argument(
        "--drain-delay", type=float, default=d.drain_delay_s, help="seconds NOT_SERVING before refusing calls"
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve TLS instead of plaintext")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--tls-client-ca", help="PEM CA bundle: require client certificates it signed (mutual TLS)")
    parser.add_argument(
        "--token-file", help="file holding a bearer token clients must send (else env FRAUDSCORE_TOKEN)"
    )
    parser.add_argument(
        "--auth-reflection",
        action="store_true",
        help="require the bearer token for server reflection too (health checks stay open)",
    )
