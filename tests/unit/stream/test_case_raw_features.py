"""Cases keep the raw transaction and both scores (issue 13): built from the scored transaction, carried in
the case JSON (Bigtable record and alert), and old records without them still read."""

from __future__ import annotations

import dataclasses
import json
import pickle

from cases.records import Case
from stream.records import ScoredTransaction, float32_bytes
from stream.rules import TX_ANOMALY, RuleConfig, transaction_cases, window_cases
from stream.windows import summarize

NAMES = ("V1", "V2", "Amount")


def scored(tx: str, *, anomaly: bool, probability: float | None = 0.75) -> ScoredTransaction:
    return ScoredTransaction(
        tx, "card-1", "m-1", 1_700_000_000.0, 12.5, 0.9 if anomaly else 0.1, anomaly, (("V1", 0.6),), 0, "m", 3, 0.5,
        raw=float32_bytes((1.5, -2.25, 12.5)), feature_names=NAMES, fraud_probability=probability,
    )  # fmt: skip


def test_transaction_case_carries_raw_features_and_both_scores() -> None:
    (case,) = transaction_cases(scored("t1", anomaly=True))
    assert case.raw_features == (1.5, -2.25, 12.5) and case.feature_names == NAMES
    assert case.reconstruction_error == 0.9 and case.fraud_probability == 0.75
    data = json.loads(case.to_alert())
    assert dict(zip(data["feature_names"], data["raw_features"], strict=True)) == {
        "V1": 1.5,
        "V2": -2.25,
        "Amount": 12.5,
    }
    assert data["fraud_probability"] == 0.75 and data["reconstruction_error"] == 0.9
    assert Case.from_json_dict(data) == case


def test_card_rule_cases_carry_raw_features() -> None:
    members = [scored(f"t{i}", anomaly=False, probability=None) for i in range(6)]
    cases = list(window_cases(summarize("card-1", 0.0, 600.0, members), RuleConfig(velocity_min_count=6)))
    assert len(cases) == 6 and all(c.raw_features == (1.5, -2.25, 12.5) for c in cases)
    assert all(c.fraud_probability is None for c in cases)
    assert json.loads(cases[0].to_alert())["fraud_probability"] is None


def test_record_written_before_raw_features_existed_still_reads() -> None:
    (case,) = transaction_cases(scored("t1", anomaly=True))
    old = case.to_json_dict()
    del old["raw_features"], old["feature_names"], old["fraud_probability"]
    back = Case.from_json_dict(old)
    assert back.raw_features == () and back.feature_names == () and back.fraud_probability is None
    assert not back.has_raw_features and case.has_raw_features
    assert back.reasons == (TX_ANOMALY,)


def test_feature_names_pickled_once_per_state_value() -> None:
    """The card state pickles many transactions in one value: the shared names tuple costs one copy."""
    many = [scored(f"t{i}", anomaly=False) for i in range(100)]
    with_names = len(pickle.dumps([(s.raw, s.feature_names) for s in many]))
    without = len(pickle.dumps([(s.raw, ()) for s in many]))
    assert with_names - without < 100 * 8  # far less than a copy of the names per transaction


def test_cases_get_shows_both_scores_and_the_raw_features() -> None:
    from cases.cli import format_case
    from cases.records import StoredCase

    (case,) = transaction_cases(scored("t1", anomaly=True))
    shown = format_case(StoredCase(case, "key"))
    assert "fraud prob.   0.7500" in shown and "raw features  3 kept" in shown
    old = Case.from_json_dict(
        {**case.to_json_dict(), "raw_features": [], "feature_names": [], "fraud_probability": None}
    )
    shown = format_case(StoredCase(old, "key"))
    assert "fraud prob.   - (no second stage)" in shown and "raw features  none" in shown


def test_a_case_says_when_lying_beyond_the_normals_range_flagged_it() -> None:
    """An error below the threshold is flagged by the envelope rule: the case, the alert, `cases get` and the
    console's case page say so, and older records without the envelope read as before."""
    from cases.cli import format_case
    from cases.records import StoredCase
    from console.views import member_row

    beyond = dataclasses.replace(
        scored("t1", anomaly=True), reconstruction_error=0.1, envelope_distance=3.25, envelope_limit=1.3
    )
    (case,) = transaction_cases(beyond)
    assert case.beyond_envelope and Case.from_json_dict(json.loads(case.to_alert())) == case
    assert "3.25 widths beyond the training normals' range (limit 1.3): flagged whatever its score" in format_case(
        StoredCase(case, "key")
    )
    assert member_row(StoredCase(case, "key"), []).beyond == case.envelope_text

    (inside,) = transaction_cases(dataclasses.replace(beyond, reconstruction_error=0.9, envelope_distance=0.0))
    assert not inside.beyond_envelope and inside.envelope_text == "inside the training normals' range"
    assert member_row(StoredCase(inside, "key"), []).beyond == ""

    old = case.to_json_dict()
    del old["envelope_distance"], old["envelope_limit"]
    back = Case.from_json_dict(old)
    assert (
        not back.beyond_envelope and back.envelope_text == "" and "envelope" not in format_case(StoredCase(back, "key"))
    )
