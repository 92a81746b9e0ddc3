"""One training run, stage by stage: load, split, analyze, fit, calibrate, evaluate, export
(and with labels: the second stage, ``trainer.supervise``).

Each stage logs a line with its duration; the durations go into the model
card and the report. Nothing is exported unless every stage succeeded and the
quality gate (``min_pr_auc``) passed.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudscore import features
from fraudscore.artifact import ENVELOPE_DISTANCE
from fraudscore.model import OUTPUTS, SIGNATURE, ModelCard
from trainer import analyze as analyze_mod
from trainer import autoencoder, calibrate, data, evaluate, export, probes, split, supervise
from trainer import search as search_mod
from trainer.config import PCA_AUTO, QualityGateError, ThresholdPolicy, TrainConfig, TrainResult
from trainer.envelope import MIN_LIMIT, Envelope

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LIBRARIES = (
    "tensorflow",
    "keras",
    "tensorflow-transform",
    "tfx-bsl",
    "apache-beam",
    "scikit-learn",
    "numpy",
    "pandas",
    "pyarrow",
)
CHECK_ROWS = 512


class _Stages:
    """Times named stages and reports them as they finish."""

    def __init__(self, verbose: bool) -> None:
        self.timings: dict[str, float] = {}
        self.verbose = verbose

    @contextlib.contextmanager
    def __call__(self, name: str, what: str) -> Iterator[None]:
        if self.verbose:
            print(f"[train] {name}: {what} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        if self.verbose:
            print(f"[train] {name}: done in {self.timings[name]:.1f} s", file=sys.stderr, flush=True)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def check_quality(metrics: dict[str, float], min_pr_auc: float | None) -> None:
    """Raises :class:`QualityGateError` when the test PR-AUC is below ``min_pr_auc`` (or unknown)."""
    if min_pr_auc is None:
        return
    if "pr_auc" not in metrics:
        raise QualityGateError(
            f"--min-pr-auc {min_pr_auc:g} needs labels to measure PR-AUC; this data has none. Nothing exported."
        )
    if metrics["pr_auc"] < min_pr_auc:
        raise QualityGateError(
            f"test PR-AUC {metrics['pr_auc']:.4f} is below the required {min_pr_auc:g} (--min-pr-auc); "
            "the model was not exported"
        )


def _statistics(
    transformer: analyze_mod.Transformer, config: TrainConfig, train: pd.DataFrame, envelope: Envelope
) -> dict[str, dict[str, Any]]:
    """Per feature: the transform's statistics, the envelope's width, and the training normals' raw median and
    p1/p99 (the occlusion baseline of explanations and the "normal range" they are shown against)."""
    stats = transformer.statistics()
    raw = train[list(config.features)].to_numpy(np.float64)
    median = np.median(raw, axis=0)
    low, high = np.percentile(raw, (1.0, 99.0), axis=0)
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(config.features):
        logged = name in config.log_features
        lo, hi = stats["min"][i], stats["max"][i]
        entry: dict[str, Any] = {
            "min": float(lo),
            "max": float(hi),
            "center": float(stats["center"][i]),
            "scale": float(stats["scale"][i]),
            "space": "signed_log1p" if logged else "raw",
        }
        if logged:  # the same bounds in the raw unit, for people reading the card
            entry["raw_min"] = float(np.sign(lo) * np.expm1(abs(lo)))
            entry["raw_max"] = float(np.sign(hi) * np.expm1(abs(hi)))
        entry["zero_range"] = bool(hi <= lo)
        entry.update(median=float(median[i]), p01=float(low[i]), p99=float(high[i]))
        entry["envelope_width"] = float(envelope.width[i])
        out[name] = entry
    return out


def _normals(validation: pd.DataFrame, y_val: np.ndarray | None) -> pd.DataFrame:
    return validation if y_val is None else validation[y_val == 0]


@dataclass(frozen=True)
class _Guard:
    """What the envelope rule needs, the same for every design with the same log features (it works before
    scaling and clipping): the envelope, its card entry, and which probe rows it flags on its own."""

    envelope: Envelope
    card: dict[str, Any]
    probe_rows: dict[str, np.ndarray]
    probe_outside: dict[str, np.ndarray]


def _guard(
    config: TrainConfig,
    transformer: analyze_mod.Transformer,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    y_val: np.ndarray | None,
) -> _Guard:
    """The training normals' envelope with its limit (given, or chosen on the validation normals by budget), and
    the out-of-range probes of the validation normals (trainer.probes) with the rows the envelope flags."""
    import pandas as pd

    names = list(config.features)
    normals = _normals(validation, y_val)
    unscaled_normals = transformer.unscaled(normals)
    envelope = Envelope.fit(transformer.unscaled(train), config.envelope_widths or 1.0)
    if config.envelope_widths is not None:
        how = "--envelope-widths"
    else:
        envelope = envelope.with_limit_for(unscaled_normals, config.envelope_budget)
        how = f"exceeded by at most {config.envelope_budget:g}% of validation normals (at least {MIN_LIMIT:g})"
    rows = probes.out_of_range_probes(
        normals[names].to_numpy(np.float32),
        train[names].to_numpy(np.float32),
        [i for i, n in enumerate(names) if n != features.AMOUNT],
        np.random.default_rng(0),
    )
    outside = {name: envelope.flags(transformer.unscaled(pd.DataFrame(r, columns=names))) for name, r in rows.items()}
    return _Guard(envelope, envelope.to_card(unscaled_normals, how), rows, outside)


@dataclass
class Candidate:
    """One trained design: its config (seed included), model, transform and validation errors."""

    config: TrainConfig
    model: Any
    history: dict[str, Any]
    transform_dir: str
    transformer: analyze_mod.Transformer
    x_train: np.ndarray
    x_val: np.ndarray
    weights: np.ndarray | None
    val_errors: np.ndarray
    tensorboard_dir: Path | None
    # Share of each out-of-range probe of the validation normals flagged (trainer.probes): a blind spot shows here.
    probe_shares: dict[str, float] = field(default_factory=dict)


class Fitter:
    """Trains a config on the training normals; one tf.Transform analysis per preprocessing variant.

    It holds the training normals and the validation split only: the test split is transformed after the
    design is chosen, in :func:`run`.
    """

    def __init__(self, parts: split.Splits, y_val: np.ndarray | None, work_dir: str, started: datetime) -> None:
        self.train, self.validation, self.y_val = parts.train, parts.validation, y_val
        self.work_dir, self.started = work_dir, started
        self._analyses: dict[tuple[Any, ...], tuple[str, analyze_mod.Transformer, np.ndarray, np.ndarray]] = {}
        self._components: dict[tuple[Any, ...], int] = {}
        self._guards: dict[tuple[Any, ...], _Guard] = {}

    def analysis(self, config: TrainConfig) -> tuple[str, analyze_mod.Transformer, np.ndarray, np.ndarray]:
        key = (config.scaling, config.clip, config.log_features)
        if key not in self._analyses:
            transform_dir = analyze_mod.analyze(
                self.train,
                config.features,
                config.log_features,
                self.work_dir,
                config.beam_args,
                scaling=config.scaling,
                clip=config.clip,
            )
            transformer = analyze_mod.Transformer(transform_dir, config.features)
            x_train, _ = transformer.transform(self.train)
            x_val, _ = transformer.transform(self.validation)
            self._analyses[key] = (transform_dir, transformer, x_train, x_val)
        return self._analyses[key]

    def auto_components(self, config: TrainConfig, x_train: np.ndarray, x_val: np.ndarray) -> int:
        """The PCA-coded autoencoder's code size: the plain PCA residual's best count on validation."""
        key = ("pca", config.scaling, config.clip, config.log_features)
        if key not in self._components:
            self._components[key] = evaluate.PcaByComponents(x_train, seed=0).best_components(x_val, self.y_val)
        return self._components[key]

    def better_weighting(self, model: Any, x_train: np.ndarray, x_val: np.ndarray) -> str:
        """``standardized`` if it ranks validation better than ``none``; ``none`` without labels to rank by."""
        if self.y_val is None or len(np.unique(self.y_val)) < 2:
            return "none"
        scores = {
            w: _pr_auc(autoencoder.errors(model, x_val, autoencoder.error_weights(model, x_train, w))[0], self.y_val)
            for w in ("none", "standardized")
        }
        return "standardized" if scores["standardized"] > scores["none"] else "none"

    def __call__(self, config: TrainConfig, *, log_progress: bool = False) -> Candidate:
        transform_dir, transformer, x_train, x_val = self.analysis(config)
        val_normal = x_val if self.y_val is None else x_val[self.y_val == 0]
        tb_dir = None
        if log_progress:
            run_name = f"{self.started:%Y%m%d-%H%M%S}-seed{config.seed}"
            tb_dir = (config.tensorboard_dir or config.model_base.parent.parent / "runs" / config.name) / run_name
        autoencoder.set_determinism(config.seed)
        components = config.pca_components
        if components == PCA_AUTO:
            components = self.auto_components(config, x_train, x_val)
        pca = autoencoder.pca_basis(x_train, components, config.seed) if components else None
        model = autoencoder.build(
            len(config.features), config.hidden, config.activation, config.learning_rate, config.output_activation, pca
        )
        history = autoencoder.fit(
            model,
            x_train,
            val_normal,
            epochs=config.epochs,
            batch_size=config.batch_size,
            patience=config.patience,
            log_dir=tb_dir,
            verbose=config.verbose and log_progress,
        )
        if pca is not None:
            history["pca_components_used"] = components
        weighting = config.error_weighting
        if weighting == "auto":  # a scoring choice of the trained model: both ways on validation, no retraining
            weighting = self.better_weighting(model, x_train, x_val)
        history["error_weighting_used"] = weighting
        weights = autoencoder.error_weights(model, x_train, weighting)
        val_errors, _ = autoencoder.errors(model, x_val, weights)
        candidate = Candidate(
            config, model, history, transform_dir, transformer, x_train, x_val, weights, val_errors, tb_dir
        )
        candidate.probe_shares = self.probe_shares(candidate)
        return candidate

    def guard(self, config: TrainConfig, transformer: analyze_mod.Transformer) -> _Guard:
        """The envelope and probes for ``config``'s log features, computed once per run and shared by every
        candidate and the export."""
        key = (config.log_features, config.envelope_widths, config.envelope_budget)
        if key not in self._guards:
            self._guards[key] = _guard(config, transformer, self.train, self.validation, self.y_val)
        return self._guards[key]

    def probe_shares(self, candidate: Candidate) -> dict[str, float]:
        """What the candidate as exported would flag of each probe: its errors over the threshold its policy
        picks on validation, or beyond the envelope."""
        import pandas as pd

        config, transformer = candidate.config, candidate.transformer
        guard = self.guard(config, transformer)
        staged = config.threshold_score != "reconstruction_error"  # the autoencoder's own threshold is the default
        policy = ThresholdPolicy("auto") if staged else config.threshold_policy
        threshold = calibrate.calibrate(candidate.val_errors, self.y_val, policy.resolve(self.y_val is not None))
        names = list(config.features)

        def above(raw: np.ndarray) -> np.ndarray:
            scaled, _ = transformer.transform(pd.DataFrame(raw, columns=names))
            errors, _ = autoencoder.errors(candidate.model, scaled, candidate.weights)
            return errors > np.float32(threshold.value)

        return {
            name: float(np.mean(above(rows) | guard.probe_outside[name])) if len(rows) else float("nan")
            for name, rows in guard.probe_rows.items()
        }


def _pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return evaluate.ranking(scores, labels).get("pr_auc", float("nan"))


def _choose(
    config: TrainConfig, fitter: Fitter, stage: _Stages, y_val: np.ndarray | None
) -> tuple[Candidate, dict[str, Any] | None]:
    """The model to export: the search's winner (and its report) with --search, else the configured design."""
    if config.search:
        what = f"{config.search_trials} trials x {len(config.search_seeds)} seeds, by validation PR-AUC"
        with stage("search", what):
            outcome = search_mod.search(config, fitter, y_val, _pr_auc)
        if config.verbose:
            winner = outcome.best.config
            print(f"[train] search winner: {winner.describe()} seed {winner.seed}", file=sys.stderr, flush=True)
        return outcome.best, outcome.report()
    with stage("analyze", f"tf.Transform statistics over {len(fitter.train)} training normals"):
        fitter.analysis(config)
    with stage("fit", f"{config.describe()} on {len(fitter.train)} training normals"):
        return fitter(config, log_progress=True), None


