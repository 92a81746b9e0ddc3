"""The C heap's free pages handed back to the system: the real malloc_trim on a fragmented heap, and the thread."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from prometheus_client import REGISTRY

from fraudscore import native_heap

# A heap fragmented as the stream job's is: many 0.5-3 KB bytes (past Python's small-object allocator, so
# from malloc), two in three freed in random order; the RSS before and after one trim, in MB.
_FRAGMENTED = """
import json, random, sys
from fraudscore import native_heap

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))

random.seed(7)
kept = [bytes(random.randint(512, 3000)) for _ in range(120_000)]
random.shuffle(kept)
for i in range(len(kept)):
    if i % 3:
        kept[i] = None
before = rss_mb()
native_heap.HeapTrimmer().trim_once()
print(json.dumps({"before": before, "after": rss_mb(), "live": sum(len(b) for b in kept if b) / 2**20}))
"""


def test_a_trim_hands_the_free_pages_inside_the_heap_back() -> None:
    assert native_heap.malloc_trim() is not None  # glibc (Debian): the job's platform
    out = subprocess.run([sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, check=True, timeout=120)
    mb = json.loads(out.stdout)
    freed_mb = mb["live"] * 2  # two in three of ~200 MB freed, between live chunks
    # Without the trim glibc keeps every freed page of a fragmented heap; with it the whole free pages return
    # (56 of the 134 MB freed here: a page that still holds part of a live chunk stays).
    assert mb["before"] - mb["after"] > 0.25 * freed_mb, mb


def test_the_thread_trims_every_interval_until_stopped() -> None:
    calls: list[int] = []
    twice = threading.Event()

    def trim(pad: int) -> int:
        calls.append(pad)
        if len(calls) >= 2:
            twice.set()
        return 1

    trimmer = native_heap.HeapTrimmer(0.01, trim=trim).start()
    try:
        assert twice.wait(10)
    finally:
        trimmer.stop()
    stopped_at = len(calls)
    assert calls[:2] == [0, 0]  # pad 0: keep nothing spare at the heap's top
    assert not any(t.name == "heap-trim" and t.is_alive() for t in threading.enumerate())
    assert len(calls) == stopped_at


def test_trims_are_timed_in_the_histogram() -> None:
    def count() -> float | None:
        return REGISTRY.get_sample_value("fraudscore_native_heap_trim_seconds_count")

    before = count()
    native_heap.HeapTrimmer(trim=lambda pad: 0).trim_once()
    assert before is not None and count() == before + 1


def test_without_malloc_trim_no_thread_starts() -> None:
    trimmer = native_heap.HeapTrimmer(0.01)
    trimmer._trim = None  # a C library without malloc_trim (musl, macOS)
    trimmer.start()
    assert not trimmer._thread.is_alive()
    trimmer.stop()
