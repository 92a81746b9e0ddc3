"""Response building: vectorized top-k equals the contract's top_contributions; batch order; feature_matrix."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fraudscore import features, schema
from fraudscore.model import Scores, top_contributions
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1.transaction_pb2 import Transaction
from scorer.responses import SMALL_BATCH_ROWS, _bulk_outcomes, _small_outcomes, batch_response, fill, outcomes


class Card:
    def __init__(self, names: tuple[str, ...], has_fraud_probability: bool = False) -> None:
        self.features, self.threshold, self.version, self.path = names, 0.5, 3, Path("3")
        self.has_fraud_probability = has_fraud_probability


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


@pytest.mark.parametrize("rows", [1, 2, SMALL_BATCH_ROWS])
def test_occlusion_explanations_are_shares_of_the_score_on_both_paths(rows: int) -> None:
    """With contributions, a top feature's share is its drop over the row's error ("41% of the score"), the
    same on the small and the bulk path; a row where no feature contributes has no top features."""
    rng = np.random.default_rng(rows)
    drops = (rng.random((rows, 29), dtype=np.float32) ** 3).round(2)
    if rows > 1:
        drops[1] = 0.0
    errors = drops.sum(axis=1) * np.float32(0.8) + np.float32(0.5)  # drops overlap or fall short of the error
    scores = dataclasses.replace(_scores(drops), reconstruction_error=errors, contributions=drops)
    model = Card(features.MODEL_FEATURES)
    small = _small_outcomes(model, scores, 3)  # type: ignore[arg-type]
    assert small == _bulk_outcomes(model, scores, 3)  # type: ignore[arg-type]
    top = int(np.argmax(drops[0]))
    assert small[0].top[0] == (model.features[top], pytest.approx(float(drops[0, top]) / float(errors[0])))
    if rows > 1:
        assert small[1].top == []


@pytest.mark.parametrize("rows", [1, 2, SMALL_BATCH_ROWS])
@pytest.mark.parametrize("probability", [False, True])
def test_small_batch_outcomes_equal_the_bulk_ones(rows: int, probability: bool) -> None:
    rng = np.random.default_rng(rows)
    fe = (rng.random((rows, 29), dtype=np.float32) ** 3).round(2)  # rounding makes ties
    fe[0, :4] = 0.5  # a tie at the top
    if rows > 1:
        fe[1] = 0.0  # no contributors
    scores = _scores(fe)
    if probability:
        scores = dataclasses.replace(scores, fraud_probability=rng.random(rows, dtype=np.float32))
    model = Card(features.MODEL_FEATURES)
    small = _small_outcomes(model, scores, 3)  # type: ignore[arg-type]
    assert small == _bulk_outcomes(model, scores, 3)  # type: ignore[arg-type]
    assert [type(v) for v in small[0]] == [type(v) for v in _bulk_outcomes(model, scores, 3)[0]]  # type: ignore[arg-type]


def test_batch_response_keeps_request_order_and_reports_errors() -> None:
    model = Card(("V1", "V2"))
    txs = [Transaction(transaction_id=f"t{i}") for i in range(4)]
    errors = {1: schema.InvalidTransaction("amount", "missing")}
    fe = np.array([[0.1, 0.3], [0.0, 0.0], [0.5, 0.7]], np.float32)
    reply = batch_response(txs, errors, model, _scores(fe))  # type: ignore[arg-type]
    assert (reply.scored, reply.failed) == (3, 1)
    assert [r.WhichOneof("result") for r in reply.results] == ["score", "error", "score", "score"]
    assert [reply.results[i].score.transaction_id for i in (0, 2, 3)] == ["t0", "t2", "t3"]
    assert reply.results[0].score.top_features[0].name == "V2"
    assert reply.results[0].score.top_features[0].share == pytest.approx(0.75)
    assert reply.results[2].score.top_features == []
    assert reply.results[3].score.model_version == 3 and reply.results[3].score.threshold == 0.5
    assert reply.results[3].score.out_of_range_features == 2 and not reply.results[0].score.is_anomaly
    assert reply.results[3].score.is_anomaly
    assert reply.results[1].error == pb.RowError(index=1, transaction_id="t1", field="amount", reason="missing")


def test_batch_response_equals_filling_each_score_from_its_outcome() -> None:
    model = Card(features.MODEL_FEATURES)
    fe = np.random.default_rng(3).random((30, 29), dtype=np.float32) ** 3
    fe[5] = 0.0
    txs = [Transaction(transaction_id=f"t{i}") for i in range(30)]
    reply = batch_response(txs, {}, model, _scores(fe))  # type: ignore[arg-type]
    want = [fill(pb.ScoreResponse(), f"t{i}", model, o) for i, o in enumerate(outcomes(model, _scores(fe)))]  # type: ignore[arg-type]
    assert [r.score for r in reply.results] == want


def test_batch_response_of_an_all_bad_batch() -> None:
    errors = {0: schema.InvalidTransaction("v", "expected 28 values (V1..V28), got 0")}
    reply = batch_response([Transaction(transaction_id="x")], errors, Card(("V1",)), None)  # type: ignore[arg-type]
    assert (reply.scored, reply.failed) == (0, 1)
    assert reply.results[0].error.field == "v" and reply.results[0].error.transaction_id == "x"


def test_feature_matrix_equals_feature_row() -> None:
    rng = np.random.default_rng(1)
    txs = [Transaction(transaction_id=f"t{i}", amount=float(i), v=rng.normal(size=28).tolist()) for i in range(20)]
    names = ("Amount", "V28", "V1", "V14")
    want = np.array([schema.feature_row(tx, names) for tx in txs], np.float32)
    assert np.array_equal(schema.feature_matrix(txs, names), want)
    with pytest.raises(schema.InvalidTransaction) as caught:
        schema.feature_matrix(txs, ("V29",))
    assert caught.value.field == "V29"


def _valid(i: int) -> Transaction:
    tx = Transaction(transaction_id=f"t{i}", card_id="c", amount=float(i), v=[float(i + j) for j in range(28)])
    tx.event_time.FromSeconds(1_700_000_000 + i)
    return tx


def _breakers() -> list[Callable[[Transaction], object]]:
    """One way per validate() rule to break a transaction (and a row breaking two rules at once)."""
    return [
        lambda tx: tx.ClearField("amount"),
        lambda tx: tx.v.append(1.0),
        lambda tx: tx.v.__delitem__(5),
        lambda tx: tx.ClearField("v"),
        lambda tx: tx.v.__setitem__(4, float("nan")),
        lambda tx: tx.v.__setitem__(27, float("-inf")),
        lambda tx: setattr(tx, "amount", -1.0),
        lambda tx: setattr(tx, "amount", float("inf")),
        lambda tx: setattr(tx, "amount", float("nan")),
        lambda tx: setattr(tx, "transaction_id", ""),
        lambda tx: setattr(tx, "card_id", ""),
        lambda tx: tx.ClearField("event_time"),
        _nan_v1_and_negative_amount,
    ]


def _nan_v1_and_negative_amount(tx: Transaction) -> None:
    tx.v[0] = float("nan")
    tx.amount = -3.0


def test_checked_feature_matrix_equals_validate_then_feature_matrix() -> None:
    txs = [_valid(i) for i in range(40)]
    for n, breaker in enumerate(_breakers()):
        breaker(txs[3 * n + 1])
    names = ("Amount", "V28", "V1", "V14")
    rows, errors = schema.checked_feature_matrix(txs, names)
    want_errors = {}
    for i, tx in enumerate(txs):
        try:
            schema.validate(tx)
        except schema.InvalidTransaction as exc:
            want_errors[i] = (exc.field, exc.reason)
    assert {i: (e.field, e.reason) for i, e in errors.items()} == want_errors
    assert len(want_errors) == len(_breakers())
    good = [tx for i, tx in enumerate(txs) if i not in want_errors]
    assert np.array_equal(rows, schema.feature_matrix(good, names))
    assert rows.dtype == np.float32


def test_checked_feature_matrix_of_all_good_and_all_bad_rows() -> None:
    txs = [_valid(i) for i in range(5)]
    rows, errors = schema.checked_feature_matrix(txs, features.MODEL_FEATURES)
    assert errors == {} and np.array_equal(rows, schema.feature_matrix(txs, features.MODEL_FEATURES))
    rows, errors = schema.checked_feature_matrix([Transaction(), Transaction(transaction_id="a")], ("V1",))
    assert rows.shape == (0, 1)
    assert [(e.field, e.reason) for e in errors.values()] == [
        ("transaction_id", "missing or empty"),
        ("card_id", "missing or empty"),
    ]


def test_fraud_probability_is_set_when_the_model_has_one_and_absent_otherwise() -> None:
    model = Card(("V1", "V2"), has_fraud_probability=True)
    txs = [Transaction(transaction_id=f"t{i}") for i in range(3)]
    fe = np.array([[0.1, 0.3], [0.0, 0.0], [0.5, 0.7]], np.float32)
    probability = np.array([0.0, 0.125, 0.875], np.float32)
    plain = _scores(fe)
    staged = Scores(plain.reconstruction_error, fe, probability > 0.5, plain.out_of_range_count, probability)
    reply = batch_response(txs, {}, model, staged)  # type: ignore[arg-type]
    assert [r.score.fraud_probability for r in reply.results] == [0.0, 0.125, 0.875]
    assert all(r.score.HasField("fraud_probability") for r in reply.results)  # 0.0 too: present, not default
    filled = [fill(pb.ScoreResponse(), f"t{i}", model, o) for i, o in enumerate(outcomes(model, staged))]  # type: ignore[arg-type]
    assert filled == [r.score for r in reply.results]

    reply = batch_response(txs, {}, model, plain)  # type: ignore[arg-type]
    assert not any(r.score.HasField("fraud_probability") for r in reply.results)
    assert all(o.fraud_probability is None for o in outcomes(model, plain))  # type: ignore[arg-type]
