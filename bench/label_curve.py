"""How many labels does the second stage need to earn its place? ``python -m bench.feedback --curve``.

Per seed, the autoencoder is trained as ``fraudscore train`` does on the shipped real sample (time-ordered
60/20/20 split, trainer.split). Its validation split stands for the analysts' labels: every legit row and k of
its frauds (k = 5, 10, 20, 50 and all; a seeded random choice below all). Three rankers are scored on the
test split (later rows, never seen by any fit or choice), by PR-AUC (average precision):

- ``second_stage``: trainer.second_stage.fit as ``fraudscore train --labels`` runs it (family chosen by
  time-ordered CV on the labelled rows, then refitted on all of them), ranking by ``fraud_probability``;
- ``autoencoder``: the reconstruction error alone (the same for every k);
- ``gbdt``: scikit-learn's ``HistGradientBoostingClassifier`` with its defaults on the labelled rows' raw
  features alone (what a fraud team holding the labels would train instead).

Results per seed and point, mean and sd over seeds, to ``bench/results/label-curve.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality import ROOT

FRAUDS: tuple[int | None, ...] = (5, 10, 20, 50, None)  # labelled frauds of the validation split (None: all)
RANKERS = ("second_stage", "autoencoder", "gbdt")


def points(available: int) -> list[int]:
    """The k's of :data:`FRAUDS` this split can give (those above its frauds become "all", once)."""
    return sorted({available if k is None else min(k, available) for k in FRAUDS})


def one_seed(data: Path, seed: int, work: Path) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from fraudscore import features
    from fraudscore.model import load
    from trainer import data as data_mod
    from trainer import second_stage, split
    from trainer.config import TrainConfig
    from trainer.evaluate import ranking
    from trainer.pipeline import run

    start = time.perf_counter()
    config = TrainConfig(data=data, model_base=work / f"models-{seed}" / "creditcard", seed=seed, verbose=False)
    result = run(replace(config, baselines=False, plots=False))
    model = load(config.model_base, result.version)
    parts = split.split(data_mod.load_csv(data).frame, True)
    names = list(model.features)
    val_raw, test_raw = (p[names].to_numpy(np.float32) for p in (parts.validation, parts.test))
    y_val = parts.validation[features.LABEL].to_numpy().astype(np.int8)
    y_test = parts.test[features.LABEL].to_numpy().astype(np.int8)
    order = parts.validation[features.TIME].to_numpy(np.float64)
    val_scores, test_scores = model.score(val_raw), model.score(test_raw)
    autoencoder = ranking(test_scores.reconstruction_error, y_test)["pr_auc"]
    ae_seconds = time.perf_counter() - start
    frauds, legit = np.flatnonzero(y_val == 1), np.flatnonzero(y_val == 0)
    rng = np.random.default_rng(seed)
    out = []
    for k in points(len(frauds)):
        chosen = frauds if k == len(frauds) else np.sort(rng.choice(frauds, k, replace=False))
        rows = np.sort(np.concatenate([legit, chosen]))
        t0 = time.perf_counter()
        errors = second_stage.Errors(val_scores.feature_errors[rows], val_scores.reconstruction_error[rows])
        stage = second_stage.fit(val_raw[rows], errors, y_val[rows], order=order[rows], seed=seed)
        p_stage = second_stage.predict(stage, test_raw, test_scores)
        stage_seconds = time.perf_counter() - t0
        gbdt = HistGradientBoostingClassifier(random_state=seed)
        with second_stage.one_thread():
            gbdt.fit(val_raw[rows], y_val[rows])
            p_gbdt = gbdt.predict_proba(test_raw)[:, 1]
        selection = stage.info["selection"]
        point = {
            "labelled_frauds": k,
            "labelled_rows": len(rows),
            "pr_auc": {
                "second_stage": ranking(p_stage, y_test)["pr_auc"],
                "autoencoder": autoencoder,
                "gbdt": ranking(p_gbdt, y_test)["pr_auc"],
            },
            "chosen": selection["chosen"],
            "cv_mean_average_precision": {
                name: f["mean_average_precision"] for name, f in selection.get("families", {}).items()
            },
            "second_stage_seconds": stage_seconds,
        }
        out.append(point)
        print(
            f"[curve] seed {seed} k={k}: stage {point['pr_auc']['second_stage']:.3f} ({point['chosen']}), "
            f"autoencoder {autoencoder:.3f}, gbdt {point['pr_auc']['gbdt']:.3f} ({stage_seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return {
        "seed": seed,
        "autoencoder_design": result.card["training"]["design"],
        "autoencoder_seconds": ae_seconds,
        "splits": {
            "validation": {"rows": len(y_val), "frauds": int(y_val.sum())},
            "test": {"rows": len(y_test), "frauds": int(y_test.sum())},
        },
        "points": out,
    }


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def summarise(per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point: mean ± sd of each ranker's PR-AUC, the families chosen, and whether the goal holds."""
    out = []
    for i, first in enumerate(per_seed[0]["points"]):
        pts = [s["points"][i] for s in per_seed]
        stats = {r: _stats([p["pr_auc"][r] for p in pts]) for r in RANKERS}
        best_other = max(stats["autoencoder"]["mean"], stats["gbdt"]["mean"])
        out.append(
            {
                "labelled_frauds": first["labelled_frauds"],
                "pr_auc": stats,
                "stage_minus_best_other": stats["second_stage"]["mean"] - best_other,
                "chosen": [p["chosen"] for p in pts],
            }
        )
    return out


def table(summary: list[dict[str, Any]], frauds: int) -> str:
    def ms(x: dict[str, float]) -> str:
        return f"{x['mean']:.3f} ± {x['sd']:.3f}"

    lines = [
        "| labelled frauds | second stage | autoencoder alone | GBDT on the labels alone | stage − best other "
        "| family chosen (per seed) |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in summary:
        k = s["labelled_frauds"]
        label = f"all ({k})" if k == frauds else str(k)
        p = s["pr_auc"]
        lines.append(
            f"| {label} | {ms(p['second_stage'])} | {ms(p['autoencoder'])} | {ms(p['gbdt'])} "
            f"| {s['stage_minus_best_other']:+.3f} | {', '.join(s['chosen'])} |"
        )
    return "\n".join(lines)


def main(data: Path, seeds: Sequence[int], out_path: Path) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-curve-") as tmp:
        per_seed = [one_seed(data, seed, Path(tmp)) for seed in seeds]
    summary = summarise(per_seed)
    frauds = per_seed[0]["splits"]["validation"]["frauds"]
    result = {
        "data": str(data.relative_to(ROOT) if data.is_relative_to(ROOT) else data),
        "design": {
            "autoencoder": "fraudscore train defaults (labelled file: time-ordered 60/20/20 split)",
            "labels": "every legit row of the validation split and k of its frauds (seeded random below all)",
            "second_stage": "trainer.second_stage.fit: family by time-ordered CV on the labelled rows, refitted",
            "gbdt": "sklearn HistGradientBoostingClassifier defaults (random_state=seed) on the raw features",
            "metric": "test split PR-AUC (average precision)",
            "requested_frauds": [k if k is not None else "all" for k in FRAUDS],
        },
        "seeds": list(seeds),
        "seconds": time.perf_counter() - start,
        "summary": summary,
        "per_seed": per_seed,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(summary, frauds))
    return 0
