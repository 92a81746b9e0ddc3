"""Detection quality on real card rows: the shipped default model against hard-to-beat baselines.

``python -m bench.quality`` trains the shipped default design (``fraudscore
train``'s defaults, no flags) on the real sample shipped in ``samples/``,
once per seed, and scores the test split *through the exported SavedModel*.
On the same split, in the same run, with the same seeds:

- PCA reconstruction error, scaling (min-max or z-score) and component count
  (1..F-1) chosen on validation;
- Isolation Forest (scikit-learn, 100 trees) on min-max scaled rows;
- the seed book's network: min-max scaled and clipped, F-20-10-7-10-20-F, tanh,
  sigmoid output, plain mean squared error, trained with the same loop.

Per model and seed: test PR-AUC, ROC-AUC, recall at precision >= 0.85, and
frauds caught at 1 and at 22 false positives per 10,000 test normals (the
cut is taken on the test split itself, as the seed book's table did; the
numbers of false positives are rounded down). Mean and sample sd over seeds go
to ``bench/results/quality.json`` with a verdict against the goals.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SAMPLE = ROOT / "samples" / "creditcard-real-dev.csv.gz"
SEEDS = (0, 1, 2)
PRECISION_TARGET = 0.85
FP_PER_10K = (1, 22)
SEED_BOOK_HIDDEN = (20, 10, 7, 10, 20)


def recall_at_precision(scores: np.ndarray, labels: np.ndarray, target: float = PRECISION_TARGET) -> float:
    """The highest recall of any cut whose precision is at least ``target`` (0 if none reaches it)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(labels, scores)
    ok = precision >= target
    return float(recall[ok].max()) if ok.any() else 0.0


def caught_at_fp(scores: np.ndarray, labels: np.ndarray, max_fp: int) -> int:
    """Frauds scored strictly above the (max_fp+1)-th highest normal: caught with at most ``max_fp`` FPs."""
    from trainer.evaluate import cut_under_fp

    return int(np.sum(scores[labels == 1] > cut_under_fp(scores, labels, max_fp)))


def metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from trainer.evaluate import ranking

    n_normals = int(np.sum(labels == 0))
    out = {
        **ranking(scores, labels),
        "recall_at_precision_0.85": recall_at_precision(scores, labels),
        "test_frauds": int(labels.sum()),
    }
    for k in FP_PER_10K:
        max_fp = math.floor(n_normals * k / 10_000)
        out[f"caught_at_{k}_fp_per_10k"] = caught_at_fp(scores, labels, max_fp)
        out[f"max_fp_at_{k}_per_10k"] = max_fp
    return out


def one_seed(data: Path, seed: int, work: Path) -> dict[str, dict[str, Any]]:
    from fraudscore.model import load
    from trainer import autoencoder, split
    from trainer import data as data_mod
    from trainer.config import TrainConfig
    from trainer.evaluate import baselines, ranking
    from trainer.pipeline import Fitter, run

    out: dict[str, dict[str, Any]] = {}
    base = TrainConfig(data=data, model_base=work / f"models-{seed}" / "creditcard", seed=seed, verbose=False)

    start = time.perf_counter()
    result = run(replace(base, baselines=False, plots=False))
    model = load(base.model_base, result.version)
    loaded = data_mod.load_csv(data)
    parts = split.split(loaded.frame, True)
    y_val, y_test = split.labels(parts.validation, True), split.labels(parts.test, True)
    assert y_val is not None and y_test is not None
    scored = model.score(parts.test[list(model.features)].to_numpy(np.float32))
    flagged = scored.is_anomaly
    out["default"] = {
        **metrics(scored.reconstruction_error, y_test),
        "design": result.card["training"]["design"],
        "at_threshold": {
            "caught": int(np.sum(flagged & (y_test == 1))),
            "false_positives": int(np.sum(flagged & (y_test == 0))),
        },
        "seconds": time.perf_counter() - start,
    }

    fitter = Fitter(parts, y_val, str(work / f"work-{seed}"), datetime.now(UTC))
    pcas = []
    for scaling in ("minmax", "zscore"):
        cfg = replace(base, scaling=scaling, clip=False)
        _, transformer, x_train, x_val = fitter.analysis(cfg)
        x_test, _ = transformer.transform(parts.test)
        found = baselines(x_train, x_val, x_test, y_val, seed=seed)
        pca = next(b for b in found if b.name.startswith("pca"))
        pcas.append((ranking(pca.validation_scores, y_val)["pr_auc"], scaling, pca))
        if scaling == "minmax":
            forest = next(b for b in found if b.name == "isolation_forest")
            out["isolation_forest"] = {**metrics(forest.test_scores, y_test), "seconds": forest.seconds}
    val_pr, scaling, pca = max(pcas, key=lambda p: p[0])
    out["pca"] = {**metrics(pca.test_scores, y_test), "design": f"{scaling} {pca.name}", "validation_pr_auc": val_pr}

    start = time.perf_counter()
    seed_cfg = replace(
        base,
        scaling="minmax",
        clip=True,
        hidden=SEED_BOOK_HIDDEN,
        activation="tanh",
        error_weighting="none",
        pca_components=0,
    )
    cand = fitter(seed_cfg)
    _, transformer, _, _ = fitter.analysis(seed_cfg)
    x_test, _ = transformer.transform(parts.test)
    errors, _ = autoencoder.errors(cand.model, x_test, cand.weights)
    out["seed_book_network"] = {
        **metrics(errors, y_test),
        "design": seed_cfg.describe(),
        "seconds": time.perf_counter() - start,
    }
    return out


