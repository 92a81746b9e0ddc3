"""bench/echo_server.py's allocator setting: without it the echo pays page faults the scorer does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process (mallopt is process-wide): megabyte buffers allocated and freed, as each call's request
# and reply are, then the minor page faults per cycle. Without settle_allocator a fresh Python here takes
# ~600 per 1.3 MB cycle (the buffer mapped and zeroed again every time).
CYCLES = """
import resource, sys
from bench.echo_server import settle_allocator
assert settle_allocator()
def cycle():
    a = bytearray(1_300_000); a[::4096] = b"x" * len(a[::4096]); b = bytes(a); del a, b
for _ in range(5):
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    cycle()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)
"""


def test_settled_allocator_reuses_megabyte_buffers_without_page_faults() -> None:
    out = subprocess.run([sys.executable, "-c", CYCLES], cwd=ROOT, capture_output=True, text=True, check=True)
    faults_per_cycle = float(out.stdout.strip())
    assert faults_per_cycle < 10, f"{faults_per_cycle} page faults per 1.3 MB allocate/free cycle"
