"""Response building: vectorized top-k equals the contract's top_contributions; batch order; feature_matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fraudscore import features, schema
from fraudscore.model import Scores, top_contributions
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1.transaction_pb2 import Transaction
from scorer.responses import batch_response, outcomes


class Card:
    def __init__(self, names: tuple[str, ...]) -> None:
        self.features, self.threshold, self.version, self.path = names, 0.5, 3, Path("3")


def _scores(feature_errors: np.ndarray) -> Scores:
    errors = feature_errors.mean(axis=1)
    return Scores(errors, feature_errors, errors > 0.5, np.arange(len(errors), dtype=np.int32))


def test_outcomes_match_top_contributions_row_by_row() -> None:
    rng = np.random.default_rng(7)
    fe = rng.random((50, 29), dtype=np.float32) ** 3
    fe[3] = 0.0  # a perfect reconstruction has no contributors
    fe[4, :5] = 0.25  # ties
    model = Card(features.MODEL_FEATURES)
    got = outcomes(model, _scores(fe))  # type: ignore[arg-type]
    for i, outcome in enumerate(got):
        want = top_contributions(fe[i], model.features, 3)
        assert [name for name, _ in outcome.top] == [name for name, _ in want]
        assert [share for _, share in outcome.top] == pytest.approx([share for _, share in want], rel=1e-6)
        assert outcome.reconstruction_error == pytest.approx(float(fe[i].mean()))
        assert outcome.out_of_range == i
    assert got[3].top == []


def test_batch_response_keeps_request_order_and_reports_errors() -> None:
    model = Card(("V1", "V2"))
    txs = [Transaction(transaction_id=f"t{i}") for i in range(4)]
    errors = {1: pb.RowError(index=1, transaction_id="t1", field="amount", reason="missing")}
    fe = np.array([[0.1, 0.3], [0.0, 0.0], [0.5, 0.5]], np.float32)
    reply = batch_response(txs, errors, model, outcomes(model, _scores(fe)))  # type: ignore[arg-type]
    assert (reply.scored, reply.failed) == (3, 1)
    assert [r.WhichOneof("result") for r in reply.results] == ["score", "error", "score", "score"]
    assert [reply.results[i].score.transaction_id for i in (0, 2, 3)] == ["t0", "t2", "t3"]
    assert reply.results[0].score.top_features[0].name == "V2"
    assert reply.results[0].score.top_features[0].share == pytest.approx(0.75)
    assert reply.results[2].score.top_features == []
    assert reply.results[3].score.model_version == 3 and reply.results[3].score.threshold == 0.5
    assert reply.results[1].error.field == "amount"


def test_feature_matrix_equals_feature_row() -> None:
    rng = np.random.default_rng(1)
    txs = [Transaction(transaction_id=f"t{i}", amount=float(i), v=rng.normal(size=28).tolist()) for i in range(20)]
    names = ("Amount", "V28", "V1", "V14")
    want = np.array([schema.feature_row(tx, names) for tx in txs], np.float32)
    assert np.array_equal(schema.feature_matrix(txs, names), want)
    with pytest.raises(schema.InvalidTransaction) as caught:
        schema.feature_matrix(txs, ("V29",))
    assert caught.value.field == "V29"
