"""The transport floor of bench/scorer.py's ScoreColumns points: a grpc.aio server that does no work.

    python -m bench.echo_server --reply-bytes 44000

One generic unary method, ``/bench.Echo/Reply``, takes any request as raw bytes (no parsing) and returns a
fixed reply of ``--reply-bytes`` bytes, with the same message limits as `fraudscore serve`. Called with a real
ScoreColumns request's bytes and sized like its real reply, its calls/s is what the transport alone
allows (both event loops, HTTP/2, the copies), so the gap between it and ScoreColumns is the server's own
work. Prints ``LISTENING host:port`` once serving, like `fraudscore serve`.

glibc's allocator is set as `fraudscore serve`'s ends up (see :func:`settle_allocator`), so the echo moves
the same bytes at the same cost as the scorer would.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util

import grpc

from scorer.config import ServeConfig, grpc_server_options

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Reply"


# mallopt(3) parameters: free heap kept before it is given back, and the size from which malloc maps memory.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def settle_allocator() -> bool:
    """Pins glibc malloc's thresholds at the maxima its dynamic rule reaches (32 MB mmap, 64 MB trim).

    Each call allocates and frees megabyte buffers (a 10,000-row request is 1.28 MB). With the thresholds
    where a fresh small process leaves them, they go to mmap or are trimmed back after each call and their
    pages are faulted in and zeroed again: measured here, 2.6 ms of the echo server's CPU per 10,000-row
    call instead of 0.9, and the echo's calls/s halved, depending on the process's allocations before the
    first call. `fraudscore serve` (TensorFlow's large allocations behind it) showed no such cost: the same
    pinning there, as MALLOC_*_THRESHOLD_ variables, moved its 10,000-row calls by less than the noise of
    three alternating rounds. False where the C library has no mallopt (not glibc).
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, 64 << 20) and mallopt(M_MMAP_THRESHOLD, 32 << 20))


async def serve(reply_bytes: int, host: str = "127.0.0.1") -> None:
    reply = bytes(reply_bytes)

    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return reply

    # The options `fraudscore serve` has by default, so large calls behave alike on both.
    server = grpc.aio.server(options=grpc_server_options(ServeConfig.max_message_bytes))
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
    settle_allocator()
    asyncio.run(serve(args.reply_bytes))


if __name__ == "__main__":
    main()
