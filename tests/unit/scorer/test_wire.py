"""The bulk encoder builds exactly the reply the plain-Python batch_response builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fraudscore import features, schema
from fraudscore.model import Scores
from fraudscore.v1.transaction_pb2 import Transaction
from scorer.responses import batch_response
from scorer.wire import ReplyEncoder


class Card:
    def __init__(self, names: tuple[str, ...]) -> None:
        self.features, self.threshold, self.version, self.path = names, 0.73, 12, Path("12")


@pytest.fixture(scope="module")
def encoder() -> ReplyEncoder:
    return ReplyEncoder()


def _scores(n: int, width: int, seed: int) -> Scores:
    fe = np.random.default_rng(seed).random((n, width), dtype=np.float32) ** 3
    if n > 2:
        fe[1] = 0.0  # no contributors
        fe[2, : min(width, 4)] = 0.25  # ties
    errors = fe.mean(axis=1)
    return Scores(errors, fe, errors > 0.1, (np.arange(n) % 3).astype(np.int32))


@pytest.mark.parametrize(
    ("n", "bad", "names"),
    [
        (40, {}, features.MODEL_FEATURES),
        (
            40,
            {0: ("amount", "missing"), 7: ("v[3] (V4)", "not a finite number: nan"), 39: ("card_id", "x")},
            ("V1", "V2"),
        ),
        (3, {0: ("v", "a"), 1: ("v", "b"), 2: ("transaction_id", "missing or empty")}, ("V1",)),
        (1, {}, ("Amount",)),
    ],
)
def test_encoder_equals_batch_response(
    encoder: ReplyEncoder, n: int, bad: dict[int, tuple[str, str]], names: tuple[str, ...]
) -> None:
    model = Card(names)
    txs = [Transaction(transaction_id=f"tx-{i}-é") for i in range(n)]
    errors = {i: schema.InvalidTransaction(field, reason) for i, (field, reason) in bad.items()}
    good = n - len(errors)
    scores = _scores(good, len(names), seed=n) if good else None
    want = batch_response(txs, errors, model, scores)  # type: ignore[arg-type]
    got = encoder.batch_response(txs, errors, model, scores)  # type: ignore[arg-type]
    assert got == want
    assert len(got.results) == n and (got.scored, got.failed) == (good, len(errors))


def test_encoder_carries_fraud_probability_like_batch_response(encoder: ReplyEncoder) -> None:
    model = Card(features.MODEL_FEATURES)
    txs = [Transaction(transaction_id=f"tx-{i}") for i in range(6)]
    errors = {3: schema.InvalidTransaction("amount", "missing")}
    plain = _scores(5, len(model.features), seed=1)
    probability = np.array([0.0, 0.5, 1.0, 0.125, 1e-9], np.float32)  # 0.0 must still be present
    staged = Scores(
        plain.reconstruction_error, plain.feature_errors, probability > 0.2, plain.out_of_range_count, probability
    )
    got = encoder.batch_response(txs, errors, model, staged)  # type: ignore[arg-type]
    assert got == batch_response(txs, errors, model, staged)  # type: ignore[arg-type]
    scored = [r.score for r in got.results if r.HasField("score")]
    assert all(r.HasField("fraud_probability") for r in scored)
    assert [r.fraud_probability for r in scored] == probability.astype(np.float64).tolist()
