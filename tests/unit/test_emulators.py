"""The parts of fraudscore.dev.emulators that need no running emulator (the rest: tests/integration)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from google.cloud.bigtable import column_family as cf

from fraudscore.config import ColumnFamily, EmulatorConfig, Resources
from fraudscore.dev.emulators import (
    BIGTABLE_ENV,
    PUBSUB_ENV,
    EmulatorError,
    EmulatorNotFound,
    Emulators,
    EmulatorStartError,
    restore_env,
    with_suffix,
)
from fraudscore.resources import describe_resources, gc_rule

# Bigtable table ids: [_a-zA-Z0-9][-_.a-zA-Z0-9]*, at most 50 characters.
TABLE_ID = re.compile(r"[_a-zA-Z0-9][-_.a-zA-Z0-9]{0,49}")
# Pub/Sub ids: start with a letter, 3-255 of letters, digits and -_.~+%.
PUBSUB_ID = re.compile(r"[A-Za-z][-A-Za-z0-9_.~+%]{2,254}")


def test_gc_rule_keeps_versions() -> None:
    assert gc_rule(ColumnFamily("case", max_versions=1)) == cf.MaxVersionsGCRule(1)


def test_gc_rule_with_age_is_a_union_of_both_limits() -> None:
    rule = gc_rule(ColumnFamily("decision", max_versions=5, max_age_days=90))
    assert rule == cf.GCRuleUnion([cf.MaxVersionsGCRule(5), cf.MaxAgeGCRule(timedelta(days=90))])
    # The protobuf form the admin API receives.
    pb = rule.to_pb()
    assert pb.union.rules[0].max_num_versions == 5
    assert pb.union.rules[1].max_age == timedelta(days=90)


def test_with_suffix_renames_every_topic_subscription_and_table() -> None:
    base = Resources()
    fresh = with_suffix(base, "abc123")
    assert fresh.project == base.project and fresh.bigtable_instance == base.bigtable_instance
    old_names = {*base.topic_subscriptions.items(), *base.tables}
    new_names = {*fresh.topic_subscriptions.items(), *fresh.tables}
    assert len(new_names) == len(old_names) and not new_names & old_names
    for topic, sub in fresh.topic_subscriptions.items():
        assert topic.endswith("-abc123") and sub.endswith("-abc123")
        assert PUBSUB_ID.fullmatch(topic) and PUBSUB_ID.fullmatch(sub)
    for table, families in fresh.tables.items():
        assert table.endswith("-abc123") and TABLE_ID.fullmatch(table)
        assert families == base.tables[table.removesuffix("-abc123")]


def test_describe_resources_names_everything() -> None:
    resources = Resources(project="fraud-x")
    text = "\n".join(describe_resources(resources))
    for topic, sub in resources.topic_subscriptions.items():
        assert topic in text and sub in text
    for table in resources.tables:
        assert f"{resources.bigtable_instance}/{table}:" in text
    assert "decision (max 5 versions)" in text


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0, bin_dir=tmp_path))
    with pytest.raises(EmulatorNotFound, match="run `make setup`") as err:
        emulators.start()
    assert str(tmp_path / "pstest") in str(err.value) and str(tmp_path / "bttest") in str(err.value)
    assert emulators.pids == []  # nothing was started


def test_unknown_backend() -> None:
    with pytest.raises(EmulatorError, match="unknown backend 'docker'"):
        Emulators(backend="docker").start()  # type: ignore[arg-type]


def test_addresses_before_start_are_an_error() -> None:
    with pytest.raises(EmulatorError, match="not running"):
        _ = Emulators().env


def test_start_error_carries_the_output() -> None:
    err = EmulatorStartError("pubsub", "exited with code 1", "[stderr]\nlisten: address already in use")
    assert str(err).startswith("pubsub emulator exited with code 1\n")
    assert "address already in use" in str(err) and err.name == "pubsub"


def test_restore_env_puts_back_values_and_absences() -> None:
    environ = {PUBSUB_ENV: "127.0.0.1:1", BIGTABLE_ENV: "127.0.0.1:2", "OTHER": "x"}
    restore_env({PUBSUB_ENV: "old:1", BIGTABLE_ENV: None}, environ)
    assert environ == {PUBSUB_ENV: "old:1", "OTHER": "x"}
