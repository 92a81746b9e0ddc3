"""In-process cost of occlusion explanations, on real rows: what a call with top features pays.

    python -m bench.explain_cost [--model-base models/<name>] [--seconds 0.5] [--rounds 5]

``LoadedModel.score`` (the LiteRT fast path when it passed its load-time check, as the scorer uses it) called
directly, in three modes measured in the same run: no explanations (the baseline), explaining every row
(Score, ScoreBatch, the stream), and explaining only the rows ``is_anomaly`` flags (ScoreColumns). Rows are
the shipped real sample's (seeded draws, its own mix of normals and frauds), at 1 row (a normal one and a
flagged one), 100 and 10,000 rows a call; each figure is the best of ``--rounds`` rounds of
``--seconds``. Writes bench/results/explain_cost.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.scorer import _calls_per_s, default_model_base

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "explain_cost.json"
SAMPLE = ROOT / "samples" / "creditcard-real-dev.csv.gz"
MODES = ("scores only", "explain every row", "explain flagged rows")
SIZES = ("1 normal row", "1 flagged row", "100 rows", "10,000 rows")


def call_sets(rows: np.ndarray, flagged: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The calls measured: one normal row, one flagged row, and 100 and 10,000 rows drawn from ``rows``."""
    return {
        SIZES[0]: rows[np.flatnonzero(~flagged)[:1]],
        SIZES[1]: rows[np.flatnonzero(flagged)[:1]],
        SIZES[2]: rows[rng.integers(0, len(rows), 100)],
        SIZES[3]: rows[rng.integers(0, len(rows), 10_000)],
    }


def measure(model: Any, calls: dict[str, np.ndarray], seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """Per call and mode, the best round's milliseconds a call, and the share of the call's rows flagged."""
    modes = {
        MODES[0]: lambda r: model.score(r),
        MODES[1]: lambda r: model.score(r, explain=True),
        MODES[2]: lambda r: model.score(r, explain=True, only_flagged=True),
    }
    out: dict[str, dict[str, float]] = {}
    for size, rows in calls.items():
        best = {name: 0.0 for name in modes}
        for _ in range(rounds):  # interleaved: each round measures every mode once
            for name, score in modes.items():
                best[name] = max(best[name], _calls_per_s(score, rows, seconds))
        out[size] = {name: 1000 / calls_per_s for name, calls_per_s in best.items()}
        out[size]["flagged_share"] = float(np.mean(model.score(rows).is_anomaly))
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        "| call | flagged | " + " | ".join(MODES) + " | every row / scores only | flagged rows / scores only |",
        "| --- | ---: |" + " ---: |" * (len(MODES) + 2),
    ]
    for size, m in result["calls"].items():
        cells = " | ".join(f"{m[name]:.3f} ms" for name in MODES)
        lines.append(
            f"| {size} | {m['flagged_share']:.1%} | {cells} | {m[MODES[1]] / m[MODES[0]]:.1f}x "
            f"| {m[MODES[2]] / m[MODES[0]]:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explain_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base", type=Path, default=None, help="default: the newest under models/")
    parser.add_argument("--data", type=Path, default=SAMPLE, help="CSV whose rows are scored (default: the sample)")
    parser.add_argument("--seconds", type=float, default=0.5, help="each round's length per call and mode")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each figure is the best one")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pandas as pd

    from fraudscore.model import load

    base = args.model_base or default_model_base()
    if base is None:
        parser.error("no model under models/: train one or pass --model-base")
    model = load(base)
    rows = pd.read_csv(args.data)[list(model.features)].to_numpy(np.float32)
    calls = call_sets(rows, model.score(rows).is_anomaly, np.random.default_rng(0))
    load_before = os.getloadavg()[0]
    result = {
        "model": f"{model.card.name} v{model.version} ({base})",
        "fast_path": model.fast_path.runtime,
        "data": str(args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "calls": measure(model, calls, args.seconds, args.rounds),
        "load_average_1m": {"start": load_before, "end": os.getloadavg()[0]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"load average (1 min): {load_before:.2f} at the start, {result['load_average_1m']['end']:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
