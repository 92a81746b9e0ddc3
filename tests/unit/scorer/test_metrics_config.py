"""Metrics helpers and the serve configuration built from flags."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest

from scorer.config import ConfigError, ServeConfig, add_arguments
from scorer.metrics import ScorerMetrics, observe_many


@pytest.mark.parametrize("repeat", [1, 3])  # 7 values: observed one by one; 21: counted in bulk
def test_observe_many_equals_observe(repeat: int) -> None:
    one, many = ScorerMetrics(), ScorerMetrics()
    values = np.tile([0.0, 0.001, 0.0010001, 0.05, 3.0, 1e6, 0.002], repeat)
    for v in values:
        one.reconstruction_error.observe(float(v))
    observe_many(many.reconstruction_error, values)

    def lines(m: ScorerMetrics) -> list[str]:
        text = generate_latest(m.registry).decode()
        return [
            line
            for line in text.splitlines()
            if line.startswith("fraudscore_reconstruction_error_") and "_created" not in line
        ]

    assert lines(one) == lines(many) and len(lines(one)) > 5


class Context:
    def __init__(self) -> None:
        self._code: grpc.StatusCode | None = None

    def code(self) -> grpc.StatusCode | None:
        return self._code


def test_unary_wrapper_counts_by_final_code() -> None:
    metrics = ScorerMetrics()

    async def ok(request: object, context: Context) -> str:
        return "fine"

    async def rejected(request: object, context: Context) -> str:
        context._code = grpc.StatusCode.INVALID_ARGUMENT
        raise RuntimeError("aborted")

    asyncio.run(metrics.unary("Score", ok)(None, Context()))
    with pytest.raises(RuntimeError):
        asyncio.run(metrics.unary("Score", rejected)(None, Context()))
    assert metrics.requests.labels(method="Score", code="OK")._value.get() == 1
    assert metrics.requests.labels(method="Score", code="INVALID_ARGUMENT")._value.get() == 1
    assert sum(b.get() for b in metrics.latency.labels(method="Score")._buckets) == 2


def test_served_gauge_marks_only_the_current_version() -> None:
    metrics = ScorerMetrics()
    metrics.served("cc", 1)
    metrics.served("cc", 2)
    text = generate_latest(metrics.registry).decode()
    assert 'fraudscore_model_info{model="cc",version="2"} 1.0' in text and 'version="1"' not in text


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--model-base", "models/x", *argv])


def test_config_defaults_and_token_from_env() -> None:
    config = ServeConfig.from_args(_args(), {"FRAUDSCORE_TOKEN": "abc"})
    assert config.model_base == Path("models/x") and config.port == 50051 and config.batch.enabled
    assert config.token == "abc" and config.tls is None
    assert "abc" not in repr(config)


def test_token_file_wins_and_empty_token_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    assert ServeConfig.from_args(_args("--token-file", str(token)), {"FRAUDSCORE_TOKEN": "env"}).token == "from-file"
    token.write_text("\n")
    with pytest.raises(ConfigError, match="empty bearer token"):
        ServeConfig.from_args(_args("--token-file", str(token)), {})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--tls-cert", "c.pem"), "--tls-cert and --tls-key"),
        (("--tls-client-ca", "ca.pem"), "--tls-client-ca needs"),
        (("--max-batch", "0"), "--max-batch"),
        (("--token-file", "/nonexistent/token"), "--token-file: cannot read"),
        (("--auth-reflection",), "--auth-reflection needs a bearer token"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeConfig.from_args(_args(*argv), {})


def test_tls_files_are_read(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_bytes(name.encode())
    config = ServeConfig.from_args(
        _args(
            *(f"--tls-{f}={tmp_path / n}" for f, n in (("cert", "c.pem"), ("key", "k.pem"), ("client-ca", "ca.pem")))
        ),
        {},
    )
    assert config.tls is not None and (config.tls.cert, config.tls.key, config.tls.client_ca) == (
        b"c.pem",
        b"k.pem",
        b"ca.pem",
    )


def test_deadline_exceeded_and_cancelled_calls_are_counted_by_their_code() -> None:
    """On a real grpc.aio server on loopback: grpc cancels the handler, the counter says why."""
    metrics = ScorerMetrics()

    def count(method: str, code: str) -> float:
        return float(metrics.requests.labels(method=method, code=code)._value.get())

    async def main() -> None:
        started = asyncio.Event()

        async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            started.set()
            await asyncio.sleep(30)
            return b""

        async def slow_stream(requests: object, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            started.set()
            await asyncio.sleep(30)
            yield b""

        handlers = {
            "Slow": grpc.unary_unary_rpc_method_handler(metrics.unary("Slow", slow)),
            "SlowStream": grpc.stream_stream_rpc_method_handler(metrics.stream("SlowStream", slow_stream)),
        }
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Slow", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                unary = channel.unary_unary("/test.Slow/Slow")
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await unary(b"", timeout=0.3)
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                for method, open_call in (
                    ("Slow", lambda: unary(b"", timeout=30)),
                    ("SlowStream", lambda: channel.stream_stream("/test.Slow/SlowStream")(iter([b""]), timeout=30)),
                ):
                    started.clear()
                    call = open_call()
                    await started.wait()
                    call.cancel()
                    for _ in range(100):  # the server learns of the cancellation a moment later
                        if count(method, "CANCELLED"):
                            break
                        await asyncio.sleep(0.02)
                for _ in range(100):
                    if count("Slow", "DEADLINE_EXCEEDED"):
                        break
                    await asyncio.sleep(0.02)
        finally:
            await server.stop(None)

    asyncio.run(main())
    assert count("Slow", "DEADLINE_EXCEEDED") == 1
    assert count("Slow", "CANCELLED") == 1 and count("SlowStream", "CANCELLED") == 1
    assert count("Slow", "UNKNOWN") == 0 and count("SlowStream", "UNKNOWN") == 0