def _training_info(chosen: Candidate, *, searched: bool) -> dict[str, Any]:
    """The design and training history of the exported model, for the report and the card."""
    config, history = chosen.config, chosen.history
    return {
        "layers": "-".join(str(u) for u in (len(config.features), *config.hidden, len(config.features))),
        "hidden": list(config.hidden),
        "activation": config.activation,
        "output_activation": config.output_activation,
        "scaling": config.scaling,
        "clip": config.clip,
        "error_weighting": history.get("error_weighting_used", config.error_weighting),
        "pca_components": config.pca_components,
        "design": config.describe(),
        "chosen_by": "model search (--search)" if searched else "flags (defaults: the search's winner on real rows)",
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "max_epochs": config.epochs,
        "patience": config.patience,
        "seed": config.seed,
        "tensorboard_dir": str(chosen.tensorboard_dir) if chosen.tensorboard_dir else None,
        **{k: v for k, v in history.items() if k not in ("loss", "val_loss")},
        "loss_history": history["loss"],
        "val_loss_history": history["val_loss"],
    }


def run(config: TrainConfig) -> TrainResult:
    """Runs a whole training; raises :class:`trainer.config.TrainError` subclasses with a reason."""
    stage = _Stages(config.verbose)
    started = datetime.now(UTC)
    with stage("load", f"reading {config.data}"):
        loaded = data.load_csv(config.data, config.features, config.max_bad_fraction)
    if loaded.bad_rows:
        log.warning("dropped %d bad rows of %d: %s", loaded.bad_rows, loaded.rows_read, loaded.bad_by_column)
    has_labels = loaded.has_labels
    staged = config.threshold_score == supervise.FRAUD_PROBABILITY
    # Fail early on a policy the data cannot support. With the threshold on fraud_probability the policy is the
    # second stage's (on labelled rows), and the autoencoder's own threshold is the default one, replaced later.
    policy = (ThresholdPolicy("auto") if staged else config.threshold_policy).resolve(has_labels)
    stage_policy = config.threshold_policy.resolve(True) if staged else policy
    labelled = None
    if config.has_labels_source:
        with stage("labels", "reading and checking the labels for the second stage"):
            labelled = supervise.read(config)  # before any training: bad labels cost nothing
    if config.search and not has_labels:
        raise search_mod.SearchError(
            f"{config.data}: --search ranks designs by validation PR-AUC and needs the Class column, which this "
            "file lacks; train without --search (the shipped default design, alert-budget threshold)"
        )
    with stage("split", "time-ordered train/validation/test"):
        parts = split.split(loaded.frame, has_labels)
        sizes = parts.sizes(has_labels)
    y_val, y_test = split.labels(parts.validation, has_labels), split.labels(parts.test, has_labels)

    work_dir = config.work_dir or tempfile.mkdtemp(prefix="fraudscore-train-")
    keep_work_dir = config.work_dir is not None or config.keep_work_dir
    # With labels the autoencoder is exported into a private base first, never published: the one version
    # written into the model base holds the second stage too (trainer.supervise).
    private = Path(tempfile.mkdtemp(prefix="fraudscore-export-")) if labelled is not None else None
    try:
        fitter = Fitter(parts, y_val, work_dir, started)
        chosen, search_report = _choose(config, fitter, stage, y_val)
        config = chosen.config
        model, weights, val_errors = chosen.model, chosen.weights, chosen.val_errors
        transformer, transform_dir, history = chosen.transformer, chosen.transform_dir, chosen.history
        guard = fitter.guard(config, transformer)
        envelope = guard.envelope
        statistics = _statistics(transformer, config, parts.train, envelope)
        x_test, oor_test = transformer.transform(parts.test)  # only now: the design is fixed

        with stage("calibrate", f"threshold by {policy} on validation"):
            test_errors, _ = autoencoder.errors(model, x_test, weights)
            threshold = calibrate.calibrate(val_errors, y_val, policy)
            outside_test = envelope.flags(transformer.unscaled(parts.test))

        with stage("evaluate", "test split, baselines, report"):
            report = _evaluate(config, chosen, x_test, y_val, y_test, test_errors)
            report["metrics"]["test_out_of_range_rows"] = int(np.sum(oor_test > 0))
            t_metrics = report["metrics"]
            # What the SavedModel flags: the threshold, or beyond the envelope whatever the error.
            flagging = np.where(outside_test, np.float32(np.inf), test_errors)
            if y_test is not None:
                t_metrics.update(calibrate.confusion(flagging, y_test, threshold.value).as_dict())
                report["table"] = evaluate.seed_table(test_errors, y_test, threshold.value, val_errors)
            t_metrics["alert_rate"] = float(np.mean(flagging > np.float32(threshold.value)))
            t_metrics["test_envelope_rows"] = int(np.sum(outside_test))
            report["envelope"] = guard.card
            report["probes"] = {
                "validation_normals": chosen.probe_shares,
                "goals": probes.PROBE_GOALS,
                "how": "share flagged (score > threshold or beyond the envelope) of the validation normals moved "
                "outside the training data (trainer.probes)",
            }
        check_quality(t_metrics, config.min_pr_auc)

        training = _training_info(chosen, searched=search_report is not None)
        report.update(
            name=config.name,
            data=loaded.summary(),
            splits=sizes,
            threshold=threshold.to_card(),
            training=training,
            timings=stage.timings,
        )
        if search_report is not None:
            report["search"] = search_report
        error = {
            "weighting": history.get("error_weighting_used", config.error_weighting),
            "divisors": None if weights is None else [float(w) for w in weights],
        }
        check_rows = parts.validation[list(config.features)].to_numpy(np.float32)[:CHECK_ROWS]

        def write_extras(tmp: Path, version: int) -> ModelCard:
            report["version"] = version
            report["verdict"] = _verdict(report)
            report_dir = tmp / "report"
            report_dir.mkdir(exist_ok=True)
            if config.plots and y_test is not None:
                scores = {"autoencoder": test_errors, **report.pop("_baseline_scores", {})}
                report["plots"] = evaluate.plots(report_dir, y_test, scores, test_errors, threshold.value)
                if search_report is not None:
                    report["plots"].append(evaluate.search_plot(report_dir, search_report))
            report.pop("_baseline_scores", None)
            card = _card(config, version, report, statistics, error, started)
            (report_dir / "report.json").write_text(_json(report))
            (report_dir / "report.md").write_text(evaluate.markdown(report))
            return card

        with stage("export", f"SavedModel into {config.model_base}/<next version>"):
            version, version_dir, card = export.export(
                base=config.model_base if private is None else private / config.name,
                autoencoder=model,
                transform_dir=transform_dir,
                names=config.features,
                threshold=threshold.value,
                weights=weights,
                check_rows=check_rows,
                check_errors=val_errors[:CHECK_ROWS],
                write_extras=write_extras,
                envelope=envelope,
            )
        if labelled is not None:
            with stage("second stage", f"classifier on {len(labelled.labels)} labelled rows, one version"):
                version, version_dir, card = supervise.attach(labelled, config, version_dir, stage_policy)
        # The card holds the timings as of writing; add the export's own for the caller.
        if config.verbose:
            print(f"[train] model {config.name} v{version} -> {version_dir}", file=sys.stderr, flush=True)
            print(f"[train] report: {version_dir / 'report' / 'report.md'}", file=sys.stderr, flush=True)
        return TrainResult(
            version_dir=version_dir,
            version=version,
            card=card,
            report=report,
            timings=dict(stage.timings),
            autoencoder=model,
            transform_dir=Path(transform_dir) if keep_work_dir else None,
            error_weights=weights,
        )
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
        if not keep_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def _evaluate(
    config: TrainConfig,
    chosen: Candidate,
    x_test: np.ndarray,
    y_val: np.ndarray | None,
    y_test: np.ndarray | None,
    test_errors: np.ndarray,
) -> dict[str, Any]:
    report: dict[str, Any] = {"metrics": {}, "models": {}}
    if y_val is None or y_test is None:
        return report
    ae = evaluate.ranking(test_errors, y_test)
    report["metrics"].update(ae)
    report["metrics"]["validation_pr_auc"] = _pr_auc(chosen.val_errors, y_val)
    report["models"]["autoencoder"] = {**ae, "validation_pr_auc": report["metrics"]["validation_pr_auc"]}
    if config.baselines:
        scores = {}
        for b in evaluate.baselines(chosen.x_train, chosen.x_val, x_test, y_val, seed=config.seed):
            report["models"][b.name] = {
                **evaluate.ranking(b.test_scores, y_test),
                "validation_pr_auc": _pr_auc(b.validation_scores, y_val),
                "fit_seconds": b.seconds,
            }
            scores[b.name] = b.test_scores
        report["_baseline_scores"] = scores
    return report


