"""Typed configuration of ``fraudscore console``, built once by :func:`console.cli.main` from flags and env."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fraudscore.config import TOKEN_ENV, ConfigError, Resources, add_resource_arguments, read_token


@dataclass(frozen=True)
class ConsoleConfig:
    token: str = field(repr=False)
    resources: Resources = field(default_factory=Resources)
    host: str = "127.0.0.1"  # loopback by default: the console shows card data
    port: int = 8080
    # The model versions whose cards give the normal ranges, the threshold and the version shown (optional).
    model_base: Path | None = None
    refresh_s: float = 2.0  # the queue's in-memory snapshot is rescanned at most this often
    # Between full scans, a rescan reads only the cases changed since the last one (console.queue.Queue).
    full_rescan_s: float = 600.0
    page_size: int = 50
    poll_s: float = 5.0  # how often an open queue page asks for new cases
    threads: int = 4

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str]) -> ConsoleConfig:
        token = read_token(args.token_file, env)
        if token is None:
            raise ConfigError(
                f"the console needs a token analysts log in with: --token-file FILE or env {TOKEN_ENV} "
                "(decisions are refused without it)"
            )
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, got {args.port}")
        if args.refresh <= 0:
            raise ConfigError(f"--refresh must be positive, got {args.refresh}")
        if args.full_rescan <= 0:
            raise ConfigError(f"--full-rescan must be positive, got {args.full_rescan}")
        if args.poll <= 0:
            raise ConfigError(f"--poll must be positive, got {args.poll}")
        model_base = Path(args.model_base) if args.model_base else None
        if model_base is not None and not model_base.is_dir():
            raise ConfigError(f"--model-base {model_base}: not a directory")
        return cls(
            token=token,
            resources=Resources.from_args(args, env),
            host=args.host,
            port=args.port,
            model_base=model_base,
            refresh_s=args.refresh,
            full_rescan_s=args.full_rescan,
            poll_s=args.poll,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ConsoleConfig
    parser.add_argument("--host", default=d.host, help="address to listen on (default %(default)s: this machine only)")
    parser.add_argument("--port", type=int, default=d.port, help="HTTP port; 0 picks a free one (default %(default)s)")
    parser.add_argument(
        "--token-file", help=f"file holding the token analysts log in with (else env {TOKEN_ENV}); required"
    )
    parser.add_argument(
        "--model-base", help="model versions (e.g. models/creditcard): normal ranges, current version and threshold"
    )
    add_resource_arguments(parser)
    parser.add_argument(
        "--refresh", type=float, default=d.refresh_s, help="seconds between rescans of the case queue (%(default)s)"
    )
    parser.add_argument(
        "--full-rescan",
        type=float,
        default=d.full_rescan_s,
        help="seconds between full rescans (every case); the rescans between read only changed ones (%(default)s)",
    )
    parser.add_argument(
        "--poll", type=float, default=d.poll_s, help="seconds between an open queue page's updates (%(default)s)"
    )
