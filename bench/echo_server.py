"""The transport floor of bench/scorer.py's ScoreColumns points: a grpc.aio server that does no work.

    python -m bench.echo_server --reply-bytes 44000

One generic unary method, ``/bench.Echo/Reply``, takes any request as raw bytes (no parsing) and returns a
fixed reply of ``--reply-bytes`` bytes, with the same message limits as `fraudscore serve`. Called with a real
ScoreColumns request's bytes and sized like its real reply, its calls/s is what the transport alone
allows (both event loops, HTTP/2, the copies), so the gap between it and ScoreColumns is the server's own
work. Prints ``LISTENING host:port`` once serving, like `fraudscore serve`.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

from scorer.config import ServeConfig

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Reply"


async def serve(reply_bytes: int, host: str = "127.0.0.1") -> None:
    reply = bytes(reply_bytes)

    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return reply

    # The limits `fraudscore serve` sets (scorer/server.py), so large calls behave alike on both.
    limit = ServeConfig.max_message_bytes
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    # No serializers: the request arrives and the reply leaves as the bytes themselves.
    handler = grpc.unary_unary_rpc_method_handler(answer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Reply": handler}),))
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    print(f"LISTENING {host}:{port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reply-bytes", type=int, required=True, help="size of the fixed reply")
    args = parser.parse_args()
    if args.reply_bytes < 0:
        parser.error(f"--reply-bytes: must be at least 0, got {args.reply_bytes}")
    asyncio.run(serve(args.reply_bytes))


if __name__ == "__main__":
    main()
