"""Benchmark of ``fraudscore train`` on a file the size of Kaggle's (284,807 rows).

``python -m bench.train`` generates the file (cached under .cache/bench/), runs
the real CLI in a child process and records wall time, the child's peak RSS,
the stage split from the model card, and the evaluation (autoencoder against
the Isolation Forest and PCA baselines fitted in the same run) into
bench/results/train.json, then prints a table.

``python -m bench.train --compare`` is the evidence behind the trainer's
defaults: on the same split it runs the tf.Transform analysis with and
without log1p on Amount, fits several autoencoder variants and records each
one's validation PR-AUC (the selection criterion; test figures for
information) into bench/results/train_choices.json.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / ".cache" / "bench"
ROWS = 284_807
GOAL_SECONDS = 180.0
GOAL_RSS_GB = 4.0


def dataset(rows: int, seed: int) -> Path:
    from fraudscore.generate import DEFAULT_FRAUD_RATE, generate_frame, write_csv

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


WIDE = (24, 16, 8, 16, 24)
VARIANTS: list[dict[str, Any]] = [
    {"name": "seed 20-10-7 tanh lr1e-3 b256, log Amount", "log": True},
    {"name": "seed 20-10-7 tanh lr1e-3 b256, linear Amount", "log": False},
    {"name": "relu lr1e-3 b256, linear Amount", "log": False, "activation": "relu"},
    {"name": "tanh lr3e-3 b256, linear Amount", "log": False, "learning_rate": 3e-3},
    {
        "name": "tanh lr3e-3 b1024 150ep, linear Amount",
        "log": False,
        "learning_rate": 3e-3,
        "batch_size": 1024,
        "epochs": 150,
    },
    {"name": "24-16-8 tanh lr3e-3 b256, log Amount", "log": True, "learning_rate": 3e-3, "hidden": WIDE},
    {"name": "24-16-8 tanh lr3e-3 b256, linear Amount", "log": False, "learning_rate": 3e-3, "hidden": WIDE},
    {
        "name": "24-16-8 tanh lr3e-3 b1024 150ep, log Amount",
        "log": True,
        "learning_rate": 3e-3,
        "batch_size": 1024,
        "epochs": 150,
        "hidden": WIDE,
    },
    {
        "name": "24-16-8 tanh lr3e-3 b1024 150ep, linear Amount",
        "log": False,
        "learning_rate": 3e-3,
        "batch_size": 1024,
        "epochs": 150,
        "hidden": WIDE,
    },
]


def compare(data: Path, names: list[str] | None, train_seed: int) -> dict[str, Any]:
    """Fits each variant on one split; analysis once per Amount scaling."""
    import numpy as np

    from trainer import analyze, autoencoder, evaluate, split
    from trainer import data as data_mod
    from trainer.config import TrainConfig

    base = TrainConfig(data=data, verbose=False, seed=train_seed)
    loaded = data_mod.load_csv(data, base.features)
    parts = split.split(loaded.frame, True)
    y_val, y_test = split.labels(parts.validation, True), split.labels(parts.test, True)
    assert y_val is not None and y_test is not None
    arrays: dict[bool, tuple[Any, Any, Any]] = {}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for log in (True, False):
            work = f"{tmp}/{int(log)}"
            Path(work).mkdir()
            start = time.perf_counter()
            out = analyze.analyze(parts.train, base.features, base.log_features if log else (), work)
            t = analyze.Transformer(out, base.features)
            arrays[log] = (t.transform(parts.train)[0], t.transform(parts.validation)[0], t.transform(parts.test)[0])
            print(f"analysis log={log}: {time.perf_counter() - start:.1f} s", flush=True)
        for v in VARIANTS:
            if names and v["name"] not in names:
                continue
            cfg = replace(
                base, **{k: v[k] for k in ("activation", "learning_rate", "batch_size", "hidden", "epochs") if k in v}
            )
            x_train, x_val, x_test = arrays[v["log"]]
            autoencoder.set_determinism(cfg.seed)
            model = autoencoder.build(len(cfg.features), cfg.hidden, cfg.activation, cfg.learning_rate)
            start = time.perf_counter()
            hist = autoencoder.fit(
                model,
                x_train,
                x_val[y_val == 0],
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                patience=cfg.patience,
                log_dir=None,
                verbose=False,
            )
            fit_s = time.perf_counter() - start
            val = evaluate.ranking(autoencoder.errors(model, x_val)[0], y_val)
            test = evaluate.ranking(autoencoder.errors(model, x_test)[0], y_test)
            row = {
                **{k: (list(x) if isinstance(x, tuple) else x) for k, x in v.items()},
                "validation_pr_auc": val["pr_auc"],
                "validation_roc_auc": val["roc_auc"],
                "test_pr_auc": test["pr_auc"],
                "epochs_run": hist["epochs_run"],
                "best_epoch": hist["best_epoch"],
                "fit_seconds": fit_s,
            }
            results.append(row)
            print(
                f"{v['name']:<32} val PR-AUC {row['validation_pr_auc']:.4f}  test {row['test_pr_auc']:.4f}  "
                f"epochs {row['epochs_run']} (best {row['best_epoch']})  {fit_s:.0f} s",
                flush=True,
            )
        pca = evaluate.baselines(*arrays[True], components=min(base.hidden), seed=base.seed)
    for b in pca:
        print(
            f"{b.name:<32} val PR-AUC {evaluate.ranking(b.validation_scores, y_val)['pr_auc']:.4f}  "
            f"test {evaluate.ranking(b.test_scores, y_test)['pr_auc']:.4f}"
        )
    return {
        "rows": len(loaded.frame),
        "variants": results,
        "baselines": {
            b.name: {
                "validation_pr_auc": evaluate.ranking(b.validation_scores, y_val)["pr_auc"],
                "test_pr_auc": evaluate.ranking(b.test_scores, y_test)["pr_auc"],
            }
            for b in pca
        },
        "selection": "highest validation PR-AUC; test PR-AUC shown for information only",
        "amount_log1p_validation_pr_auc": next((r["validation_pr_auc"] for r in results if r["log"]), np.nan),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="generated rows (default: Kaggle's 284,807)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--compare", action="store_true", help="compare Amount scaling and model variants instead")
    parser.add_argument("--variant", action="append", help="with --compare: only these variant names")
    parser.add_argument("--train-seed", type=int, default=42, help="with --compare: the training seed")
    parser.add_argument("--output", default=None, help="result file name under bench/results/")
    parser.add_argument("train_args", nargs="*", help="extra flags for `fraudscore train` (after --)")
    args = parser.parse_args(argv)
    data = dataset(args.rows, args.seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.compare:
        result = compare(data, args.variant, args.train_seed)
        out = RESULTS / (args.output or "train_choices.json")
        out.write_text(json.dumps({**result, "train_seed": args.train_seed}, indent=2) + "\n")
        print(f"-> {out}")
        return 0
    result = bench_train(data, args.train_args)
    out = RESULTS / (args.output or "train.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_train(result)
    print(f"\n-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