def _verdict(report: dict[str, Any]) -> str:
    models = report.get("models") or {}
    if "autoencoder" not in models or "pr_auc" not in models["autoencoder"]:
        return "Label-free run: no ranking metrics; the threshold is an alert budget."
    ae = models["autoencoder"]["pr_auc"]
    others = {k: v["pr_auc"] for k, v in models.items() if k != "autoencoder" and "pr_auc" in v}
    if not others:
        return f"Autoencoder test PR-AUC {ae:.4f} (baselines not computed)."
    best_name = max(others, key=lambda k: others[k])
    if ae >= others[best_name]:
        return f"The autoencoder beats every baseline in test PR-AUC: {ae:.4f} vs {best_name} {others[best_name]:.4f}."
    losers = ", ".join(f"{k} {v:.4f}" for k, v in others.items() if v > ae)
    return f"**The autoencoder LOSES to a baseline in test PR-AUC**: {ae:.4f} vs {losers}."


def _card(
    config: TrainConfig,
    version: int,
    report: dict[str, Any],
    statistics: dict[str, Any],
    error: dict[str, Any],
    started: datetime,
) -> ModelCard:
    """The model card's content; ``fraudscore.model.ModelCard`` checks its required keys and writes it."""
    metrics = {k: v for k, v in report["metrics"].items() if isinstance(v, (int, float))}
    content = {
        "name": config.name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": list(config.features),
        "signature": {
            "name": SIGNATURE,
            "inputs": {n: "float32 [None] raw value" for n in config.features},
            "outputs": [*OUTPUTS, ENVELOPE_DISTANCE],
            "reconstruction_error": (
                "mean over features of the squared error of the scaled input"
                + (", each divided by its mean over the training normals" if error["divisors"] else "")
            ),
        },
        "preprocessing": {
            "scaling": config.scaling,
            "scaling_how": (
                "(x - min) / (max - min)" if config.scaling == "minmax" else "(x - mean) / standard deviation"
            )
            + " with tf.Transform full-pass statistics of the training normals",
            "clip": config.clip,
            "out_of_range": (
                "clipped to the training range before scaling, and counted"
                if config.clip
                else "passed through unclipped, and counted (out_of_range_count)"
            ),
            "log_features": list(config.log_features),
            "log": "signed log1p before scaling",
            "zero_range": "scaled to 0; any other value counts as out of range",
        },
        "error": error,
        "threshold": report["threshold"],
        "envelope": report["envelope"],
        "metrics": metrics,
        "metrics_split": "test",
        "baselines": {k: v for k, v in report.get("models", {}).items() if k != "autoencoder"},
        "statistics": statistics,
        "data": report["data"],
        "splits": report["splits"],
        "training": {k: v for k, v in report["training"].items() if not k.endswith("_history")},
        "training_started_at": started.isoformat(timespec="seconds"),
        "training_seconds": sum(report["timings"].values()),
        "timings": report["timings"],
        "libraries": library_versions(),
        "report": "report/report.md",
    }
    return ModelCard.from_dict(content, source=f"model card of {config.name} version {version}")


def _json(obj: Any) -> str:
    import json

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.dumps(obj, indent=2, default=default) + "\n"
