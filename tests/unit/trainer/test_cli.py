"""``fraudscore train`` flags become one TrainConfig; the quality gate's rule."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from trainer.cli import add_arguments, config_from_args
from trainer.config import QualityGateError, ThresholdPolicy, TrainConfig, TrainError
from trainer.pipeline import check_quality


def parse(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(["--data", "x.csv", *argv]))


def test_defaults() -> None:
    config = parse()
    assert config.model_base == Path("models") / "creditcard"
    assert config.threshold_policy == ThresholdPolicy("auto")
    assert config.beam_args == () and config.min_pr_auc is None
    assert config == TrainConfig(data=Path("x.csv"), verbose=True)


def test_flags() -> None:
    config = parse(
        "--out", "m", "--name", "fraud", "--hidden", "16,8,16", "--threshold-policy", "precision:0.9",
        "--amount-scale", "log", "--beam-runner", "DataflowRunner", "--beam-args", "--project=p --region='eu w1'",
        "--min-pr-auc", "0.5", "--quiet",
    )  # fmt: skip
    assert config.model_base == Path("m") / "fraud" and config.name == "fraud"
    assert config.hidden == (16, 8, 16)
    assert config.threshold_policy == ThresholdPolicy("precision", 0.9)
    assert config.log_features == ("Amount",)
    assert config.beam_args == ("--runner=DataflowRunner", "--project=p", "--region=eu w1")
    assert config.min_pr_auc == 0.5 and not config.verbose
    assert parse("--amount-scale", "linear").log_features == ()
    assert parse("--out", "m", "--model-base", "elsewhere/x").model_base == Path("elsewhere/x")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hidden", "20,x"], "comma-separated integers"),
        (["--hidden", "0"], "positive layer sizes"),
        (["--epochs", "0"], "must be positive"),
        (["--max-bad-fraction", "2"], "must be in"),
        (["--min-pr-auc", "1.5"], "--min-pr-auc"),
        (["--threshold-policy", "top:5"], "threshold policy"),
    ],
)
def test_bad_flags_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(TrainError, match=message):
        parse(*argv)


def test_quality_gate() -> None:
    check_quality({"pr_auc": 0.8}, None)
    check_quality({"pr_auc": 0.8}, 0.8)
    with pytest.raises(QualityGateError, match=r"test PR-AUC 0.7999 is below the required 0.8"):
        check_quality({"pr_auc": 0.7999}, 0.8)
    with pytest.raises(QualityGateError, match="needs labels"):
        check_quality({}, 0.1)


def test_design_and_search_flags() -> None:
    config = parse(
        "--scaling", "zscore", "--no-clip", "--error-weighting", "standardized", "--activation", "elu",
        "--search", "--search-trials", "5", "--search-seeds", " 3, 1 ,4 ", "--search-space", '{"depth": [1, 2]}',
    )  # fmt: skip
    assert (config.scaling, config.clip, config.error_weighting, config.activation) == (
        "zscore",
        False,
        "standardized",
        "elu",
    )
    assert config.search and config.search_trials == 5 and config.search_seeds == (3, 1, 4)
    assert config.search_space == {"depth": [1, 2]}
    assert parse("--clip").clip is True
    defaults = parse()
    assert not defaults.search and defaults.search_space is None
    assert defaults.search_seeds == TrainConfig(data=Path("x")).search_seeds


def test_search_space_from_a_file(tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text('{"bottleneck": [16, 24], "clip": [false]}\n')
    assert parse("--search-space", f"@{space}").search_space == {"bottleneck": [16, 24], "clip": [False]}
    with pytest.raises(TrainError, match=rf"--search-space {tmp_path}/absent.json: cannot read: No such file"):
        parse("--search-space", f"@{tmp_path}/absent.json")
    space.write_text("bottleneck: [16]\n")
    with pytest.raises(TrainError, match=rf"^{space}: not valid JSON: "):
        parse("--search-space", f"@{space}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--search-seeds", "0,x"], r"--search-seeds '0,x': expected comma-separated integers, e.g. 0,1"),
        (["--search-seeds", "0.5"], r"--search-seeds '0.5': expected comma-separated integers"),
        (["--search-seeds", ","], r"--search-seeds: at least one seed is needed"),
        (["--search-seeds", ""], r"--search-seeds: at least one seed is needed"),
        (["--search-trials", "0"], r"--search-trials 0: must be positive"),
        (["--search-trials", "-3"], r"--search-trials -3: must be positive"),
        (["--search-space", '{"depth": [1]'], r"^--search-space: not valid JSON: "),
        (["--search-space", "[1, 2]"], r"^--search-space: expected a JSON object of dimension -> list of choices"),
    ],
)
def test_bad_search_flags_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(TrainError, match=message) as info:
        parse(*argv)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "argv", [["--scaling", "robust"], ["--error-weighting", "mahalanobis"], ["--activation", "gelu"]]
)
def test_unknown_design_choices_are_argparse_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_label_flags() -> None:
    config = parse("--labels", "l.csv", "--threshold-score", "fraud_probability")
    assert config.labels_file == Path("l.csv") and not config.labels_from_cases
    assert config.threshold_score == "fraud_probability"
    cases = parse(
        "--labels-from-cases", "--labels-since", "2026-05-01", "--cases-project", "p", "--cases-instance", "i"
    )
    assert cases.labels_from_cases and cases.labels_file is None
    assert cases.labels_since is not None and cases.labels_since.isoformat() == "2026-05-01T00:00:00+00:00"
    assert (cases.cases_project, cases.cases_instance) == ("p", "i")
    assert parse().threshold_score == "reconstruction_error" and not parse().has_labels_source
    assert parse("--labels", "l.csv").second_stage_family is None  # auto: chosen by time-ordered CV
    assert parse("--labels", "l.csv", "--second-stage", "gbdt").second_stage_family == "gbdt"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--labels-since", "7d"], "--labels-since selects labelled cases: it needs --labels-from-cases"),
        (["--labels-from-cases", "--labels-since", "soon"], "--labels-since 'soon': expected a duration"),
        (["--threshold-score", "fraud_probability"], "needs a second stage: give --labels FILE or --labels-from-cases"),
    ],
)
def test_bad_label_flags_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(TrainError, match=message):
        parse(*argv)


def test_the_two_label_sources_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--labels", "l.csv", "--labels-from-cases")
    assert "not allowed with argument" in capsys.readouterr().err


def test_envelope_budget_takes_zero_and_refuses_what_is_no_percentage(capsys: pytest.CaptureFixture[str]) -> None:
    """0 is a budget (the rule flags no validation normal); a negative one or 100 is an argparse error naming
    the flag."""
    assert parse("--envelope-budget", "0").envelope_budget == 0.0
    assert parse("--envelope-budget", "0.05").envelope_budget == 0.05
    for bad in ("-1", "100", "x"):
        with pytest.raises(SystemExit):
            parse("--envelope-budget", bad)
        assert "--envelope-budget" in capsys.readouterr().err
