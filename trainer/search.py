"""Model selection on the validation split: a declared search space, Optuna's TPE sampler, several seeds.

The design of the autoencoder (scaling, clipping, bottleneck width, depth,
activation, error weighting) is chosen, not assumed: on real card rows the
winner changed from sample to sample, and a design chosen on our own
generator lost to a plain PCA. Each trial trains one design with every seed
in ``TrainConfig.search_seeds`` and scores it by the **mean validation
PR-AUC** over those seeds; Optuna's median pruner stops a design after its
first seeds when it is clearly worse than the trials before it.

The test split never reaches this module: :func:`search` is given a
``fit`` callable that trains on the training normals and returns
validation errors, and the validation labels. Nothing here can see test
rows, so nothing here can choose by them (a test checks that the outcome is
the same whatever the test split holds).

A design whose kept seed misses a hard probe goal (``trainer.probes``: normal
rows x20, x100, one feature 10 ranges out, flagged as the design would be
exported, threshold and envelope rule included) fails with the reason "blind
spot", whatever its PR-AUC.

The winner is the design with the best mean; the model exported is that
design's best seed on validation. Every trial goes into the report's search
table, pruned and failed ones included.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from trainer.config import TrainConfig, TrainError
from trainer.probes import blind_spots

log = logging.getLogger(__name__)


# Width of each layer of the nonlinear correction of a PCA-started autoencoder (at least the feature count).
CORRECTION_WIDTH = 32
REFINE_ROUNDS = 3


class SearchError(TrainError):
    """The search cannot run (no labels, an empty or malformed space) or produced no usable model."""


@dataclass(frozen=True)
class SearchSpace:
    """The declared choices; every combination is a design. Override any field with ``--search-space``."""

    scaling: tuple[str, ...] = ("minmax", "zscore")
    clip: tuple[bool, ...] = (False, True)
    bottleneck: tuple[int, ...] = (8, 12, 16, 20, 24, 26, 28)
    depth: tuple[int, ...] = (1, 2, 3)
    activation: tuple[str, ...] = ("tanh", "elu", "relu")
    error_weighting: tuple[str, ...] = ("standardized", "none")
    # True: a linear path of `bottleneck` units started at PCA plus a nonlinear correction of `depth` layers
    # (trainer.autoencoder.build); False: a plain dense autoencoder shrinking to `bottleneck` in `depth` layers.
    pca_start: tuple[bool, ...] = (True, False)

    @classmethod
    def from_overrides(cls, overrides: dict[str, list[Any]] | None) -> SearchSpace:
        """The default space with some dimensions replaced; a clear :class:`SearchError` for a bad one."""
        space = cls()
        if not overrides:
            return space
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            known = ", ".join(sorted(names))
            raise SearchError(f"search space: unknown dimension {', '.join(unknown)} (known: {known})")
        changes: dict[str, tuple[Any, ...]] = {}
        for name, values in overrides.items():
            if not isinstance(values, list) or not values:
                raise SearchError(f"search space: {name} must be a non-empty list of choices, got {values!r}")
            allowed = getattr(space, name)
            if name in ("bottleneck", "depth"):
                bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < 1]
                if bad:
                    raise SearchError(f"search space: {name} takes positive integers, got {bad}")
            else:
                bad = [v for v in values if v not in allowed]
                if bad:
                    raise SearchError(f"search space: {name} {bad} not among {list(allowed)}")
            changes[name] = tuple(values)
        return replace(space, **changes)

    @property
    def size(self) -> int:
        return math.prod(len(getattr(self, f.name)) for f in dataclasses.fields(self))


def hidden_layers(n_features: int, bottleneck: int, depth: int) -> tuple[int, ...]:
    """Encoder widths shrinking evenly from the input to the bottleneck, mirrored: 29, 8, 3 -> 22-15-8-15-22."""
    if bottleneck >= n_features:
        bottleneck = n_features - 1
    encoder = [round(n_features - (n_features - bottleneck) * (i + 1) / depth) for i in range(depth)]
    return (*encoder, *encoder[-2::-1])


class Candidate(Protocol):
    """What ``fit`` returns: a trained model and its errors on the validation split."""

    config: TrainConfig
    val_errors: np.ndarray
    probe_shares: dict[str, float]  # trainer.probes: a design that misses a hard goal has a blind spot


@dataclass
class Trial:
    number: int
    design: str
    params: dict[str, Any]
    state: str = "complete"  # complete | pruned | failed | repeat (of an earlier trial, not trained again)
    validation_pr_auc: list[float] = field(default_factory=list)  # one per seed trained
    seconds: float = 0.0
    reason: str = ""
    phase: str = "tpe"  # "tpe" (Optuna's sampler) or "refine around trial N" (a one-step neighbour of a winner)
    probes: dict[str, float] = field(default_factory=dict)  # of the seed kept: share of each probe flagged

    @property
    def mean(self) -> float:
        return float(np.mean(self.validation_pr_auc)) if self.validation_pr_auc else float("nan")

    @property
    def sd(self) -> float:
        return float(np.std(self.validation_pr_auc, ddof=1)) if len(self.validation_pr_auc) > 1 else 0.0

    def as_row(self) -> dict[str, Any]:
        return {
            "trial": self.number,
            "design": self.design,
            **self.params,
            "state": self.state,
            "validation_pr_auc": self.validation_pr_auc,
            "validation_pr_auc_mean": self.mean,
            "validation_pr_auc_sd": self.sd,
            "seconds": round(self.seconds, 1),
            "phase": self.phase,
            "probes": self.probes,
            **({"reason": self.reason} if self.reason else {}),
        }


@dataclass
class Outcome:
    best: Any  # the Candidate to export: the winning design's best seed on validation
    best_trial: Trial
    trials: list[Trial]
    space: SearchSpace

    def report(self) -> dict[str, Any]:
        return {
            "criterion": "mean validation PR-AUC over seeds, no blind spot on the probes (test split never used)",
            "space": {f.name: list(getattr(self.space, f.name)) for f in dataclasses.fields(self.space)},
            "designs_in_space": self.space.size,
            "winner": self.best_trial.as_row(),
            "exported_seed": self.best.config.seed,
            "trials": [t.as_row() for t in sorted(self.trials, key=lambda t: -np.nan_to_num(t.mean, nan=-1.0))],
        }


def neighbours(params: dict[str, Any], space: SearchSpace) -> list[dict[str, Any]]:
    """Every design of ``space`` that differs from ``params`` in exactly one dimension."""
    out = []
    for f in dataclasses.fields(space):
        for value in getattr(space, f.name):
            if value != params[f.name]:
                out.append({**params, f.name: value})
    return out


def design_config(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    n = len(base.features)
    if params["pca_start"]:
        pca_components = min(params["bottleneck"], n - 1)
        hidden: tuple[int, ...] = (max(CORRECTION_WIDTH, n),) * params["depth"]
    else:
        pca_components, hidden = 0, hidden_layers(n, params["bottleneck"], params["depth"])
    return replace(
        base,
        scaling=params["scaling"],
        clip=params["clip"],
        hidden=hidden,
        activation=params["activation"],
        error_weighting=params["error_weighting"],
        pca_components=pca_components,
    )


def search(
    base: TrainConfig,
    fit: Callable[[TrainConfig], Candidate],
    y_val: np.ndarray | None,
    score: Callable[[np.ndarray, np.ndarray], float],
) -> Outcome:
    """Runs ``base.search_trials`` trials over the space; ``fit`` trains one config, ``score`` is PR-AUC."""
    import optuna

    if y_val is None:
        raise SearchError(
            "--search ranks designs by validation PR-AUC and needs the Class column, which this file lacks; "
            "train without --search (the shipped default design, alert-budget threshold)"
        )
    if int(np.sum(y_val)) == 0:
        raise SearchError("--search: the validation split holds no fraud, so PR-AUC cannot rank designs")
    space = SearchSpace.from_overrides(base.search_space)
    seeds = tuple(base.search_seeds)
    if not seeds:
        raise SearchError("--search-seeds: at least one seed is needed")
    trials: list[Trial] = []
    by_design: dict[str, Trial] = {}
    phase = {"name": "tpe"}
    best: dict[str, Any] = {"candidate": None, "trial": None, "pr": -1.0}

    def objective(ot: optuna.Trial) -> float:
        params = {f.name: ot.suggest_categorical(f.name, getattr(space, f.name)) for f in dataclasses.fields(space)}
        config = design_config(base, params)
        trial = Trial(ot.number, config.describe(), params, phase=phase["name"])
        trials.append(trial)
        earlier = by_design.get(trial.design)
        if earlier is not None:  # TPE proposes a design again: same seeds, same result, no need to train it twice
            trial.state, trial.reason = "repeat", f"same design as trial {earlier.number}"
            _progress(base, trial, len(trials))
            if earlier.state == "pruned":
                raise optuna.TrialPruned()
            return earlier.mean
        by_design[trial.design] = trial
        start = time.perf_counter()
        kept: tuple[float, Any] | None = None
        try:
            for step, seed in enumerate(seeds):
                candidate = fit(replace(config, seed=seed))
                pr = score(candidate.val_errors, y_val)
                if not math.isfinite(pr):
                    raise SearchError(f"seed {seed}: non-finite validation errors (training diverged)")
                trial.validation_pr_auc.append(pr)
                if kept is None or pr > kept[0]:
                    kept = (pr, candidate)
                ot.report(pr, step)
                if step < len(seeds) - 1 and ot.should_prune():  # after the last seed there is nothing to save
                    trial.state = "pruned"
                    raise optuna.TrialPruned()
            assert kept is not None
            trial.probes = dict(kept[1].probe_shares)
            missed = blind_spots(trial.probes)
            if missed:  # ranks frauds, but blind far outside the training data: it cannot win
                trial.state, trial.reason = "failed", "blind spot: " + ", ".join(missed)
                return float("nan")
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # one bad design must not end the search; it is reported with its reason
            first_line = next(iter(str(exc).strip().splitlines()), "")  # one line: the CLI error is one line
            trial.state, trial.reason = "failed", f"{type(exc).__name__}: {first_line}"
            log.warning("search trial %d (%s) failed: %s", trial.number, trial.design, trial.reason)
            return float("nan")
        finally:
            trial.seconds = time.perf_counter() - start
            _progress(base, trial, len(trials))
        if kept is not None and trial.mean > best["pr"]:
            best.update(candidate=kept[1], trial=trial, pr=trial.mean)
        return trial.mean

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is logged above, with its reason
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=min(8, base.search_trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
    )
    study.optimize(objective, n_trials=base.search_trials, catch=())
    # Refinement: TPE samples a 1,000-design space sparsely, so the winner's one-step neighbours (every
    # design that differs from it in one dimension) are tried too, round after round while one wins.
    for _ in range(REFINE_ROUNDS if base.search_refine else 0):
        centre = best["trial"]
        if centre is None:
            break
        todo = {design_config(base, n).describe(): n for n in neighbours(centre.params, space)}
        todo = {d: n for d, n in todo.items() if d not in by_design}
        if not todo:
            break
        for params in todo.values():
            study.enqueue_trial(params)
        phase["name"] = f"refine around trial {centre.number}"
        study.optimize(objective, n_trials=len(todo), catch=())
        if best["trial"] is centre:
            break
    if best["candidate"] is None:
        reasons = "; ".join(f"trial {t.number} {t.state}: {t.reason}" for t in trials if t.reason)[:500]
        raise SearchError(f"the search produced no usable model in {len(trials)} trials ({reasons or 'all pruned'})")
    return Outcome(best=best["candidate"], best_trial=best["trial"], trials=trials, space=space)


def _progress(base: TrainConfig, trial: Trial, done: int) -> None:
    if not base.verbose:
        return
    prs = " ".join(f"{p:.3f}" for p in trial.validation_pr_auc)
    print(
        f"[search] trial {done} ({trial.phase}) {trial.design}: "
        f"{trial.state}, validation PR-AUC {prs} (mean {trial.mean:.3f}) in {trial.seconds:.0f} s",
        file=sys.stderr,
        flush=True,
    )
