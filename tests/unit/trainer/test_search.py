"""Model search (trainer.search) with a fake ``fit``: the space, the layer widths, who wins, what is exported,
and how failures are reported. No training here: each fake candidate's validation PR-AUC is set by the test."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer import search as search_mod
from trainer.config import TrainConfig, TrainError
from trainer.search import SearchError, SearchSpace, hidden_layers, search

Y_VAL = np.array([0, 0, 0, 1, 0, 1], np.int8)


NO_BLIND_SPOT = {"x5": 0.95, "x20": 1.0, "x100": 1.0, "above_10": 1.0, "below_10": 1.0}


@dataclass
class FakeCandidate:
    config: TrainConfig
    val_errors: np.ndarray
    probe_shares: dict[str, float] = field(default_factory=lambda: dict(NO_BLIND_SPOT))


def read_score(val_errors: np.ndarray, labels: np.ndarray) -> float:
    """The fake fit writes the PR-AUC it wants into the first error; labels must be the validation labels."""
    np.testing.assert_array_equal(labels, Y_VAL)
    return float(val_errors[0])


def base(**overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "data": Path("x.csv"),
        "search": True,
        "search_trials": 6,
        "search_seeds": (0, 1, 2),
        "search_refine": False,  # the refinement tests switch it on
        "search_space": {
            "bottleneck": [4, 8, 16],
            "depth": [1],
            "activation": ["tanh"],
            "scaling": ["minmax"],
            "pca_start": [False],
        },
        "verbose": False,
    }
    settings.update(overrides)
    return TrainConfig(**settings)


class ScoredFit:
    """A fit whose validation PR-AUC is ``table[bottleneck][seed]``; records every config it was given."""

    def __init__(self, table: dict[int, dict[int, float]]) -> None:
        self.table = table
        self.calls: list[TrainConfig] = []

    def __call__(self, config: TrainConfig) -> FakeCandidate:
        self.calls.append(config)
        bottleneck = config.hidden[len(config.hidden) // 2]
        return FakeCandidate(config, np.full(len(Y_VAL), self.table[bottleneck][config.seed]))


# --- SearchSpace.from_overrides ---------------------------------------------------------------------------


def test_no_overrides_is_the_default_space() -> None:
    assert SearchSpace.from_overrides(None) == SearchSpace() == SearchSpace.from_overrides({})
    assert SearchSpace().size == 2 * 2 * 7 * 3 * 3 * 2 * 2


def test_overrides_replace_only_their_dimensions() -> None:
    space = SearchSpace.from_overrides({"bottleneck": [6, 12], "clip": [False], "scaling": ["zscore"]})
    assert space.bottleneck == (6, 12) and space.clip == (False,) and space.scaling == ("zscore",)
    assert space.depth == SearchSpace().depth and space.activation == SearchSpace().activation
    assert space.size == 2 * 1 * 1 * 3 * 3 * 2 * 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": [8]}, r"unknown dimension width \(known: activation, bottleneck, clip, depth, error_weighting"),
        ({"depth": []}, r"depth must be a non-empty list of choices, got \[\]"),
        ({"depth": 2}, r"depth must be a non-empty list of choices, got 2"),
        ({"depth": [0, 2]}, r"depth takes positive integers, got \[0\]"),
        ({"bottleneck": [8, "16"]}, r"bottleneck takes positive integers, got \['16'\]"),
        ({"bottleneck": [True]}, r"bottleneck takes positive integers, got \[True\]"),
        ({"scaling": ["robust"]}, r"scaling \['robust'\] not among \['minmax', 'zscore'\]"),
        ({"activation": ["tanh", "gelu"]}, r"activation \['gelu'\] not among"),
        ({"clip": ["no"]}, r"clip \['no'\] not among \[False, True\]"),
        ({"error_weighting": ["mahalanobis"]}, r"error_weighting \['mahalanobis'\] not among"),
    ],
)
def test_bad_overrides_are_a_clear_search_error(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SearchError, match=message) as info:
        SearchSpace.from_overrides(overrides)
    assert str(info.value).startswith("search space: ") and "\n" not in str(info.value)
    assert isinstance(info.value, TrainError)  # so `fraudscore train` reports it as one line, exit 1


# --- hidden_layers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_features", "bottleneck", "depth", "expected"),
    [
        (29, 8, 3, (22, 15, 8, 15, 22)),
        (29, 8, 1, (8,)),
        (29, 9, 2, (19, 9, 19)),
        (29, 20, 3, (26, 23, 20, 23, 26)),
        (29, 28, 1, (28,)),
        (29, 29, 1, (28,)),  # a bottleneck as wide as the input would learn the identity: one narrower
        (29, 40, 2, (28, 28, 28)),
    ],
)
def test_hidden_layers_shrink_evenly_to_the_bottleneck_and_mirror(
    n_features: int, bottleneck: int, depth: int, expected: tuple[int, ...]
) -> None:
    assert hidden_layers(n_features, bottleneck, depth) == expected


# --- search -----------------------------------------------------------------------------------------------


def test_search_sees_only_a_fit_callable_and_the_validation_labels() -> None:
    # The interface itself keeps the test split out: no data, no test labels, nothing else to reach them by.
    assert list(inspect.signature(search).parameters) == ["base", "fit", "y_val", "score"]
    fit = ScoredFit({4: {0: 0.5, 1: 0.5, 2: 0.5}, 8: {0: 0.6, 1: 0.6, 2: 0.6}, 16: {0: 0.4, 1: 0.4, 2: 0.4}})
    outcome = search(base(), fit, Y_VAL, read_score)
    assert len(fit.calls) >= 6 and {c.seed for c in fit.calls} == {0, 1, 2}
    assert all(c.hidden in ((4,), (8,), (16,)) for c in fit.calls)
    assert 8 in {t.params["bottleneck"] for t in outcome.trials}  # precondition: the best design was tried
    assert outcome.best_trial.params["bottleneck"] == 8


def test_winner_is_the_best_mean_and_its_best_seed_is_exported() -> None:
    # bottleneck 8 has the best single seed (0.95) but a poor mean; 16 has the best mean; its best seed is 1.
    fit = ScoredFit({4: {0: 0.50, 1: 0.52, 2: 0.51}, 8: {0: 0.95, 1: 0.20, 2: 0.20}, 16: {0: 0.70, 1: 0.80, 2: 0.75}})
    outcome = search(base(search_trials=9), fit, Y_VAL, read_score)
    tried = {t.params["bottleneck"] for t in outcome.trials if t.state == "complete"}
    assert tried == {4, 8, 16}  # precondition: every design was scored on all seeds
    assert outcome.best_trial.params["bottleneck"] == 16
    assert outcome.best_trial.mean == pytest.approx(0.75)
    assert outcome.best_trial.validation_pr_auc == pytest.approx([0.70, 0.80, 0.75])
    assert outcome.best.config.seed == 1 and outcome.best.config.hidden == (16,)
    report = outcome.report()
    assert report["exported_seed"] == 1 and report["winner"]["bottleneck"] == 16
    assert report["trials"][0]["validation_pr_auc_mean"] == pytest.approx(0.75)  # best first
    assert "test split never used" in report["criterion"]


class ByTrialOrder:
    """A fit whose PR-AUC depends on the trial (the n-th design tried), whatever design that is."""

    def __init__(self, per_trial: list[list[float]]) -> None:
        self.per_trial = per_trial
        self.calls = 0

    def __call__(self, config: TrainConfig) -> FakeCandidate:
        trial, seed_index = divmod(self.calls, 3)
        self.calls += 1
        return FakeCandidate(config, np.full(len(Y_VAL), self.per_trial[trial][seed_index]))


def test_a_design_with_the_best_mean_is_not_pruned_after_its_last_seed() -> None:
    # Four designs whose last seed is lucky (mean 0.38), then one that is good on every seed (mean 0.9).
    # The median pruner compares each seed with the other designs' same seed; pruning after the last seed
    # saves no training and dropped the best design here.
    fit = ByTrialOrder([[0.1, 0.1, 0.95]] * 4 + [[0.9, 0.9, 0.9]])
    outcome = search(base(search_trials=5), fit, Y_VAL, read_score)
    assert fit.calls == 15
    assert outcome.best_trial.number == 4 and outcome.best_trial.mean == pytest.approx(0.9)
    assert outcome.best_trial.state == "complete"


def test_a_clearly_worse_design_is_pruned_after_its_first_seed() -> None:
    fit = ByTrialOrder([[0.8, 0.8, 0.8]] * 4 + [[0.1, 0.9, 0.9]])
    outcome = search(base(search_trials=5), fit, Y_VAL, read_score)
    assert fit.calls == 13  # the fifth design stopped after one seed
    assert outcome.trials[4].state == "pruned" and outcome.trials[4].validation_pr_auc == [0.1]
    assert outcome.best_trial.number in range(4)


def test_failing_trials_are_reported_with_their_reason_and_the_search_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def fit(config: TrainConfig) -> FakeCandidate:
        calls.append(config.seed)
        bottleneck = config.hidden[0]
        if bottleneck == 4:
            raise ValueError("Input contains NaN\n  (a multi-line\n  library message)")
        if bottleneck == 8 and config.seed == 1:
            return FakeCandidate(config, np.full(len(Y_VAL), np.nan))  # diverged on its second seed
        return FakeCandidate(config, np.full(len(Y_VAL), 0.6))

    outcome = search(base(search_trials=9), fit, Y_VAL, read_score)
    failed = [t for t in outcome.trials if t.state == "failed"]
    assert {t.params["bottleneck"] for t in failed} == {4, 8}  # precondition: both kinds were tried
    for t in failed:
        if t.params["bottleneck"] == 4:
            assert t.reason.startswith("ValueError: Input contains NaN") and t.validation_pr_auc == []
        else:
            assert "seed 1: non-finite validation errors" in t.reason and t.validation_pr_auc == [0.6]
        assert "\n" not in t.reason
        assert t.as_row()["reason"] == t.reason
    assert len(outcome.trials) == 9  # every trial ran despite the failures
    assert outcome.best_trial.params["bottleneck"] == 16 and outcome.best.config.hidden == (16,)
    assert all(row["state"] for row in outcome.report()["trials"])
    # One warning per failed trial, with its reason; not Optuna's misleading "The value nan is not acceptable".
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == len(failed) and all("failed: " in w for w in warnings), warnings


def test_all_trials_failing_is_one_clear_line() -> None:
    def fit(config: TrainConfig) -> FakeCandidate:
        raise FloatingPointError("loss is NaN at epoch 1\nTraceback (most recent call last):\n  ...")

    with pytest.raises(SearchError, match=r"the search produced no usable model in 3 trials") as info:
        search(base(search_trials=3), fit, Y_VAL, read_score)
    message = str(info.value)
    assert "trial 0 failed: FloatingPointError: loss is NaN at epoch 1" in message
    assert "\n" not in message and len(message) < 700


def test_no_class_column_is_refused_before_any_fit() -> None:
    def fit(config: TrainConfig) -> FakeCandidate:
        raise AssertionError("must not train")

    with pytest.raises(SearchError, match="needs the Class column, which this file lacks; train without --search"):
        search(base(), fit, None, read_score)


def test_validation_without_fraud_is_refused() -> None:
    def fit(config: TrainConfig) -> FakeCandidate:
        raise AssertionError("must not train")

    with pytest.raises(SearchError, match="validation split holds no fraud"):
        search(base(), fit, np.zeros(6, np.int8), read_score)


def test_a_bad_space_is_refused_before_any_fit() -> None:
    def fit(config: TrainConfig) -> FakeCandidate:
        raise AssertionError("must not train")

    with pytest.raises(SearchError, match="depth must be a non-empty list"):
        search(base(search_space={"depth": []}), fit, Y_VAL, read_score)
    with pytest.raises(SearchError, match="at least one seed"):
        search(base(search_seeds=()), fit, Y_VAL, read_score)


def test_design_config_applies_every_dimension() -> None:
    params = {
        "scaling": "zscore",
        "clip": False,
        "bottleneck": 12,
        "depth": 2,
        "activation": "elu",
        "error_weighting": "standardized",
        "pca_start": False,
    }
    config = search_mod.design_config(base(), params)
    assert (config.scaling, config.clip, config.activation, config.error_weighting) == (
        "zscore",
        False,
        "elu",
        "standardized",
    )
    assert config.hidden == (20, 12, 20) and config.output_activation == "linear"
    assert config.describe() == "zscore noclip 29-20-12-20-29 elu error:standardized"
    assert config.pca_components == 0


def test_design_config_with_a_pca_start_uses_the_bottleneck_as_the_linear_path() -> None:
    params = {
        "scaling": "minmax",
        "clip": True,
        "bottleneck": 40,  # capped at F - 1
        "depth": 2,
        "activation": "tanh",
        "error_weighting": "none",
        "pca_start": True,
    }
    config = search_mod.design_config(base(), params)
    assert config.pca_components == 28 and config.hidden == (32, 32)
    assert config.output_activation == "linear"  # a PCA path is not bounded to [0, 1], even for clipped min-max
    assert config.describe() == "minmax clip 29-pca28-29 + correction 32-32 tanh error:none"


def test_a_design_proposed_again_is_not_trained_again() -> None:
    fit = ScoredFit({4: {0: 0.5, 1: 0.5, 2: 0.5}})
    one_design = {**(base().search_space or {}), "bottleneck": [4], "clip": [True], "error_weighting": ["none"]}
    outcome = search(base(search_trials=3, search_space=one_design), fit, Y_VAL, read_score)
    assert [t.state for t in outcome.trials] == ["complete", "repeat", "repeat"]
    assert all(t.reason == "same design as trial 0" for t in outcome.trials[1:])
    assert len(fit.calls) == 3  # one design, trained once per seed


def test_refinement_tries_the_winners_neighbours_and_keeps_a_better_one() -> None:
    # TPE gets one trial in a space of bottlenecks 4, 8, 16; whatever it draws, stepping to the best is refinement.
    fit = ScoredFit(
        {4: dict.fromkeys((0, 1, 2), 0.3), 8: dict.fromkeys((0, 1, 2), 0.5), 16: dict.fromkeys((0, 1, 2), 0.9)}
    )
    space = {**(base().search_space or {}), "clip": [True], "error_weighting": ["none"]}
    outcome = search(base(search_trials=1, search_space=space, search_refine=True), fit, Y_VAL, read_score)
    assert outcome.best.config.hidden == (16,)
    assert outcome.trials[0].phase == "tpe"
    assert all(t.phase.startswith("refine around trial") for t in outcome.trials[1:])
    assert len({t.design for t in outcome.trials}) == len(outcome.trials) == 3  # no design trained twice


def test_no_refinement_when_switched_off() -> None:
    fit = ScoredFit(
        {4: dict.fromkeys((0, 1, 2), 0.3), 8: dict.fromkeys((0, 1, 2), 0.5), 16: dict.fromkeys((0, 1, 2), 0.9)}
    )
    space = {**(base().search_space or {}), "clip": [True], "error_weighting": ["none"]}
    outcome = search(base(search_trials=1, search_space=space, search_refine=False), fit, Y_VAL, read_score)
    assert len(outcome.trials) == 1


def test_neighbours_differ_in_exactly_one_dimension() -> None:
    space = search_mod.SearchSpace()
    params = {
        f: getattr(space, f)[0]
        for f in ("scaling", "clip", "bottleneck", "depth", "activation", "error_weighting", "pca_start")
    }
    found = search_mod.neighbours(params, space)
    assert len(found) == sum(len(getattr(space, f)) - 1 for f in params)
    assert all(sum(n[f] != params[f] for f in params) == 1 for n in found)


def test_a_design_with_a_blind_spot_cannot_win_whatever_its_pr_auc() -> None:
    """Bottleneck 16 ranks validation best but misses the x20 probe: it fails with the reason, 8 wins."""
    table = {4: dict.fromkeys((0, 1, 2), 0.5), 8: dict.fromkeys((0, 1, 2), 0.7), 16: dict.fromkeys((0, 1, 2), 0.9)}

    def fit(config: TrainConfig) -> FakeCandidate:
        bottleneck = config.hidden[len(config.hidden) // 2]
        candidate = FakeCandidate(config, np.full(len(Y_VAL), table[bottleneck][config.seed]))
        if bottleneck == 16:
            candidate.probe_shares = {**NO_BLIND_SPOT, "x20": 0.14}
        return candidate

    outcome = search(base(search_trials=8), fit, Y_VAL, read_score)
    assert outcome.best_trial.params["bottleneck"] == 8
    blind = [t for t in outcome.trials if t.params["bottleneck"] == 16 and t.state == "failed"]
    assert blind and blind[0].reason == "blind spot: x20 flagged 14% (goal 99%)"
    assert outcome.report()["winner"]["probes"] == NO_BLIND_SPOT
