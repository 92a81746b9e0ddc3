"""Typed configuration, result and errors of one training run.

Light on purpose (no TensorFlow, no pandas): ``fraudscore train --help`` and
the package import stay fast.

Errors::

    TrainError                 anything that stops a run, with a message that says what to fix
    ├── DataError              the input file: missing columns, too many bad rows, too few rows
    ├── PolicyError            a threshold policy that cannot be parsed or applied
    └── QualityGateError       the model is worse than ``--min-pr-auc``; nothing was exported
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fraudscore import features
from fraudscore.features import MODEL_FEATURES

# The shipped default design is the winner of `fraudscore train --search` on the real sample
# (samples/creditcard-real-dev.csv.gz; 20 Optuna TPE trials then 3 rounds of one-step refinement, 48 trials
# x 3 seeds, mean validation PR-AUC, the test split never used; `python -m bench.quality --search` writes the
# table to bench/results/search.json): min-max scaling clipped to the training range, a PCA-coded autoencoder
# (code fixed to the training normals' 28 principal axes, a 32-unit elu correction), errors standardized per
# feature. Validation PR-AUC 0.951 (seeds 0.961 / 0.951 / 0.941), the best plain dense design 0.898 (pruned).
# Two of its choices are then made per training run on validation, since they fit this sample's structure
# (its normals have one nearly constant direction) and another file may lack it: the code size (PCA_AUTO:
# the plain PCA residual's best count; 28 here, 3 on generated data) and the error weighting ("auto":
# standardized or none, whichever ranks validation better; standardized here, none on generated data,
# where standardized cost test PR-AUC 0.81 -> 0.21). On this sample both reproduce the winner exactly.
DEFAULT_HIDDEN: tuple[int, ...] = (32,)
DEFAULT_ACTIVATION = "elu"
DEFAULT_SCALING = "minmax"
DEFAULT_CLIP = True
DEFAULT_ERROR_WEIGHTING = "auto"  # standardized or none, whichever ranks validation better (trainer.pipeline)
PCA_AUTO = -1  # pca_components: the count whose plain PCA residual ranks validation best (trainer.evaluate)
DEFAULT_PCA_COMPONENTS = PCA_AUTO
DEFAULT_BUDGET_PERCENT = 0.2
DEFAULT_LOG_FEATURES: tuple[str, ...] = (features.AMOUNT,)


class TrainError(RuntimeError):
    """A training run that cannot go on; the message says what to fix."""


class DataError(TrainError):
    """The input data is unusable (missing columns, too many bad rows, too few rows)."""


class PolicyError(TrainError):
    """A threshold policy that is malformed or needs labels the data does not have."""


class QualityGateError(TrainError):
    """The trained model is worse than the configured minimum; it was not exported."""


PolicyKind = Literal["auto", "best-f1", "precision", "budget"]


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the alert threshold is chosen on the validation split.

    ``best-f1``      the threshold with the highest F1 on validation (labels needed)
    ``precision:P``  the lowest threshold whose validation precision is >= P: most frauds caught
                     at that precision (labels needed)
    ``budget:Q``     flag the Q percent of validation transactions with the highest error; the only
                     policy that works without labels (the seed's suggestion)
    ``auto``         ``best-f1`` when the data has labels, ``budget:0.2`` when it has none (default)
    """

    kind: PolicyKind
    param: float | None = None

    @classmethod
    def parse(cls, text: str) -> ThresholdPolicy:
        name, _, value = text.strip().partition(":")
        if name in ("auto", "best-f1"):
            if value:
                raise PolicyError(f"threshold policy {text!r}: {name} takes no parameter")
            return cls(name)  # type: ignore[arg-type]
        if name not in ("precision", "budget"):
            raise PolicyError(f"threshold policy {text!r}: expected best-f1, precision:P, budget:Q or auto")
        try:
            param = float(value)
        except ValueError:
            raise PolicyError(f"threshold policy {text!r}: {name} needs a number, e.g. {name}:0.9") from None
        if name == "precision" and not 0.0 < param <= 1.0:
            raise PolicyError(f"threshold policy {text!r}: precision must be in (0, 1]")
        if name == "budget" and not 0.0 < param < 100.0:
            raise PolicyError(f"threshold policy {text!r}: budget is a percentage in (0, 100)")
        return cls(name, param)  # type: ignore[arg-type]

    def resolve(self, has_labels: bool) -> ThresholdPolicy:
        """The concrete policy for data with or without labels."""
        if self.kind == "auto":
            return ThresholdPolicy("best-f1") if has_labels else ThresholdPolicy("budget", DEFAULT_BUDGET_PERCENT)
        if self.kind in ("best-f1", "precision") and not has_labels:
            raise PolicyError(
                f"threshold policy {self}: needs the Class column, which this file lacks; "
                f"use --threshold-policy budget:Q (flag the top Q percent)"
            )
        return self

    def __str__(self) -> str:
        return self.kind if self.param is None else f"{self.kind}:{self.param:g}"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one run needs; built once by the CLI (or a test) and passed down."""

    data: Path
    model_base: Path = Path("models") / "creditcard"
    epochs: int = 150
    batch_size: int = 1024
    learning_rate: float = 3e-3
    hidden: tuple[int, ...] = DEFAULT_HIDDEN
    activation: str = DEFAULT_ACTIVATION
    scaling: str = DEFAULT_SCALING  # "minmax" or "zscore" (trainer.preprocessing)
    clip: bool = DEFAULT_CLIP  # clip values outside the training range before scaling
    # Flag a row lying outside the training range by more than a limit (in p1-p99 widths summed over features),
    # whatever its score (trainer.envelope): the score alone is blind far outside the training data. The limit is
    # envelope_widths when given, else the one at most envelope_budget percent of validation normals exceed.
    envelope_widths: float | None = None
    envelope_budget: float = 0.1
    # "none": the error is the mean squared error of the scaled row; "standardized": each feature's squared
    # error is divided by its mean over the training normals first, so a feature the model reconstructs
    # closely on normal traffic weighs as much as a noisy one (a diagonal Mahalanobis distance of the residual).
    error_weighting: str = DEFAULT_ERROR_WEIGHTING
    # > 0: a PCA-coded autoencoder with this many principal axes as its code, ``hidden`` its nonlinear
    # correction (trainer.autoencoder.build); PCA_AUTO: the count chosen on validation like the PCA baseline's
    # (all 28 on the shipped real sample, 3 on generated data); 0: a plain dense autoencoder.
    pca_components: int = DEFAULT_PCA_COMPONENTS
    # Model search (trainer.search): off by default; the defaults above are its winner on the shipped real sample.
    search: bool = False
    search_trials: int = 20
    search_seeds: tuple[int, ...] = (0, 1, 2)
    search_refine: bool = True  # then try the winner's one-step neighbours (trainer.search)
    search_space: dict[str, list[Any]] | None = None  # overrides of trainer.search.SearchSpace fields
    patience: int = 5
    seed: int = 42
    features: tuple[str, ...] = MODEL_FEATURES
    # Features put through a signed log1p before min-max scaling (heavy-tailed amounts).
    log_features: tuple[str, ...] = DEFAULT_LOG_FEATURES
    threshold_policy: ThresholdPolicy = field(default_factory=lambda: ThresholdPolicy("auto"))
    min_pr_auc: float | None = None
    max_bad_fraction: float = 0.01
    # Extra Beam pipeline arguments for the tf.Transform analysis (e.g. --runner=DataflowRunner ...).
    beam_args: tuple[str, ...] = ()
    # Scratch space for the analysis (input Parquet, tf.Transform output); a temp dir if None.
    # A distributed Beam runner needs a location its workers can read, so this may be a URL (gs://...).
    work_dir: str | None = None  # kept after the run when given
    keep_work_dir: bool = False
    # TensorBoard logs, one subdirectory per run; default <model base>/../../runs/<name>/ (models/x -> runs/x).
    tensorboard_dir: Path | None = None
    baselines: bool = True
    plots: bool = True
    verbose: bool = True  # progress bars and per-stage lines
    # The supervised second stage (trainer.supervise): labelled rows from a CSV with Class, or the analysts'
    # labelled cases in Bigtable (with the stream's traffic sample as presumed-legit rows), at most one of them.
    labels_file: Path | None = None
    labels_from_cases: bool = False
    labels_since: datetime | None = None  # cases labelled at or after this time (with labels_from_cases)
    cases_project: str | None = None  # Bigtable project and instance of the cases (default: the environment's)
    cases_instance: str | None = None
    # The score is_anomaly thresholds: "reconstruction_error" (the autoencoder's threshold, as without labels) or
    # "fraud_probability" (calibrated by threshold_policy on a held-out part of the labelled rows).
    threshold_score: str = "reconstruction_error"
    # The second stage's family (trainer.second_stage.FAMILIES); None: chosen by time-ordered CV on the labels.
    second_stage_family: str | None = None

    def __post_init__(self) -> None:
        if self.labels_file is not None and self.labels_from_cases:
            raise TrainError("--labels FILE and --labels-from-cases are exclusive: give one source of labels")
        if self.labels_since is not None and not self.labels_from_cases:
            raise TrainError("--labels-since selects labelled cases: it needs --labels-from-cases")
        if self.threshold_score not in ("reconstruction_error", "fraud_probability"):
            raise TrainError(
                f"--threshold-score {self.threshold_score!r}: expected reconstruction_error or fraud_probability"
            )
        if self.threshold_score == "fraud_probability" and not self.has_labels_source:
            raise TrainError(
                "--threshold-score fraud_probability needs a second stage: give --labels FILE or --labels-from-cases"
            )

    @property
    def has_labels_source(self) -> bool:
        return self.labels_file is not None or self.labels_from_cases

    @property
    def name(self) -> str:
        return self.model_base.name

    @property
    def output_activation(self) -> str:
        """Sigmoid when the scaled input is bounded to [0, 1] (clipped min-max), else linear."""
        return "sigmoid" if self.scaling == "minmax" and self.clip and not self.pca_components else "linear"

    def describe(self) -> str:
        """One line naming the model design, e.g. ``zscore noclip 29-24-29 tanh error:none``."""
        if self.pca_components:
            correction = "-".join(str(u) for u in self.hidden) or "none"
            k = "auto" if self.pca_components == PCA_AUTO else str(self.pca_components)
            layers = f"{len(self.features)}-pca{k}-{len(self.features)} + correction {correction}"
        else:
            layers = "-".join(str(u) for u in (len(self.features), *self.hidden, len(self.features)))
        clip = "clip" if self.clip else "noclip"
        return f"{self.scaling} {clip} {layers} {self.activation} error:{self.error_weighting}"


@dataclass
class TrainResult:
    """What a finished run produced. ``autoencoder`` and ``transform_dir`` are live for tests and the demo."""

    version_dir: Path
    version: int
    card: dict[str, Any]
    report: dict[str, Any]
    timings: dict[str, float]
    autoencoder: Any = None  # keras.Model, in memory
    transform_dir: Path | None = None  # the tf.Transform output, if the work dir was kept
    error_weights: Any = None  # np.ndarray [F] of per-feature error divisors, None when errors are unweighted
