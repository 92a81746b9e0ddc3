"""The episode rules (cases.episodes): ids, score bands, joining, escalation, snooze; and the alert JSON."""

from __future__ import annotations

import json

import pytest

from cases.episode_rows import Episode, Member
from cases.episodes import (
    EpisodeConfig,
    case_id_for,
    components,
    escalation,
    is_case_id,
    joins,
    score_band,
    snoozed,
)


def test_case_ids_are_deterministic_and_distinct() -> None:
    assert case_id_for("card-1", "tx-1") == case_id_for("card-1", "tx-1")
    assert case_id_for("card-1", "tx-1") != case_id_for("card-2", "tx-1") != case_id_for("card-1", "tx-2")
    assert is_case_id(case_id_for("c", "t")) and not is_case_id("tx-0001") and not is_case_id("case-xyz")


@pytest.mark.parametrize(
    ("error", "band"),
    [(0.5, 0), (1.0, 1), (1.99, 1), (2.0, 2), (3.9, 2), (4.0, 3), (8.0, 4), (1e9, 4), (float("inf"), 4)],
)
def test_score_bands_double(error: float, band: int) -> None:
    assert score_band(error, 1.0) == band


def test_escalation_is_a_new_reason_or_a_higher_band_only() -> None:
    opened = components(["TX_ANOMALY"], 2)
    assert escalation(["TX_ANOMALY"], 2, set()) == opened  # the opening alert
    assert escalation(["TX_ANOMALY"], 2, opened) == set()  # one more member like it: no alert
    assert escalation(["TX_ANOMALY"], 1, opened) == set()  # a lower band never escalates
    assert escalation(["TX_ANOMALY", "CARD_VELOCITY"], 2, opened) == {"reason-CARD_VELOCITY"}
    assert escalation(["TX_ANOMALY"], 3, opened) == {"band-3"}


def test_a_case_joins_while_not_idle_in_event_time() -> None:
    cfg = EpisodeConfig(idle_s=600)
    opened, last = 1_000_000, 1_300_000
    assert joins(last, last + 600_000, opened, cfg)
    assert not joins(last, last + 600_001, opened, cfg)
    assert joins(last, opened - 600_000, opened, cfg)  # late data of the same activity
    assert not joins(last, opened - 600_001, opened, cfg)


def test_snooze_follows_a_legit_close_for_its_duration() -> None:
    cfg = EpisodeConfig(snooze_s=3600)
    assert snoozed(1_000, 1_000 + 3_599_999, cfg) and not snoozed(1_000, 1_000 + 3_600_000, cfg)
    assert not snoozed(None, 2_000, cfg) and not snoozed(1_000, 2_000, EpisodeConfig(snooze_s=0))
    with pytest.raises(ValueError, match="--case-idle must be positive"):
        EpisodeConfig(idle_s=0)


def test_an_episode_summarises_its_members() -> None:
    e = Episode("case-0123456789abcdef", "card", 1_000, "key")
    for m in (
        Member("a", 1_000, 1.5, 1.0, ("TX_ANOMALY",), 10.0),
        Member("b", 5_000, 0.4, 1.0, ("CARD_VELOCITY",), 2.5),
    ):
        e.members[m.transaction_id] = m
    assert e.reasons == ("TX_ANOMALY", "CARD_VELOCITY") and e.band == 1 and e.total_amount == 12.5
    assert e.last_activity_ms == 5_000 and e.status == "open" and e.max_score is not None
    assert e.max_score.transaction_id == "a"
    assert e.pointer() == b"0123456789abcdef@1000"
    assert Member.parse(e.members["b"].column(), e.members["b"].value()) == e.members["b"]


def test_the_alert_names_the_case_what_escalated_and_the_member_behind_it() -> None:
    from datetime import UTC, datetime

    from cases.records import Case
    from stream.sinks import episode_alert

    e = Episode("case-0123456789abcdef", "card-9", 1_000, "key")
    e.members["a"] = Member("a", 1_000, 3.0, 1.0, ("TX_ANOMALY",), 10.0)
    trigger = Case("a", "card-9", "m", datetime(2026, 1, 1, tzinfo=UTC), 10.0, 3.0, 1.0, 7, ("TX_ANOMALY",),
                   top_features=(("V14", 0.7),))  # fmt: skip
    data, attributes = episode_alert(e, {"reason-TX_ANOMALY", "band-2"}, trigger)
    alert = json.loads(data)
    assert alert["kind"] == "opened" and alert["escalation"] == ["band-2", "reason-TX_ANOMALY"]
    assert alert["case_id"] == attributes["case_id"] == e.case_id and alert["members"] == 1
    assert alert["model_version"] == 7 and alert["top_features"] == [{"name": "V14", "share": 0.7}]
    assert alert["transaction"]["transaction_id"] == "a" and alert["threshold"] == 1.0
    e.alerted = {"reason-TX_ANOMALY", "band-2"}
    assert json.loads(episode_alert(e, {"band-3"}, trigger)[0])["kind"] == "escalated"
