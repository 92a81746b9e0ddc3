"""``fraudscore train``: flags -> :class:`TrainConfig` -> one run; exit 1 with the reason on failure."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudscore import features
from trainer.config import (
    DEFAULT_HIDDEN,
    DEFAULT_LOG_FEATURES,
    PCA_AUTO,
    ThresholdPolicy,
    TrainConfig,
    TrainError,
)
from trainer.second_stage import FAMILIES

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(data=Path("-"))
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="CSV in the Kaggle creditcard.csv schema (.csv, .csv.gz or Kaggle's .zip)",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="directory of model bases (default: models)")
    parser.add_argument("--name", default="creditcard", help="model name; versions go to OUT/NAME/<n>/")
    parser.add_argument(
        "--model-base", type=Path, default=None, help="the model base directory itself (overrides --out/--name)"
    )
    parser.add_argument(
        "--epochs", type=int, default=d.epochs, help="maximum epochs (early stopping usually ends sooner)"
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size")
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam learning rate")
    parser.add_argument(
        "--hidden",
        default=",".join(str(u) for u in DEFAULT_HIDDEN),
        help="hidden layer sizes, comma separated: the correction's layers when --pca-components > 0, else the "
        "dense autoencoder's (the seed's was 20,10,7,10,20 with --pca-components 0); default %(default)s",
    )
    parser.add_argument(
        "--activation", default=d.activation, choices=("tanh", "elu", "relu"), help="hidden-layer activation"
    )
    parser.add_argument(
        "--scaling",
        default=d.scaling,
        choices=("minmax", "zscore"),
        help="minmax: (x-min)/(max-min), the seed's; zscore: (x-mean)/sd; tf.Transform statistics of training normals",
    )
    parser.add_argument(
        "--clip",
        action=argparse.BooleanOptionalAction,
        default=d.clip,
        help="clip values outside the training range before scaling (--no-clip passes them through; "
        "either way they are counted as out of range)",
    )
    parser.add_argument(
        "--envelope-budget",
        type=_budget_percent,
        default=d.envelope_budget,
        metavar="Q",
        help="also flag a transaction lying outside the training normals' range (p1-p99 widths summed over "
        "features) farther than all but Q%% of validation normals, whatever its score (default %(default)s; 0: "
        "farther than any of them)",
    )
    parser.add_argument(
        "--envelope-widths",
        type=_positive_float,
        default=d.envelope_widths,
        metavar="W",
        help="the envelope rule's limit in widths instead of --envelope-budget's",
    )
    parser.add_argument(
        "--error-weighting",
        default=d.error_weighting,
        choices=("auto", "none", "standardized"),
        help="standardized: divide each feature's squared error by its mean on the training normals; "
        "auto (default): whichever of the two ranks validation better (none without labels)",
    )
    parser.add_argument(
        "--pca-components",
        default="auto" if d.pca_components == PCA_AUTO else str(d.pca_components),
        help="auto (default): a PCA-coded autoencoder whose code size is the PCA residual's best on validation; "
        "N: code fixed to N principal axes, with --hidden as its nonlinear correction; 0: a plain dense autoencoder",
    )
    parser.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs")
    search = parser.add_argument_group(
        "model search", "choose the design by validation PR-AUC (needs the Class column; the test split is not used)"
    )
    search.add_argument(
        "--search",
        action="store_true",
        help="search scaling, clipping, bottleneck, depth, activation and error weighting instead of the defaults",
    )
    search.add_argument(
        "--search-trials", type=int, default=d.search_trials, help="designs to try (Optuna TPE sampler)"
    )
    search.add_argument(
        "--search-refine",
        action=argparse.BooleanOptionalAction,
        default=d.search_refine,
        help="after the sampler's trials, try every design one step from the winner, while one wins (max 3 rounds)",
    )
    search.add_argument(
        "--search-seeds",
        default=",".join(str(s) for s in d.search_seeds),
        help="training seeds per design, comma separated; a design scores the mean validation PR-AUC over them",
    )
    search.add_argument(
        "--search-space",
        default=None,
        help='JSON object replacing dimensions of the space, e.g. \'{"bottleneck": [16, 24], "depth": [1]}\' '
        "(dimensions: scaling, clip, bottleneck, depth, activation, error_weighting, pca_start), or @FILE",
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed; same seed and data, same model")
    parser.add_argument(
        "--threshold-policy",
        default="auto",
        help="best-f1 | precision:P (e.g. precision:0.9) | budget:Q (flag top Q%%, e.g. budget:0.2) | "
        "auto = best-f1 with labels, budget:0.2 without (default)",
    )
    parser.add_argument(
        "--amount-scale",
        choices=("linear", "log"),
        default="log" if DEFAULT_LOG_FEATURES else "linear",
        help="min-max scale Amount as is (linear) or after a signed log1p (log); default: log (heavy-tailed amounts)",
    )
    parser.add_argument(
        "--min-pr-auc",
        type=float,
        default=None,
        help="quality gate: refuse to export (exit 1) if the test PR-AUC is below this",
    )
    parser.add_argument(
        "--max-bad-fraction",
        type=float,
        default=d.max_bad_fraction,
        help="fail if more than this share of rows is unusable (default 0.01)",
    )
    parser.add_argument(
        "--beam-runner", default=None, help="Beam runner for the tf.Transform analysis (default DirectRunner)"
    )
    parser.add_argument(
        "--beam-args",
        default="",
        help='extra Beam pipeline options, one quoted string (e.g. "--project=p --region=r --temp_location=gs://b/t")',
    )
    parser.add_argument(
        "--work-dir", default=None, help="scratch dir for the analysis (a gs:// URL for distributed runners)"
    )
    parser.add_argument(
        "--tensorboard-dir",
        type=Path,
        default=None,
        help="TensorBoard logs, one subdirectory per run (default: runs/NAME beside the models directory)",
    )
    parser.add_argument("--no-baselines", action="store_true", help="skip the Isolation Forest and PCA baselines")
    labels = parser.add_argument_group(
        "second stage",
        "train a small supervised classifier on labelled transactions (raw features + the autoencoder's per-feature "
        "errors) and export it in the same version, as the extra output fraud_probability",
    )
    source = labels.add_mutually_exclusive_group()
    source.add_argument(
        "--labels", type=Path, metavar="FILE", help="labelled transactions: a CSV in the Kaggle schema with Class"
    )
    source.add_argument(
        "--labels-from-cases",
        action="store_true",
        help="the analysts' labelled cases in Bigtable (latest label per transaction), with the stream's durable "
        "traffic sample as presumed-legit rows weighted by 1/sampling rate",
    )
    labels.add_argument(
        "--labels-since",
        metavar="WHEN",
        help="with --labels-from-cases: labels given at or after this time (30d, 12h or ISO 8601); default all",
    )
    labels.add_argument(
        "--threshold-score",
        choices=("reconstruction_error", "fraud_probability"),
        default="reconstruction_error",
        help="the score is_anomaly thresholds: the autoencoder's error (default; its threshold as without labels) or "
        "fraud_probability, calibrated by --threshold-policy on a held-out part of the labelled rows",
    )
    labels.add_argument(
        "--second-stage",
        default="auto",
        choices=("auto", *FAMILIES),
        help="the second stage's family (trainer.second_stage): auto (default) chooses by time-ordered "
        "cross-validation on the labelled rows",
    )
    # Not --project/--instance: --beam-args "--project=p ..." would parse as this flag.
    labels.add_argument(
        "--cases-project", default=None, help="the cases' Google Cloud project (default $FRAUDSCORE_PROJECT)"
    )
    labels.add_argument(
        "--cases-instance", default=None, help="the cases' Bigtable instance (default $FRAUDSCORE_BIGTABLE_INSTANCE)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    beam_args = shlex.split(args.beam_args)
    if args.beam_runner:
        beam_args.insert(0, f"--runner={args.beam_runner}")
    try:
        hidden = tuple(int(u) for u in args.hidden.split(",") if u.strip())
    except ValueError:
        raise TrainError(f"--hidden {args.hidden!r}: expected comma-separated integers, e.g. 20,10,7,10,20") from None
    if not hidden or min(hidden) <= 0:
        raise TrainError(f"--hidden {args.hidden!r}: expected positive layer sizes")
    if args.epochs <= 0 or args.batch_size <= 0:
        raise TrainError("--epochs and --batch-size must be positive")
    if args.min_pr_auc is not None and not 0.0 <= args.min_pr_auc <= 1.0:
        raise TrainError(f"--min-pr-auc {args.min_pr_auc}: must be in [0, 1]")
    if not 0.0 <= args.max_bad_fraction <= 1.0:
        raise TrainError(f"--max-bad-fraction {args.max_bad_fraction}: must be in [0, 1]")
    pca_components = _pca_components(args.pca_components)
    if args.search_trials <= 0:
        raise TrainError(f"--search-trials {args.search_trials}: must be positive")
    try:
        seeds = tuple(int(s) for s in args.search_seeds.split(",") if s.strip())
    except ValueError:
        raise TrainError(f"--search-seeds {args.search_seeds!r}: expected comma-separated integers, e.g. 0,1") from None
    if not seeds:
        raise TrainError("--search-seeds: at least one seed is needed")
    return TrainConfig(
        data=args.data,
        model_base=args.model_base or args.out / args.name,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        hidden=hidden,
        activation=args.activation,
        scaling=args.scaling,
        clip=args.clip,
        envelope_widths=args.envelope_widths,
        envelope_budget=args.envelope_budget,
        error_weighting=args.error_weighting,
        pca_components=pca_components,
        search=args.search,
        search_trials=args.search_trials,
        search_refine=args.search_refine,
        search_seeds=seeds,
        search_space=_search_space(args.search_space),
        patience=args.patience,
        seed=args.seed,
        log_features=(features.AMOUNT,) if args.amount_scale == "log" else (),
        threshold_policy=ThresholdPolicy.parse(args.threshold_policy),
        min_pr_auc=args.min_pr_auc,
        max_bad_fraction=args.max_bad_fraction,
        beam_args=tuple(beam_args),
        work_dir=args.work_dir,
        tensorboard_dir=args.tensorboard_dir,
        baselines=not args.no_baselines,
        verbose=not args.quiet,
        labels_file=args.labels,
        labels_from_cases=args.labels_from_cases,
        labels_since=_since(args.labels_since),
        cases_project=args.cases_project,
        cases_instance=args.cases_instance,
        threshold_score=args.threshold_score,
        second_stage_family=None if args.second_stage == "auto" else args.second_stage,
    )


def _since(text: str | None) -> datetime | None:
    """--labels-since as a time: a duration back from now (30d, 12h) or ISO 8601, as ``fraudscore cases``."""
    if text is None:
        return None
    from cases.cli import UsageError, parse_time  # Bigtable's client only when cases are read

    try:
        return parse_time(text, datetime.now(UTC))
    except UsageError as exc:
        raise TrainError(f"--labels-since {exc}") from None


def _pca_components(text: str) -> int:
    if text == "auto":
        return PCA_AUTO
    n = len(features.MODEL_FEATURES)
    try:
        value = int(text)
    except ValueError:
        value = -2
    if not 0 <= value < n:
        raise TrainError(f"--pca-components {text!r}: expected auto or an integer in [0, {n - 1}]")
    return value


def _search_space(text: str | None) -> dict[str, list[Any]] | None:
    """The --search-space JSON (inline or @FILE); its dimensions are checked by trainer.search.SearchSpace."""
    if text is None:
        return None
    source = "--search-space"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise TrainError(f"--search-space {source}: cannot read: {exc.strerror or exc}") from None
    try:
        space = json.loads(text)
    except ValueError as exc:
        raise TrainError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(space, dict):
        raise TrainError(f"{source}: expected a JSON object of dimension -> list of choices")
    return space


def main(args: argparse.Namespace) -> int:
    from trainer import train

    for noisy in ("apache_beam", "tensorflow", "absl"):  # keep the stage lines and progress bars readable
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config = config_from_args(args)
        result = train(config)
    except TrainError as exc:
        print(f"fraudscore train: {exc}", file=sys.stderr)
        return 1
    report = result.report
    print(report.get("verdict", ""))
    print(f"model {result.card['name']} v{result.version}: {result.version_dir}")
    threshold = result.card["threshold"]
    score = threshold.get("score", "reconstruction_error")
    print(f"threshold {threshold['value']:.6g} on {score} ({threshold['policy']})")
    stage = result.card.get("second_stage")
    if stage:
        labels = stage.get("labels") or {}
        print(
            f"second stage: fraud_probability from {stage.get('rows')} rows ({labels.get('frauds')} labelled frauds, "
            f"{labels.get('legit')} labelled legit, {(labels.get('traffic_sample') or {}).get('rows', 0)} sampled)"
        )
    for name, m in (report.get("models") or {}).items():
        roc, pr = m.get("roc_auc", float("nan")), m.get("pr_auc", float("nan"))
        print(f"  {name:<18} test ROC-AUC {roc:.4f}  PR-AUC {pr:.4f}")
    print(f"report: {result.version_dir / 'report' / 'report.md'}")
    return 0


def _budget_percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"expected a percentage in [0, 100), got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
