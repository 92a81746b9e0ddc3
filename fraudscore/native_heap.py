"""The C heap of a long-running process: freed memory handed back to the system, every minute.

Measured in the stream job's 60-minute memory soak (``bench.stream --memory-soak``, glibc's ``mallinfo2``
sampled every 30 s in the job): once the cards' state stopped growing (minute 15) the C heap's live bytes
stayed flat at ~430 MB, but its *free* bytes rose ~7 MB a minute, and the process's RSS with them. Every
allocation past Python's small-object limit (512 bytes: packed card states, batches, gRPC and protobuf
buffers) comes from malloc, and lifetimes that interleave leave holes between live chunks. glibc returns
memory to the system only from the top of a heap; ``malloc_trim(0)`` also releases the whole
free pages inside it (``madvise``), which the next allocation there faults back in.

:class:`HeapTrimmer` calls it every ``interval_s`` from a daemon thread. A call walks the free chunks of
every arena holding their locks (tens of ms on a fragmented heap of this size, measured as the
``fraudscore_native_heap_trim_seconds`` histogram), which an allocating thread waits for. On a C library
without ``malloc_trim`` (musl, macOS) it does nothing, which is logged once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Histogram

_LOG = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 60.0

TRIM_SECONDS = Histogram(
    "fraudscore_native_heap_trim_seconds",
    "Time of one malloc_trim(0): the free pages of the C heap handed back to the system (allocations wait).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim``, or None where there is none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


class HeapTrimmer:
    """A daemon thread that hands the C heap's free pages back to the system every ``interval_s``."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, trim: Callable[[int], int] | None = None) -> None:
        self._interval_s = interval_s
        self._trim = trim or malloc_trim()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heap-trim", daemon=True)

    def start(self) -> HeapTrimmer:
        if self._trim is None:
            _LOG.info("no malloc_trim in this C library: freed C-heap memory stays with the process")
        else:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def trim_once(self) -> float:
        """One trim; returns its seconds."""
        assert self._trim is not None
        started = time.perf_counter()
        self._trim(0)
        took = time.perf_counter() - started
        TRIM_SECONDS.observe(took)
        return took

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.trim_once()
