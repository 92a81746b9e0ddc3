"""bench/scorer.py's arithmetic on hand-made runs: ScoreColumns per call size against in-process, round by
round, the echo's bound and which figure decides the goal. No server is started."""

from __future__ import annotations

from typing import Any

import pytest

from bench import scorer
from bench.scorer import columns_label, echo_label, goal_key


def _run(label: str, mode: str, concurrency: int, calls_per_s: float, rows: int = 1) -> dict[str, Any]:
    return {
        "label": label,
        "mode": mode,
        "concurrency": concurrency,
        "calls_per_s": calls_per_s,
        "rows_per_s": calls_per_s * rows,
        "p50_ms": 1000 / calls_per_s,
        "p99_ms": 2000 / calls_per_s,
    }


def _rounds(label: str, mode: str, rows: int, calls_per_s: list[float]) -> list[dict[str, Any]]:
    return [_run(label, mode, 1, c, rows) for c in calls_per_s]


# Three rounds at 1,000 rows per call where the ratio of the medians (200 / 500 = 0.4) and the median of the
# per-round ratios (0.1, 0.6, 0.5 -> 0.5) differ: the rounds must be paired in their order, not sorted.
SAMPLES_1000 = {
    (columns_label(1000), 1): _rounds(columns_label(1000), "columns", 1000, [0.1, 0.3, 0.2]),
    (echo_label(1000), 1): _rounds(echo_label(1000), "echo", 1000, [1.0, 2.0, 4.0]),
}
IN_PROCESS_1000 = {1000: [1000.0, 500.0, 400.0]}


def test_echo_bound_is_model_time_over_model_plus_transport_time() -> None:
    # 1,000 rows at 1M rows/s: 1 ms of model; an echo of 1,000 calls/s: 1 ms of transport.
    assert scorer.echo_bound(1000, 1_000_000, 1000) == pytest.approx(0.5)
    # The same transport under a 4 ms model call (4,000 rows): 4 / 5.
    assert scorer.echo_bound(4000, 1_000_000, 1000) == pytest.approx(0.8)
    # A transport 4x cheaper: 1 / 1.25.
    assert scorer.echo_bound(1000, 1_000_000, 4000) == pytest.approx(0.8)


def test_columns_by_rows_pairs_each_round_with_its_own_in_process_figure() -> None:
    c = scorer.columns_by_rows(SAMPLES_1000, IN_PROCESS_1000)[1000]
    assert c["rows_per_s"] == pytest.approx(200)
    assert c["in_process_rows_per_s"] == pytest.approx(500)
    assert c["vs_in_process"] == pytest.approx(0.4)
    assert c["vs_in_process_rounds"] == [0.1, 0.6, 0.5]
    assert c["vs_in_process_round_by_round"] == pytest.approx(0.5)
    assert c["model_call_ms"] == pytest.approx(2000)  # 1,000 rows at 500 rows/s
    assert c["echo_call_ms"] == pytest.approx(500)  # median echo round: 2 calls/s
    assert c["echo_rows_per_s"] == pytest.approx(2000)
    assert c["echo_bound"] == pytest.approx(2000 / 2500)
    # Round by round: model 1 s + echo 1 s; 2 s + 0.5 s; 2.5 s + 0.25 s.
    assert c["echo_bound_rounds"] == [0.5, 0.8, round(2.5 / 2.75, 3)]
    assert c["echo_bound_round_by_round"] == pytest.approx(0.8)


def _three_sizes() -> tuple[dict[tuple[str, int], list[dict[str, Any]]], dict[int, list[float]]]:
    """1,000 rows: 0.4x (0.5x round by round); 4,000: 0.45x; 10,000: 0.6x, every round."""
    samples, local = dict(SAMPLES_1000), dict(IN_PROCESS_1000)
    for rows, ratio in ((4000, 0.45), (10_000, 0.6)):
        model = 1_000_000.0
        samples[(columns_label(rows), 1)] = _rounds(columns_label(rows), "columns", rows, [ratio * model / rows] * 3)
        samples[(echo_label(rows), 1)] = _rounds(echo_label(rows), "echo", rows, [1000.0] * 3)
        local[rows] = [model] * 3
    return samples, local


