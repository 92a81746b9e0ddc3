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

Beyond ranking (issue #19), per seed:

- out-of-range probes on the test normals (raw): V1..V28 x5, x20, x100; one V
  feature per row (seeded) 1, 3, 10 training ranges above the training
  normals' maximum or below their minimum. The share flagged by the default's
  ``is_anomaly`` as exported, by its score alone over its threshold (the rule
  before the envelope), by the PCA baseline (no clipping, best-F1 threshold on
  validation) and the seed book's network; ``normals`` is each one's flag rate
  on the unmodified test normals;
- explanations of the real frauds the default flags (validation and test):
  median top-1 share, distinct top-3 feature sets, and the deletion test (the
  top 3 features set to the training normals' medians vs 3 random ones, 20
  draws; median over frauds of the ratio of the score drops), for the
  default's occlusion contributions, its shares of feature errors, and the seed
  book's network's shares of feature errors (re-scored by its own error).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraudscore.artifact import Scores
from trainer.probes import PROBE_GOALS, Scorer, flag_shares, out_of_range_probes

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


# --- Out-of-range probes and explanation quality (issue #19). Pure: arrays and a Scorer, no TensorFlow. ---


EXPLAIN_TOP = 3
RANDOM_DRAWS = 20
RATIO_CAP = 1000.0  # a row's deletion ratio when 3 random features remove (almost) nothing of its score
EXPLANATION_GOALS = {"top1_share_median": 0.25, "deletion_ratio_median": 5.0, "distinct_top3_share": 0.15}
# Envelope budgets (% of validation normals the rule may flag) whose trade-off the run measures; 0.1 is the default.
ENVELOPE_BUDGETS = (0.1, 0.05, 0.0)


def thresholded(errors: Callable[[np.ndarray], np.ndarray], threshold: float) -> Scorer:
    """A scorer flagging ``errors(rows) > threshold`` compared in float32, as ``trainer.calibrate`` cuts."""

    def score(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = np.asarray(errors(rows))
        return e, e.astype(np.float32) > np.float32(threshold)

    return score


def with_medians(rows: np.ndarray, columns: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """A copy of ``rows`` with each row's ``columns`` (``[n, k]`` indices) set to the training normals' medians."""
    out = np.array(rows, copy=True)
    np.put_along_axis(out, columns, np.asarray(medians, out.dtype)[columns], axis=1)
    return out


def deletion_drops(
    rows: np.ndarray,
    top: np.ndarray,
    medians: np.ndarray,
    score: Scorer,
    rng: np.random.Generator,
    draws: int = RANDOM_DRAWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the share of its score removed by setting its ``top`` features (``[n, k]``) to the medians, and
    the mean share removed over ``draws`` random sets of k distinct features (negative: the score rose)."""
    n, f = rows.shape
    k = top.shape[1]
    base = np.asarray(score(rows)[0], np.float64)
    scale = np.where(base > 0, base, np.nan)
    top_drop = (base - np.asarray(score(with_medians(rows, top, medians))[0], np.float64)) / scale
    random_columns = np.argsort(rng.random((draws, n, f)), axis=2)[:, :, :k].reshape(draws * n, k)
    tiled = np.tile(rows, (draws, 1))
    random_scores = np.asarray(score(with_medians(tiled, random_columns, medians))[0], np.float64).reshape(draws, n)
    return top_drop, ((base - random_scores) / scale).mean(axis=0)


def deletion_ratios(top_drop: np.ndarray, random_drop: np.ndarray) -> np.ndarray:
    """top / random drop per row, at most RATIO_CAP (also when random removes nothing or raises the score while
    the top features remove some of it); 0 when the top features remove nothing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(random_drop > 0, top_drop / random_drop, RATIO_CAP)
    return np.where(top_drop > 0, np.minimum(ratio, RATIO_CAP), 0.0)


def explanation_quality(
    rows: np.ndarray,
    attributions: np.ndarray,
    medians: np.ndarray,
    score: Scorer,
    rng: np.random.Generator,
    draws: int = RANDOM_DRAWS,
    totals: np.ndarray | None = None,
) -> dict[str, float]:
    """How telling and how faithful per-feature ``attributions`` (``[n, F]``, larger = more to blame) of ``rows``
    are: the median top-1 share (of ``totals``, each row's score, or of the row's sum of attributions), the
    distinct top-3 feature sets (unordered) and the deletion test's median ratio (top-3 features vs 3 random
    ones set to the medians, re-scored by ``score``)."""
    if len(rows) == 0:
        return {"rows": 0}
    from fraudscore.model import top_k

    order, shares, _ = top_k(np.asarray(attributions), EXPLAIN_TOP, totals)
    return {
        "top1_share_median": float(np.median(shares[:, 0])),
        **deletion_quality(rows, order, medians, score, rng, draws),
    }


def best_deletion_sets(
    rows: np.ndarray, medians: np.ndarray, errors: Callable[[np.ndarray], np.ndarray], k: int = EXPLAIN_TOP
) -> np.ndarray:
    """``[n, k]``: per row, the k features whose reset to the medians removes the most of ``errors`` (every one
    of the C(F, k) sets tried): the best any explanation's top k can do in the deletion test."""
    import itertools

    n, f = rows.shape
    sets = np.array(list(itertools.combinations(range(f), k)), dtype=np.intp)
    best = np.empty((n, k), dtype=np.intp)
    for i in range(n):  # one row's C(F, k) copies per call (29 features, k = 3: 3,654 rows)
        copies = with_medians(np.repeat(rows[i : i + 1], len(sets), axis=0), sets, medians)
        best[i] = sets[int(np.argmin(np.asarray(errors(copies), np.float64)))]
    return best


def deletion_quality(
    rows: np.ndarray, top: np.ndarray, medians: np.ndarray, score: Scorer, rng: np.random.Generator, draws: int
) -> dict[str, float]:
    """The deletion test of ``top`` (``[n, k]``) and its distinct sets: :func:`explanation_quality` without shares."""
    distinct = len({frozenset(r) for r in top.tolist()})
    top_drop, random_drop = deletion_drops(rows, top, medians, score, rng, draws)
    return {
        "rows": len(rows),
        "distinct_top3_sets": distinct,
        "distinct_top3_share": distinct / len(rows),
        "deletion_ratio_median": float(np.median(deletion_ratios(top_drop, random_drop))),
        "top3_drop_median": float(np.nanmedian(top_drop)),
        "random3_drop_median": float(np.nanmedian(random_drop)),
    }


def envelope_budgets(
    validation_normals: Scores,
    threshold: float,
    score: Callable[[np.ndarray], Scores],
    probes: Mapping[str, np.ndarray],
) -> dict[str, dict[str, float]]:
    """The envelope budget's trade-off: per budget, the limit the trainer would choose on the validation normals'
    distances (:func:`trainer.envelope.limit_for`), the validation normals the rule (score > threshold or beyond
    the limit) then flags, and its probe shares; ``score_alone`` is the score over the threshold."""
    from trainer.envelope import limit_for

    assert validation_normals.envelope_distance is not None, "the default has no envelope_distance output"
    cut = np.float32(threshold)

    def flagged(s: Scores, limit: float) -> np.ndarray:
        above = np.asarray(s.reconstruction_error, np.float32) > cut
        return above if s.envelope_distance is None else above | (np.asarray(s.envelope_distance) > np.float32(limit))

    scored = {name: score(rows) for name, rows in probes.items()}
    out: dict[str, dict[str, float]] = {}
    for name, limit in [
        *((f"budget_{b:g}", limit_for(validation_normals.envelope_distance, b)) for b in ENVELOPE_BUDGETS),
        ("score_alone", math.inf),
    ]:
        out[name] = {
            "limit_widths": limit,
            "validation_normals": len(validation_normals),
            "validation_normals_flagged": int(np.sum(flagged(validation_normals, limit))),
            **{p: float(np.mean(flagged(s, limit))) for p, s in scored.items()},
        }
    out["score_alone"].pop("limit_widths")
    return out


def one_seed(data: Path, seed: int, work: Path) -> dict[str, dict[str, Any]]:
    import pandas as pd

    from fraudscore.features import PCA_FEATURES
    from fraudscore.model import load
    from trainer import autoencoder, split
    from trainer import data as data_mod
    from trainer.calibrate import calibrate
    from trainer.config import ThresholdPolicy, TrainConfig
    from trainer.evaluate import PcaByComponents, baselines, ranking
    from trainer.pipeline import Fitter, run

    out: dict[str, dict[str, Any]] = {}
    base = TrainConfig(data=data, model_base=work / f"models-{seed}" / "creditcard", seed=seed, verbose=False)
    best_f1 = ThresholdPolicy.parse("best-f1")

    start = time.perf_counter()
    result = run(replace(base, baselines=False, plots=False))
    model = load(base.model_base, result.version)
    names = list(model.features)
    loaded = data_mod.load_csv(data)
    parts = split.split(loaded.frame, True)
    y_val, y_test = split.labels(parts.validation, True), split.labels(parts.test, True)
    assert y_val is not None and y_test is not None
    scored = model.score(parts.test[names].to_numpy(np.float32))
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

    def frame(rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=names)

    def default_score(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = model.score(rows)
        return s.reconstruction_error, s.is_anomaly

    # Probes on the test normals (raw), ranges from the training normals; one draw of features per seed.
    probes = out_of_range_probes(
        parts.test[names].to_numpy(np.float32)[y_test == 0],
        parts.train[names].to_numpy(np.float32),
        [names.index(n) for n in PCA_FEATURES],
        np.random.default_rng(seed),
    )
    out["default"]["probes"] = flag_shares(default_score, probes)
    # The rule before the envelope: the score alone over the same threshold.
    out["default"]["probes_previous_rule"] = flag_shares(
        thresholded(lambda r: default_score(r)[0], model.threshold), probes
    )
    # Explanations of the real frauds the default flags (validation and test), each deletion test re-scored by
    # its own model, the same random draws for every explanation (one generator seed).
    frauds = pd.concat([parts.validation[y_val == 1], parts.test[y_test == 1]])[names].to_numpy(np.float32)
    explained = model.score(frauds, explain=True)
    caught = frauds[explained.is_anomaly]
    assert explained.contributions is not None
    medians = model.medians
    assert medians is not None, "the default's card has no training medians"
    out["default"]["explanations"] = {
        "occlusion": explanation_quality(  # shares of the score, as the scorer, alerts and cases show them
            caught,
            explained.contributions[explained.is_anomaly],
            medians,
            default_score,
            np.random.default_rng(seed),
            totals=explained.reconstruction_error[explained.is_anomaly],
        ),
        "feature_errors": explanation_quality(
            caught, explained.feature_errors[explained.is_anomaly], medians, default_score, np.random.default_rng(seed)
        ),
        # The ceiling: per fraud, the 3 features whose reset removes the most of its score (all 3,654 sets).
        "best_3_set": deletion_quality(
            caught,
            best_deletion_sets(caught, medians, lambda r: default_score(r)[0]),
            medians,
            default_score,
            np.random.default_rng(seed),
            RANDOM_DRAWS,
        ),
    }
    # The envelope budget's trade-off, each limit chosen on the validation normals as the trainer chooses it.
    assert model.threshold_score == "reconstruction_error", "the default thresholds its reconstruction error"
    out["default"]["envelope_budgets"] = envelope_budgets(
        model.score(parts.validation[names].to_numpy(np.float32)[y_val == 0]), model.threshold, model.score, probes
    )

    fitter = Fitter(parts, y_val, str(work / f"work-{seed}"), datetime.now(UTC))
    pcas = []
    for scaling in ("minmax", "zscore"):
        cfg = replace(base, scaling=scaling, clip=False)
        _, transformer, x_train, x_val = fitter.analysis(cfg)
        x_test, _ = transformer.transform(parts.test)
        found = baselines(x_train, x_val, x_test, y_val, seed=seed)
        pca = next(b for b in found if b.name.startswith("pca"))
        pcas.append((ranking(pca.validation_scores, y_val)["pr_auc"], scaling, pca, transformer, x_train))
        if scaling == "minmax":
            forest = next(b for b in found if b.name == "isolation_forest")
            out["isolation_forest"] = {**metrics(forest.test_scores, y_test), "seconds": forest.seconds}
    val_pr, scaling, pca, pca_transformer, pca_train = max(pcas, key=lambda p: p[0])
    out["pca"] = {**metrics(pca.test_scores, y_test), "design": f"{scaling} {pca.name}", "validation_pr_auc": val_pr}
    # The chosen PCA as a scorer of raw rows (the baseline refitted the same way), no clipping, best-F1 threshold.
    components = int(pca.name.removeprefix("pca_"))
    pca_fit = PcaByComponents(pca_train, seed)

    def pca_errors(rows: np.ndarray) -> np.ndarray:
        return pca_fit.errors(pca_transformer.transform(frame(rows))[0], components)

    assert np.allclose(pca_errors(parts.test[names].to_numpy(np.float32)), pca.test_scores, rtol=1e-5, atol=1e-9)
    pca_score = thresholded(pca_errors, calibrate(pca.validation_scores, y_val, best_f1).value)
    out["pca"]["probes"] = flag_shares(pca_score, probes)

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

    def seed_errors(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return autoencoder.errors(cand.model, transformer.transform(frame(rows))[0], cand.weights)

    errors, _ = seed_errors(parts.test[names].to_numpy(np.float32))
    out["seed_book_network"] = {
        **metrics(errors, y_test),
        "design": seed_cfg.describe(),
        "seconds": time.perf_counter() - start,
    }
    seed_score = thresholded(lambda r: seed_errors(r)[0], calibrate(cand.val_errors, y_val, best_f1).value)
    out["seed_book_network"]["probes"] = flag_shares(seed_score, probes)
    out["seed_book_network"]["explanations"] = {
        "feature_errors": explanation_quality(
            caught, seed_errors(caught)[1], medians, seed_score, np.random.default_rng(seed)
        )
    }
    return out


def mean_sd(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd over seeds of every number in ``runs`` (same-shaped dicts, one per seed), nested
    dicts summarised in place; ``seconds``, flags and text left out."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, Mapping):
            out[key] = mean_sd([r[key] for r in runs])
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "seconds":
            values = [r[key] for r in runs]
            out[key] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(runs) > 1 else 0.0,
            }
    return out


def summarise(per_seed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name in per_seed[0]:
        runs = [s[name] for s in per_seed]
        summary[name] = mean_sd(runs)
        if "design" in runs[0]:
            summary[name]["design"] = sorted({r["design"] for r in runs})
    return summary


def _goal(value: float, goal: float) -> dict[str, Any]:
    return {"value": value, "goal": goal, "met": bool(value >= goal)}


def probe_verdict(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The default's probe shares (means over seeds) against the goals, at a normals' flag rate no higher than
    the previous rule's (the score alone over the threshold, measured in the same run)."""
    default = summary["default"]
    shares = {k: v["mean"] for k, v in default["probes"].items()}
    normals, previous = shares["normals"], default["probes_previous_rule"]["normals"]["mean"]
    out: dict[str, Any] = {name: _goal(shares[name], goal) for name, goal in PROBE_GOALS.items()}
    out["normals_flag_rate"] = {"value": normals, "previous_rule": previous, "met": bool(normals <= previous)}
    out["all_met"] = all(v["met"] for v in out.values())
    return out


def explanation_verdict(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The default's occlusion explanations (means over seeds) against the goals."""
    found = summary["default"]["explanations"]["occlusion"]
    out: dict[str, Any] = {name: _goal(found[name]["mean"], goal) for name, goal in EXPLANATION_GOALS.items()}
    out["all_met"] = all(v["met"] for v in out.values())
    return out


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
        "probes": probe_verdict(summary),
        "explanations": explanation_verdict(summary),
    }


def _cell(s: Mapping[str, Any], fmt: str) -> str:
    return f"{s['mean']:{fmt}} ± {s['sd']:{fmt}}"


def table(result: dict[str, Any]) -> str:
    lines = [
        "| model | PR-AUC | ROC-AUC | recall at precision >= 0.85 | caught at 1 FP / 10k | caught at 22 FP / 10k |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    frauds = int(result["summary"]["default"]["test_frauds"]["mean"])
    for name, s in result["summary"].items():
        lines.append(
            f"| {name} | {_cell(s['pr_auc'], '.3f')} | {_cell(s['roc_auc'], '.3f')} "
            f"| {_cell(s['recall_at_precision_0.85'], '.2f')} "
            f"| {_cell(s['caught_at_1_fp_per_10k'], '.1f')} of {frauds} "
            f"| {_cell(s['caught_at_22_fp_per_10k'], '.1f')} of {frauds} |"
        )
    return "\n".join(lines)


PROBE_ROWS = {
    ("default", "probes"): "default, `is_anomaly` as exported",
    ("default", "probes_previous_rule"): "default's score alone > threshold (the previous rule)",
    ("pca", "probes"): "PCA (chosen on validation, no clipping, best-F1 threshold)",
    ("seed_book_network", "probes"): "seed book's network (clipped, best-F1 threshold)",
}
EXPLANATION_ROWS = {
    ("default", "occlusion"): "default, occlusion contributions",
    ("default", "feature_errors"): "default, shares of feature errors (old style)",
    ("default", "best_3_set"): "ceiling: each fraud's best 3-feature set (all C(F, 3) tried)",
    ("seed_book_network", "feature_errors"): "seed book's network, shares of feature errors",
}


def probe_table(result: dict[str, Any]) -> str:
    """Share of each out-of-range probe flagged, per model (mean ± sd over seeds)."""
    summary = result["summary"]
    probes = list(summary["default"]["probes"])
    lines = ["| flagged share | " + " | ".join(probes) + " |", "| --- |" + " ---: |" * len(probes)]
    for (model, key), label in PROBE_ROWS.items():
        if key in summary[model]:
            lines.append(f"| {label} | " + " | ".join(_cell(summary[model][key][p], ".3f") for p in probes) + " |")
    return "\n".join(lines)


def explanation_table(result: dict[str, Any]) -> str:
    """The explanation measures on the real frauds the default flags (mean ± sd over seeds)."""
    lines = [
        "| explanation | flagged frauds | top-1 share, median | distinct top-3 sets | share of frauds "
        "| deletion: top-3 / random-3 drop, median | top-3 drop | random-3 drop |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (model, kind), label in EXPLANATION_ROWS.items():
        e = result["summary"][model].get("explanations", {}).get(kind)
        if e and "deletion_ratio_median" in e:
            top1 = _cell(e["top1_share_median"], ".3f") if "top1_share_median" in e else "-"
            lines.append(
                f"| {label} | {_cell(e['rows'], '.1f')} | {top1} "
                f"| {_cell(e['distinct_top3_sets'], '.1f')} | {_cell(e['distinct_top3_share'], '.2f')} "
                f"| {_cell(e['deletion_ratio_median'], '.1f')}x | {_cell(e['top3_drop_median'], '.3f')} "
                f"| {_cell(e['random3_drop_median'], '.3f')} |"
            )
    return "\n".join(lines)


ENVELOPE_PROBES = ("normals", "x5", "x20", "x100", "above_1", "below_1", "above_10", "below_10")


def envelope_budget_table(result: dict[str, Any]) -> str:
    """The envelope budget's trade-off (mean ± sd over seeds): limit, validation normals flagged, probe shares."""
    found = result["summary"]["default"].get("envelope_budgets", {})
    lines = [
        "| rule | limit (widths) | validation normals flagged | " + " | ".join(ENVELOPE_PROBES) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(ENVELOPE_PROBES),
    ]
    for name, e in found.items():
        limit = _cell(e["limit_widths"], ".2f") if "limit_widths" in e else "-"
        lines.append(
            f"| {name} | {limit} | {_cell(e['validation_normals_flagged'], '.1f')} of "
            f"{int(e['validation_normals']['mean'])} | "
            + " | ".join(_cell(e[p], ".4f") for p in ENVELOPE_PROBES)
            + " |"
        )
    return "\n".join(lines)


def goals_line(v: Mapping[str, Any]) -> str:
    """One line per verdict section: each goal met or not."""
    return "; ".join(f"{k}: {'met' if g['met'] else 'NOT met'}" for k, g in v.items() if k != "all_met")


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
    print(probe_table(result))
    print(explanation_table(result))
    print(envelope_budget_table(result))
    print(json.dumps(result["verdict"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
