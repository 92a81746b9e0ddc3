"""Per-batch metric calls count exactly what per-transaction ones did."""

from __future__ import annotations

from prometheus_client import REGISTRY

from stream import metrics


def _snapshot() -> dict[str, float]:
    names: tuple[tuple[str, dict[str, str]], ...] = (
        ("fraudscore_stream_transactions_total", {"outcome": "anomaly"}),
        ("fraudscore_stream_transactions_total", {"outcome": "normal"}),
        ("fraudscore_reconstruction_error_count", {}),
        ("fraudscore_reconstruction_error_sum", {}),
        ("fraudscore_reconstruction_error_bucket", {"le": "0.1"}),
        ("fraudscore_out_of_range_features_total", {}),
        ("fraudscore_stream_stage_lag_seconds_count", {"stage": "scored"}),
        ("fraudscore_stream_stage_lag_seconds_bucket", {"stage": "scored", "le": "0.05"}),
    )
    return {f"{n}{labels}": REGISTRY.get_sample_value(n, labels) or 0.0 for n, labels in names}


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 9) for k in before}


def test_scored_batch_counts_like_one_call_per_transaction() -> None:
    errors, anomalies, out_of_range = [0.01, 0.5, 2.0, 0.03], [False, True, True, False], [0, 2, 0, 1]
    lags = [0.01, -1.0, 3.0, 0.2]

    start = _snapshot()
    for e, a, o in zip(errors, anomalies, out_of_range, strict=True):
        metrics.scored(e, a, o)
    for lag in lags:
        metrics.stage_lag("scored", lag)
    one_by_one = _delta(start, _snapshot())

    start = _snapshot()
    metrics.scored_batch(errors, anomalies, out_of_range)
    metrics.stage_lags("scored", lags)
    batched = _delta(start, _snapshot())

    assert batched == one_by_one
    assert one_by_one["fraudscore_stream_transactions_total{'outcome': 'anomaly'}"] == 2
    assert one_by_one["fraudscore_out_of_range_features_total{}"] == 3
