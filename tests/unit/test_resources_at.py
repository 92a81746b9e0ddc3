"""Resources.at: the CLIs' --project/--instance overrides over the environment's resource names."""

from __future__ import annotations

from fraudscore.config import Resources


def test_overrides_replace_project_and_instance_only_where_given() -> None:
    base = Resources.from_env({"FRAUDSCORE_PROJECT": "env-p", "FRAUDSCORE_BIGTABLE_INSTANCE": "env-i"})
    assert (base.project, base.bigtable_instance) == ("env-p", "env-i")
    moved = base.at("flag-p", "flag-i")
    assert (moved.project, moved.bigtable_instance) == ("flag-p", "flag-i")
    assert moved.cases_table == base.cases_table and moved.sample_table == base.sample_table
    assert moved.topic_path("t") == "projects/flag-p/topics/t"
    assert moved.bigtable_location == "flag-p/flag-i"
    assert base.at(None, "") == base  # absent or empty flags keep the environment's
    assert base.at(None, "flag-i") == Resources.from_env(
        {"FRAUDSCORE_PROJECT": "env-p", "FRAUDSCORE_BIGTABLE_INSTANCE": "flag-i"}
    )