def _runs() -> list[dict[str, Any]]:
    """The points summarize reads, besides ScoreColumns by size: floor 1,000 calls/s everywhere."""
    runs = [_run("floor", "health", c, 1000) for c in (1, 64)]
    runs += [_run("scorer", "score", 1, 800), _run("scorer", "score", 64, 700)]
    runs += [_run("naive", "score", 1, 400), _run("naive", "score", 64, 350)]
    runs += [_run("score_batch", "batch", 1, 0.05, 1000)]
    runs += [_run("score_columns", "columns", 1, 0.2, 1000), _run("score_columns", "columns", 2, 0.3, 1000)]
    return runs


def test_the_goal_is_decided_at_the_largest_call_size_and_reported_per_size() -> None:
    columns = scorer.columns_by_rows(*_three_sizes())
    summary = scorer.summarize(_runs(), 1000.0, columns)
    goals = summary["goals"]
    assert goals[goal_key(10_000)] is True
    assert not any(key.startswith("ScoreColumns") and key != goal_key(10_000) for key in goals)
    assert goal_key(10_000) == "ScoreColumns >= 0.5x in-process (10,000-row calls)"
    assert summary["goals_score_columns_by_call_size"] == {
        goal_key(1000): {"met": False, "met_round_by_round": True},
        goal_key(4000): {"met": False, "met_round_by_round": False},
        goal_key(10_000): {"met": True, "met_round_by_round": True},
    }
    assert summary["score_columns_by_call_size"] is columns


def test_the_earlier_summary_keys_keep_their_1000_row_meaning() -> None:
    summary = scorer.summarize(_runs(), 1000.0, scorer.columns_by_rows(*_three_sizes()))
    # Against the whole-run in-process figure (``limit``), as before the per-size points.
    assert summary["score_columns_vs_in_process"] == pytest.approx(0.2)
    assert summary["score_columns_2_clients_vs_in_process"] == pytest.approx(0.3)
    assert summary["score_batch_vs_in_process"] == pytest.approx(0.05)
    assert summary["score_columns_vs_score_batch"] == pytest.approx(4)
    assert summary["score_c1_vs_floor_p50"] == pytest.approx(1000 / 800)
    assert summary["score_c64_vs_floor_throughput"] == pytest.approx(0.7)
    assert summary["score_vs_naive"] == {1: pytest.approx(2), 64: pytest.approx(2)}
    assert goals_without_columns(summary["goals"]) == {
        "p50 <= 2x floor at c=1": True,
        "throughput >= 0.75x floor at c=64": False,
        "p99 <= 2x floor at c=64": True,
    }


def goals_without_columns(goals: dict[str, bool]) -> dict[str, bool]:
    return {k: v for k, v in goals.items() if not k.startswith("ScoreColumns")}


def test_round_by_round_goals_use_the_median_of_the_per_round_ratios() -> None:
    # Only 1,000 rows measured: 0.4x as the ratio of the medians, 0.5x round by round.
    columns = scorer.columns_by_rows(SAMPLES_1000, IN_PROCESS_1000)
    paired = {
        "median": {"score_c1_vs_floor_p50": 2.1, "score_c64_vs_floor_throughput": 0.75, "score_c64_vs_floor_p99": 1.0}
    }
    assert scorer.round_by_round_goals(paired, columns) == {
        "p50 <= 2x floor at c=1": False,
        "throughput >= 0.75x floor at c=64": True,
        "p99 <= 2x floor at c=64": True,
        goal_key(1000): True,
    }
    assert scorer.summarize(_runs(), 1000.0, columns)["goals"][goal_key(1000)] is False


def test_table_prints_a_row_per_call_size_and_the_goals_by_size() -> None:
    samples, local = _three_sizes()
    runs = _runs() + [{"label": label, **scorer._median(rounds)} for (label, _), rounds in samples.items()]
    summary = scorer.summarize(runs, 1000.0, scorer.columns_by_rows(samples, local))
    out = scorer.table(runs, 1000.0, summary)
    assert "| 10,000 | 600,000 | 1,000,000 | 0.60 | 0.60 [0.60, 0.60, 0.60] | 10,000,000 | 1.000 | 10.000 |" in out
    assert "| echo@4000 | 1 | 1,000 | 4,000,000 |" in out
    assert f"- {goal_key(4000)}: NOT met; NOT met" in out
    assert f"- {goal_key(10_000)}: met" in out


def test_call_sizes_below_one_row_are_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        scorer.main(["--model-base", "models/none", "--columns-rows", "1000", "0"])
    assert exit_.value.code == 2
    assert "--columns-rows: each size must be at least 1 row, got 0" in capsys.readouterr().err
