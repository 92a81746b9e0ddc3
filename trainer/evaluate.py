"""Evaluation on the test split, the baselines, the report, and offline scoring.

Metrics: ROC-AUC, PR-AUC (average precision, the area under the
precision-recall step curve), precision/recall/F1 and the confusion matrix
at the calibrated threshold, and the seed book's table (frauds caught / false
positives by threshold). Two baselines are fitted on the same scaled
training normals in the same run and scored on the same split: scikit-learn's
Isolation Forest and PCA reconstruction error with its component count
chosen on validation.

:func:`offline_scores` recomputes a version's errors the trainer's way (the
Keras model and the transform kept under ``assets.extra/``, numpy error
arithmetic), independently of the SavedModel's signature: the reference the
"scores agree" tests compare the scorer and the stream against.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.calibrate import confusion

if TYPE_CHECKING:
    import pandas as pd

# Alert budgets (percent of validation rows) whose thresholds fill the seed-style table.
TABLE_BUDGETS = (0.05, 0.1, 0.2, 0.5, 1.0)
# The seed book's result on 57,108 validation rows holding 246 frauds: (threshold, frauds caught, false positives).
SEED_REFERENCE = ((1.1, 112, 1), (0.8, 124, 22))
ISOLATION_TREES = 100


def ranking(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(labels)) < 2:
        return {}
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
    }


def _row(label: str, errors: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    c = confusion(errors, labels, threshold)
    return {
        "threshold": label,
        "value": threshold,
        "frauds_caught": c.tp,
        "false_positives": c.fp,
        "frauds_missed": c.fn,
        "precision": c.precision,
        "recall": c.recall,
    }


def cut_under_fp(scores: np.ndarray, labels: np.ndarray, max_fp: int) -> float:
    """The lowest threshold with at most ``max_fp`` false positives on this split (an oracle cut).

    Flags scores strictly above the (max_fp+1)-th highest normal; below every score when there are no more
    than ``max_fp`` normals. In the scores' own dtype, so the cut compares exactly with them.
    """
    normal_scores = np.sort(scores[labels == 0])[::-1]
    if len(normal_scores) <= max_fp:
        lowest = scores.min() if scores.size else np.zeros((), scores.dtype)
        return float(np.nextafter(lowest, np.asarray(-np.inf, dtype=scores.dtype)))
    return float(normal_scores[max_fp])


def seed_table(
    test_errors: np.ndarray, test_labels: np.ndarray, threshold: float, validation_errors: np.ndarray
) -> list[dict[str, Any]]:
    """Frauds caught / false positives on the test split at several thresholds, as in the seed book."""
    rows = [_row("calibrated", test_errors, test_labels, threshold)]
    ordered = np.sort(validation_errors.astype(np.float32))[::-1]
    for budget in TABLE_BUDGETS:
        k = max(1, math.ceil(len(ordered) * budget / 100.0))
        cut = float(ordered[min(k, len(ordered) - 1)])
        rows.append(_row(f"top {budget:g}% of validation", test_errors, test_labels, cut))
    for _, _, seed_fp in SEED_REFERENCE:
        cut = cut_under_fp(test_errors, test_labels, seed_fp)
        rows.append(_row(f"oracle: at most {seed_fp} FP on test", test_errors, test_labels, cut))
    return rows


@dataclass(frozen=True)
class Baseline:
    name: str
    validation_scores: np.ndarray
    test_scores: np.ndarray
    seconds: float


def baselines(
    x_train: np.ndarray,
    x_val: np.ndarray,
    x_test: np.ndarray,
    y_val: np.ndarray,
    *,
    seed: int,
) -> list[Baseline]:
    """Isolation Forest and PCA reconstruction error, fitted on the scaled training normals.

    PCA's component count is chosen like the autoencoder's design: by validation PR-AUC (every count from 1
    to F-1), never by the test split. A fixed small count would be a straw man on real data, whose V1..V28
    are already principal components.
    """
    import time

    from sklearn.ensemble import IsolationForest

    out = []
    start = time.perf_counter()
    forest = IsolationForest(n_estimators=ISOLATION_TREES, random_state=seed).fit(x_train)
    # score_samples is high for normal points: negate so that higher means more anomalous.
    out.append(
        Baseline(
            "isolation_forest",
            -forest.score_samples(x_val),
            -forest.score_samples(x_test),
            time.perf_counter() - start,
        )
    )
    start = time.perf_counter()
    pca = PcaByComponents(x_train, seed)
    best_k = pca.best_components(x_val, y_val)
    out.append(
        Baseline(f"pca_{best_k}", pca.errors(x_val, best_k), pca.errors(x_test, best_k), time.perf_counter() - start)
    )
    return out


class PcaByComponents:
    """PCA of the scaled training normals, for reconstruction errors with any number of components.

    Serves the PCA baseline and the autoencoder's ``--pca-components auto``: both take the count with the
    best validation PR-AUC, or without labels the smallest that explains ``VARIANCE_KEPT`` of the variance.
    """

    VARIANCE_KEPT = 0.99

    def __init__(self, x_train: np.ndarray, seed: int) -> None:
        from sklearn.decomposition import PCA

        self.pca = PCA(n_components=x_train.shape[1] - 1, random_state=seed).fit(x_train)

    def errors(self, x: np.ndarray, k: int) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0)
        centred = x - self.pca.mean_
        basis = self.pca.components_[:k]
        return np.asarray(np.mean(np.square(centred - (centred @ basis.T) @ basis), axis=1))

    def best_components(self, x_val: np.ndarray, y_val: np.ndarray | None) -> int:
        if y_val is None or len(np.unique(y_val)) < 2:
            explained = np.cumsum(self.pca.explained_variance_ratio_)
            return int(min(np.searchsorted(explained, self.VARIANCE_KEPT) + 1, self.pca.n_components_))
        by_k = {
            k: ranking(self.errors(x_val, k), y_val).get("pr_auc", float("nan"))
            for k in range(1, self.pca.n_components_ + 1)
        }
        return max(by_k, key=lambda k: np.nan_to_num(by_k[k], nan=-1.0))


def plots(
    out_dir: Path,
    test_labels: np.ndarray,
    scores: dict[str, np.ndarray],
    ae_errors: np.ndarray,
    threshold: float,
) -> list[str]:
    """PR curve, ROC curve (all models) and the autoencoder's error histogram by class; returns file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    def save(fig: Any, ax: Any, name: str) -> str:
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        return name

    files = []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(test_labels, s)
        ax.plot(recall, precision, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test split", xlim=(0, 1), ylim=(0, 1.02))
    files.append(save(fig, ax, "pr_curve.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(test_labels, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    files.append(save(fig, ax, "roc_curve.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    positive = ae_errors[ae_errors > 0]
    lo = float(positive.min()) if len(positive) else 1e-6
    hi = float(max(ae_errors.max(initial=lo), threshold)) * 1.1
    bins = np.geomspace(lo, hi, 60).tolist()
    for cls, name in ((0, "normal"), (1, "fraud")):
        values = np.clip(ae_errors[test_labels == cls], lo, None)
        ax.hist(values, bins=bins, alpha=0.6, label=f"{name} ({len(values)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="reconstruction error", ylabel="transactions")
    ax.set_title("Autoencoder reconstruction error by class, test split")
    files.append(save(fig, ax, "error_histogram.png"))
    return files


def search_plot(out_dir: Path, search: dict[str, Any]) -> str:
    """Every search trial's validation PR-AUC per seed (dots) and mean (bar), best first; returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = [t for t in search["trials"] if t["validation_pr_auc"]]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(trials) + 1.5))
    for i, t in enumerate(trials):
        colour = {"complete": "tab:blue", "pruned": "tab:grey"}.get(t["state"], "tab:red")
        ax.barh(i, t["validation_pr_auc_mean"], color=colour, alpha=0.35)
        ax.plot(t["validation_pr_auc"], [i] * len(t["validation_pr_auc"]), "o", color=colour, markersize=3)
    ax.set_yticks(range(len(trials)), [f"{t['design']} ({t['state']})" for t in trials], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="validation PR-AUC (dots: seeds, bar: mean)", xlim=(0, 1), title="Model search, best first")
    fig.tight_layout()
    fig.savefig(out_dir / "search.png", dpi=110)
    plt.close(fig)
    return "search.png"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    """The human-readable report (report.md) from the JSON report."""
    lines = [f"# Model {report['name']} v{report['version']}: evaluation", ""]
    lines += [report["verdict"], ""]
    data = report["data"]
    lines += [
        f"Data: `{data['path']}` (sha256 `{data['sha256'][:16]}…`), {data['rows_used']} rows used of "
        f"{data['rows_read']} read, {data['bad_rows']} bad rows dropped"
        + (f" ({data['bad_by_column']})" if data["bad_rows"] else "")
        + ("" if data["has_labels"] else "; **no Class column: label-free training**")
        + ".",
        "",
        "| split | rows | frauds |",
        "| --- | ---: | ---: |",
    ]
    for name, size in report["splits"].items():
        lines.append(f"| {name} | {size['rows']} | {size['frauds']} |")
    t = report["threshold"]
    lines += ["", f"Threshold **{t['value']:.6g}** by policy `{t['policy']}` ({t['how']}), chosen on validation.", ""]
    envelope, probes = report.get("envelope"), report.get("probes")
    if envelope:
        rate = envelope.get("validation_flag_rate")
        lines += [
            f"Envelope rule: also flagged beyond **{envelope['limit_widths']:.3g}** widths outside the training "
            f"normals' range ({envelope['limit_how']})"
            + (f"; flags {rate:.2%} of validation normals." if rate is not None else "."),
            "",
        ]
    if probes:
        shares = probes["validation_normals"]
        lines += ["| probe (validation normals) | flagged | goal |", "| --- | ---: | ---: |"]
        for name, share in shares.items():
            goal = probes["goals"].get(name)
            lines.append(f"| {name} | {share:.1%} | {'' if goal is None else f'{goal:.0%}'} |")
        lines.append("")
    if report.get("models"):
        lines += [
            "## Test split",
            "",
            "| model | ROC-AUC | PR-AUC | validation PR-AUC |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, m in report["models"].items():
            lines.append(f"| {name} | {_fmt(m['roc_auc'])} | {_fmt(m['pr_auc'])} | {_fmt(m['validation_pr_auc'])} |")
        m = report["metrics"]
        lines += [
            "",
            f"At the threshold: precision {m['precision']:.4f}, recall {m['recall']:.4f}, F1 {m['f1']:.4f}.",
            "",
            "| | flagged | not flagged |",
            "| --- | ---: | ---: |",
            f"| fraud | {m['tp']} (caught) | {m['fn']} (missed) |",
            f"| normal | {m['fp']} (false positives) | {m['tn']} |",
            "",
            "## Frauds caught / false positives by threshold (test split)",
            "",
            "| threshold | value | frauds caught | false positives | precision | recall |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in report["table"]:
            lines.append(
                f"| {r['threshold']} | {r['value']:.5g} | {r['frauds_caught']} | {r['false_positives']} | "
                f"{r['precision']:.3f} | {r['recall']:.3f} |"
            )
        ref = "; ".join(f"{caught} frauds / {fp} FP at {t}" for t, caught, fp in SEED_REFERENCE)
        lines += [
            "",
            f"Seed book, for reference (57,108 validation rows, 246 frauds; its error scale differs): {ref}. "
            "The oracle rows pick the cut on the test split itself, as the seed's table did, to compare "
            "frauds caught at the same number of false positives; the calibrated row is the honest one.",
            "",
        ]
    else:
        lines += [
            "No labels: ranking metrics cannot be computed. "
            f"Test alert rate at the threshold: {report['metrics'].get('alert_rate', 0.0):.4%}.",
            "",
        ]
    if report.get("search"):
        s = report["search"]
        lines += [
            "## Model search (validation only)",
            "",
            f"{len(s['trials'])} trials of {s['designs_in_space']} designs in the space, ranked by {s['criterion']}; "
            f"exported: the winner's seed {s['exported_seed']}.",
            "",
            "| trial | phase | design | state | validation PR-AUC per seed | mean | sd |",
            "| ---: | --- | --- | --- | --- | ---: | ---: |",
        ]
        for t in s["trials"]:
            seeds = ", ".join(f"{p:.3f}" for p in t["validation_pr_auc"])
            lines.append(
                f"| {t['trial']} | {t.get('phase', '')} | {t['design']} | {t['state']} | {seeds} | "
                f"{_fmt(t['validation_pr_auc_mean'])} | {_fmt(t['validation_pr_auc_sd'])} |"
            )
        lines.append("")
    tr = report["training"]
    lines += [
        "## Training",
        "",
        f"Autoencoder {tr['design']}, Adam lr {tr['learning_rate']}, batch {tr['batch_size']}, "
        f"seed {tr['seed']}: {tr['epochs_run']} epochs, best epoch {tr['best_epoch']} "
        f"(validation-normal loss {tr['best_val_loss']:.3g}); TensorBoard logs `{tr['tensorboard_dir']}`.",
        "",
        "| stage | seconds |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["timings"].items()]
    if report.get("plots"):
        lines += [""] + [f"![{p}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class OfflineScores:
    reconstruction_error: np.ndarray
    feature_errors: np.ndarray
    out_of_range_count: np.ndarray


@functools.lru_cache(maxsize=4)
def _offline_model(version_dir: str) -> tuple[Any, Any, np.ndarray | None]:
    import keras

    from fraudscore.model import ModelCard
    from trainer.analyze import Transformer
    from trainer.export import EXTRA_DIR, KERAS_FILE, TRANSFORM_COPY

    extra = Path(version_dir) / EXTRA_DIR
    card = ModelCard.read(Path(version_dir))
    divisors = (card.raw.get("error") or {}).get("divisors")
    weights = None if divisors is None else np.asarray(divisors, np.float32)
    return keras.models.load_model(extra / KERAS_FILE), Transformer(str(extra / TRANSFORM_COPY), card.features), weights


def offline_scores(
    frame: pd.DataFrame | np.ndarray, version_dir: Path, features: Sequence[str] | None = None
) -> OfflineScores:
    """The trainer's own errors for raw rows (a DataFrame with the feature columns, or ``[n, F]`` in card order)."""
    import pandas as pd

    from trainer import autoencoder

    model, transformer, weights = _offline_model(str(Path(version_dir).resolve()))
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(np.asarray(frame, np.float32), columns=list(features or transformer.names))
    scaled, outside = transformer.transform(frame)
    errors, feature_errors = autoencoder.errors(model, scaled, weights)
    return OfflineScores(errors, feature_errors, outside)


def offline_errors(frame: pd.DataFrame | np.ndarray, version_dir: Path) -> np.ndarray:
    """Reconstruction errors of raw rows as the trainer computes them (see :func:`offline_scores`)."""
    return offline_scores(frame, version_dir).reconstruction_error
