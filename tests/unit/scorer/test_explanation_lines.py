"""`fraudscore score --json`'s explanation: each top feature's value against the training normals' range."""

from __future__ import annotations

from fraudscore import features, schema
from fraudscore.v1 import scorer_pb2 as pb
from scorer.client import explanation_lines


def _tx() -> object:
    v = [0.0] * 28
    v[13] = -9.31  # V14
    return schema.parse_json(
        '{"transactionId": "t-1", "cardId": "c", "merchantId": "m", "eventTime": "2026-11-23T07:00:00Z", '
        f'"amount": 12.5, "v": {v}}}'
    )


def _info(version: int = 3) -> pb.ModelInfo:
    return pb.ModelInfo(
        version=version,
        features=list(features.MODEL_FEATURES),
        normal_ranges=[pb.NormalRange(feature="V14", p01=-2.6, median=0.05, p99=1.9)],
    )


def _response() -> pb.ScoreResponse:
    r = pb.ScoreResponse(transaction_id="t-1", model_version=3)
    r.top_features.add(name="V14", share=0.41)
    r.top_features.add(name="Amount", share=0.05)
    return r


def test_each_top_feature_reads_as_value_against_the_normal_range_and_share_of_the_score() -> None:
    lines = explanation_lines(_response(), _tx(), _info())  # type: ignore[arg-type]
    assert lines == ["  V14 = -9.31 (normals p1..p99 -2.6..1.9), 41% of the score", "  Amount = 12.5, 5% of the score"]


def test_ranges_of_another_version_are_not_shown() -> None:
    lines = explanation_lines(_response(), _tx(), _info(version=4))  # type: ignore[arg-type]
    assert lines == ["  V14: 41% of the score", "  Amount: 5% of the score"]
