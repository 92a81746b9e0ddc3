"""Benchmark of ``fraudscore train`` on a file the size of Kaggle's (284,807 rows).

``python -m bench.train`` generates the file (cached under .cache/bench/), runs
the real CLI in a child process and records wall time, the child's peak RSS,
the stage split from the model card, and the evaluation (autoencoder against
the Isolation Forest and PCA baselines fitted in the same run) into
bench/results/train.json, then prints a table.

The trainer's design is chosen on real rows by ``fraudscore train --search``
(see ``bench.quality``); this benchmark measures cost, not quality choice.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / ".cache" / "bench"
ROWS = 284_807
GOAL_SECONDS = 180.0
GOAL_RSS_GB = 4.0


def dataset(rows: int, seed: int) -> Path:
    from fraudscore.dev.generate import DEFAULT_FRAUD_RATE, generate_frame, write_csv

    path = CACHE / f"generated-{rows}-seed{seed}.csv"
    if not path.exists():
        print(f"generating {rows} rows -> {path}", flush=True)
        tmp = path.with_suffix(".tmp")
        write_csv(generate_frame(rows, fraud_rate=DEFAULT_FRAUD_RATE, seed=seed), tmp, progress=True)
        tmp.rename(path)
    return path


def bench_train(data: Path, extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        cmd = [sys.executable, "-m", "fraudscore.cli", "train", "--data", str(data), "--out", tmp, *extra]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"train failed ({done.returncode}):\n{done.stderr[-3000:]}")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        version_dir = Path(tmp) / "creditcard" / "1"
        card = json.loads((version_dir / "model_card.json").read_text())
        report = json.loads((version_dir / "report" / "report.json").read_text())
    # The stage lines ("[train] fit: done in 12.3 s") include the export, which the card cannot.
    timings = {m[1]: float(m[2]) for m in re.finditer(r"\[train\] (\w+): done in ([\d.]+) s", done.stderr)}
    stages = {
        "load+split": timings.get("load", 0.0) + timings.get("split", 0.0),
        "analyze": timings["analyze"],
        "fit": timings["fit"],
        "evaluate": timings.get("calibrate", 0.0) + timings["evaluate"],
        "export": timings["export"],
        "start-up": max(0.0, wall - sum(timings.values())),  # interpreter, TensorFlow and Beam imports
    }
    models = report["models"]
    pca = next(v for k, v in models.items() if k.startswith("pca"))
    return {
        "rows": card["data"]["rows_read"],
        "wall_seconds": wall,
        "peak_rss_gb": peak_kb * 1024 / 1e9,
        "goal": {"wall_seconds": GOAL_SECONDS, "peak_rss_gb": GOAL_RSS_GB},
        "stages_seconds": stages,
        "epochs_run": card["training"]["epochs_run"],
        "best_epoch": card["training"]["best_epoch"],
        "splits": card["splits"],
        "threshold": card["threshold"],
        "models": models,
        "ae_over_pca_pr_auc": models["autoencoder"]["pr_auc"] / pca["pr_auc"],
        "metrics": card["metrics"],
        "table": report["table"],
        "command": " ".join(cmd[1:]).replace(tmp, "<tmp>"),
    }


def print_train(r: dict[str, Any]) -> None:
    print(f"\nfraudscore train on {r['rows']} generated rows ({r['command']})")
    print(
        f"  wall {r['wall_seconds']:.1f} s (goal < {GOAL_SECONDS:.0f}), peak RSS {r['peak_rss_gb']:.2f} GB "
        f"(goal < {GOAL_RSS_GB:.0f}); {r['epochs_run']} epochs, best {r['best_epoch']}"
    )
    print("  " + "  ".join(f"{k} {v:.1f}s" for k, v in r["stages_seconds"].items()))
    print(f"\n  {'model':<18}{'ROC-AUC':>9}{'PR-AUC':>9}{'val PR-AUC':>12}")
    for name, m in r["models"].items():
        print(f"  {name:<18}{m['roc_auc']:>9.4f}{m['pr_auc']:>9.4f}{m['validation_pr_auc']:>12.4f}")
    print(f"  autoencoder / PCA PR-AUC: {r['ae_over_pca_pr_auc']:.2f}x")
    print(f"\n  {'threshold':<32}{'value':>10}{'caught':>8}{'FP':>6}{'prec':>7}{'recall':>8}")
    for row in r["table"]:
        print(
            f"  {row['threshold']:<32}{row['value']:>10.4g}{row['frauds_caught']:>8}{row['false_positives']:>6}"
            f"{row['precision']:>7.3f}{row['recall']:>8.3f}"
        )
    print("  seed book (57,108 validation rows, 246 frauds): 112 caught / 1 FP at 1.1; 124 / 22 FP at 0.8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="generated rows (default: Kaggle's 284,807)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--output", default=None, help="result file name under bench/results/")
    parser.add_argument("train_args", nargs="*", help="extra flags for `fraudscore train` (after --)")
    args = parser.parse_args(argv)
    data = dataset(args.rows, args.seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = bench_train(data, args.train_args)
    out = RESULTS / (args.output or "train.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_train(result)
    print(f"\n-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
