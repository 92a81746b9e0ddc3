"""Metric conventions shared by every service's Prometheus metrics.

One bucket layout for the reconstruction-error histogram, so the scorer's and
the stream's series can be summed into one Grafana heatmap.
"""

from __future__ import annotations

# Errors of min-max scaled rows: normals sit around 1e-3..1e-2, frauds up to ~10;
# a 1-2-5 series per decade from 1e-4 to 100.
RECONSTRUCTION_ERROR_BUCKETS: tuple[float, ...] = tuple(
    round(m * 10.0**e, 6) for e in range(-4, 3) for m in (1.0, 2.0, 5.0) if m * 10.0**e <= 100.0
)