def summarise(per_seed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name in per_seed[0]:
        runs = [s[name] for s in per_seed]
        keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        summary[name] = {
            k: {
                "mean": float(np.mean([r[k] for r in runs])),
                "sd": float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
            }
            for k in keys
            if k != "seconds"
        }
        if "design" in runs[0]:
            summary[name]["design"] = sorted({r["design"] for r in runs})
    return summary


def verdict(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    default = summary["default"]
    others = {k: v for k, v in summary.items() if k != "default"}
    best_pr = max(others, key=lambda k: others[k]["pr_auc"]["mean"])
    best_recall = max(v["recall_at_precision_0.85"]["mean"] for v in others.values())
    return {
        "best_baseline_by_pr_auc": best_pr,
        "pr_auc_margin_over_best_baseline": default["pr_auc"]["mean"] - others[best_pr]["pr_auc"]["mean"],
        "beats_every_baseline_mean_pr_auc": all(
            default["pr_auc"]["mean"] > v["pr_auc"]["mean"] for v in others.values()
        ),
        "recall_at_p085_not_below_best_baseline": default["recall_at_precision_0.85"]["mean"] >= best_recall,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| model | PR-AUC | ROC-AUC | recall at precision >= 0.85 | caught at 1 FP / 10k | caught at 22 FP / 10k |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    frauds = int(result["summary"]["default"]["test_frauds"]["mean"])
    for name, s in result["summary"].items():

        def cell(key: str, fmt: str = ".3f", s: dict[str, Any] = s) -> str:
            return f"{s[key]['mean']:{fmt}} ± {s[key]['sd']:{fmt}}"

        lines.append(
            f"| {name} | {cell('pr_auc')} | {cell('roc_auc')} | {cell('recall_at_precision_0.85', '.2f')} "
            f"| {cell('caught_at_1_fp_per_10k', '.1f')} of {frauds} "
            f"| {cell('caught_at_22_fp_per_10k', '.1f')} of {frauds} |"
        )
    return "\n".join(lines)


def search_evidence(data: Path, out: Path) -> int:
    """The model search on ``data`` with the trainer's search defaults; its table and the winner's figures."""
    from trainer.config import TrainConfig
    from trainer.pipeline import run

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        config = TrainConfig(data=data, model_base=Path(tmp) / "creditcard", search=True, plots=False)
        start = time.perf_counter()
        result = run(config)
        seconds = time.perf_counter() - start
    report = result.report
    evidence = {
        "data": str(data.relative_to(ROOT) if data.is_relative_to(ROOT) else data),
        "command": "fraudscore train --data <data> --search (trainer defaults: "
        f"{config.search_trials} trials, seeds {list(config.search_seeds)})",
        "seconds": seconds,
        "search": report["search"],
        "winner_design": report["training"]["design"],
        "winner_test_for_information": {k: report["models"]["autoencoder"][k] for k in ("pr_auc", "roc_auc")},
        "baselines_test_for_information": {
            k: {m: v[m] for m in ("pr_auc", "roc_auc", "validation_pr_auc")}
            for k, v in report["models"].items()
            if k != "autoencoder"
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(evidence, indent=2) + "\n")
    print(f"winner: {evidence['winner_design']} -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="labelled CSV (default: the shipped real sample)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds (at least 3)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/<mode>.json)")
    parser.add_argument(
        "--search",
        action="store_true",
        help="instead: run `fraudscore train --search` on the data and write its table (the evidence behind the "
        "shipped default) to bench/results/search.json",
    )
    args = parser.parse_args(argv)
    if args.search:
        return search_evidence(args.data, args.out or RESULTS / "search.json")
    args.out = args.out or RESULTS / "quality.json"
    seeds = [int(s) for s in args.seeds.split(",")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        for seed in seeds:
            print(f"[quality] seed {seed}: default model, baselines ...", file=sys.stderr, flush=True)
            per_seed.append(one_seed(args.data, seed, Path(tmp)))
            d = per_seed[-1]
            print(
                "[quality] seed " + str(seed) + ": " + ", ".join(f"{k} PR-AUC {v['pr_auc']:.3f}" for k, v in d.items()),
                file=sys.stderr,
                flush=True,
            )
    summary = summarise(per_seed)
    result = {
        "data": str(args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data),
        "split": "time-ordered: normals 60/20/20 train/validation/test, frauds 50/50 validation/test",
        "seeds": seeds,
        "per_seed": per_seed,
        "summary": summary,
        "verdict": verdict(summary),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(json.dumps(result["verdict"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
