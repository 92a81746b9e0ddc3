"""The flag rules table (stream/rules.py): the checks, the CLI flags and the README are built from it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from stream.pipeline import add_app_arguments, config_from_args
from stream.rules import CARD_RULES, REASONS, TX_ANOMALY, RuleConfig, markdown_table, window_reasons
from stream.windows import summarize

README = Path(__file__).resolve().parents[3] / "README.md"


def test_every_card_rule_has_its_config_field_and_a_distinct_reason() -> None:
    fields = {f.name for f in dataclasses.fields(RuleConfig)}
    assert all(rule.config_field in fields for rule in CARD_RULES)
    assert len(set(REASONS)) == len(REASONS) and REASONS[0] == TX_ANOMALY


def test_readme_rules_table_is_the_tables() -> None:
    assert markdown_table() in README.read_text(encoding="utf-8"), "README out of date: python -m stream.rules"


def test_each_card_rule_is_a_stream_flag_into_rule_config() -> None:
    parser = argparse.ArgumentParser()
    add_app_arguments(parser)
    argv = ["--model-base", "m"]
    for i, rule in enumerate(CARD_RULES):
        argv += [rule.flag, str(10 + i)]
    rules = config_from_args(parser.parse_args(argv)).rules
    assert [rules.threshold(rule) for rule in CARD_RULES] == [10 + i for i in range(len(CARD_RULES))]
    defaults = config_from_args(parser.parse_args(["--model-base", "m"])).rules
    assert defaults == RuleConfig()


@pytest.mark.parametrize("count", range(0, 9))
@pytest.mark.parametrize("anomalies", range(0, 4))
def test_flags_window_is_window_reasons(count: int, anomalies: int) -> None:
    from stream.records import ScoredTransaction

    members = [
        ScoredTransaction(f"t{i}", "c", "m", 100.0 + i, 1.0, 0.1, i < anomalies, (), 0, "m", 1, 0.5)
        for i in range(max(count, anomalies))
    ]
    w = summarize("c", 0.0, 600.0, members)
    rules = RuleConfig(burst_min_anomalies=2, velocity_min_count=6)
    assert rules.flags_window(w.count, w.anomalies) == bool(window_reasons(w, rules))


def test_thresholds_below_one_are_refused() -> None:
    for rule in CARD_RULES:
        with pytest.raises(ValueError, match="thresholds"):
            RuleConfig(**{rule.config_field: 0})
