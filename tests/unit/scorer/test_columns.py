"""ScoreColumns helpers: request checks, the value rules, and a reply that reads back as ScoreBatch's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudscore import features, schema
from fraudscore.model import Scores, top_k
from fraudscore.v1 import scorer_pb2 as pb
from scorer import columns
from scorer.responses import outcomes

NAMES = features.MODEL_FEATURES


class Card:
    def __init__(self, names: tuple[str, ...], has_fraud_probability: bool = False) -> None:
        self.features, self.threshold, self.version, self.path = names, 0.73, 12, Path("12")
        self.has_fraud_probability = has_fraud_probability


def _matrix(n: int, seed: int = 0) -> np.ndarray:
    m = np.random.default_rng(seed).normal(0, 1, (n, len(NAMES))).astype(np.float32)
    m[:, NAMES.index("Amount")] = np.abs(m[:, NAMES.index("Amount")]) * 100
    return m


def _request(matrix: np.ndarray, names: tuple[str, ...] = NAMES) -> pb.ScoreColumnsRequest:
    return columns.request_of([f"t-{i}" for i in range(len(matrix))], names, matrix)


def test_invalid_feature_rows_names_the_first_bad_feature() -> None:
    m = _matrix(5)
    m[1, 4] = np.nan
    m[1, 9] = np.inf  # the first bad feature of the row is the one reported
    m[2, 0] = -np.inf
    m[3, NAMES.index("Amount")] = -1.5
    errors = schema.invalid_feature_rows(m, NAMES)
    assert {i: (e.field, e.reason) for i, e in errors.items()} == {
        1: ("V5", "not a finite number: nan"),
        2: ("V1", "not a finite number: -inf"),
        3: ("Amount", "negative amount -1.5"),
    }


def test_decode_reorders_columns_and_splits_bad_rows() -> None:
    m = _matrix(4)
    perm = np.random.default_rng(1).permutation(len(NAMES))
    names = tuple(NAMES[j] for j in perm)
    m[2, 0] = np.nan
    batch = columns.decode(_request(m[:, perm], names), Card(NAMES))  # type: ignore[arg-type]
    assert batch.good.tolist() == [0, 1, 3]
    np.testing.assert_array_equal(batch.rows, m[[0, 1, 3]])
    assert batch.errors[2].field == "V1"


@pytest.mark.parametrize("perm_seed", [None, 3])  # the model's column order (no reorder) and a shuffled one
def test_decode_errors_are_invalid_feature_rows_at_every_bound(perm_seed: int | None) -> None:
    m = _matrix(8)
    amount = NAMES.index("Amount")
    m[0, 3] = features.MAX_ABS_V  # at the bounds: valid
    m[1, amount] = features.MAX_AMOUNT
    m[2, amount] = -0.0
    m[3, 5] = np.nextafter(np.float32(features.MAX_ABS_V), np.float32(np.inf))  # just beyond: invalid
    m[4, amount] = np.nextafter(np.float32(features.MAX_AMOUNT), np.float32(np.inf))
    m[5, amount] = -np.float32(1e-30)
    m[6, 7] = np.nan
    perm = np.arange(len(NAMES)) if perm_seed is None else np.random.default_rng(perm_seed).permutation(len(NAMES))
    batch = columns.decode(_request(m[:, perm], tuple(NAMES[j] for j in perm)), Card(NAMES))  # type: ignore[arg-type]
    want = schema.invalid_feature_rows(m, NAMES)
    assert sorted(want) == [3, 4, 5, 6]
    assert {i: (e.field, e.reason) for i, e in batch.errors.items()} == {
        i: (e.field, e.reason) for i, e in want.items()
    }
    assert batch.good.tolist() == [0, 1, 2, 7]
    np.testing.assert_array_equal(batch.rows, m[[0, 1, 2, 7]])


def test_decode_of_valid_rows_in_the_model_order_is_the_request_matrix() -> None:
    m = _matrix(6)
    batch = columns.decode(_request(m), Card(NAMES))  # type: ignore[arg-type]
    assert batch.errors == {} and batch.good.tolist() == list(range(6))
    assert batch.rows.dtype == np.float32 and batch.rows.tobytes() == m.tobytes()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rows": 0}, "rows"),
        ({"rows": 11}, "rows"),
        ({"transaction_ids": ["a"]}, "transaction_ids"),
    ],
)
def test_check_shape(change: dict[str, Any], field: str) -> None:
    request = _request(_matrix(3))
    for key, value in change.items():
        if isinstance(value, list):
            del getattr(request, key)[:]
            getattr(request, key).extend(value)
        else:
            setattr(request, key, value)
    with pytest.raises(columns.BadRequest) as info:
        columns.check_shape(request, max_rows=10)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        ((*NAMES[:-1], "Time"), "unknown feature 'Time'"),
        (NAMES[1:], "missing feature 'V1'"),
        ((*NAMES[:-1], "V1"), "'V1' given twice"),
    ],
)
def test_column_order_names_the_feature(names: tuple[str, ...], reason: str) -> None:
    with pytest.raises(columns.BadRequest) as info:
        columns.column_order(names, NAMES)
    assert info.value.field == "feature_names" and info.value.reason.startswith(reason)


def test_wrong_value_size_names_values() -> None:
    request = _request(_matrix(3))
    request.values = request.values[:-1]
    with pytest.raises(columns.BadRequest) as info:
        columns.decode(request, Card(NAMES))  # type: ignore[arg-type]
    assert info.value.field == "values" and "expected rows x features x 4" in info.value.reason


def test_encoded_reply_reads_back_as_the_row_outcomes() -> None:
    m = _matrix(6)
    m[4, 3] = np.nan
    card = Card(NAMES)
    request = _request(m)
    batch = columns.decode(request, card)  # type: ignore[arg-type]
    fe = np.random.default_rng(2).random((len(batch.good), len(NAMES)), dtype=np.float32) ** 3
    fe[1] = 0.0  # no contributors: no top features
    errors = fe.mean(axis=1)
    scores = Scores(errors, fe, errors > 0.1, np.arange(len(errors), dtype=np.int32))
    rows = columns.responses(columns.encode(request, card, batch, scores))  # type: ignore[arg-type]
    expected = iter(outcomes(card, scores))  # type: ignore[arg-type]
    for i, row in enumerate(rows):
        if i == 4:
            assert isinstance(row, pb.RowError) and (row.index, row.transaction_id, row.field) == (4, "t-4", "V4")
            continue
        want = next(expected)
        assert isinstance(row, pb.ScoreResponse) and row.transaction_id == f"t-{i}"
        assert row.reconstruction_error == pytest.approx(want.reconstruction_error)
        assert (row.is_anomaly, row.out_of_range_features) == (want.is_anomaly, want.out_of_range)
        assert [(c.name, pytest.approx(c.share, rel=1e-6)) for c in row.top_features] == want.top
        assert row.threshold == card.threshold and row.model_version == card.version


def test_a_reply_without_ids_plus_the_ids_field_is_the_reply_with_them() -> None:
    m = _matrix(7)
    m[2, 5] = -np.inf  # a row error names its transaction id: encode reads the ids before they are cut
    card = Card(NAMES)
    request = columns.request_of([f"t-{i}" for i in range(7)], NAMES, m, model_version=12, top_k=2)
    # a field this server does not know (a newer client's): field 15, varint 1
    request.MergeFromString(b"\x78\x01")
    batch = columns.decode(request, card)  # type: ignore[arg-type]
    fe = np.random.default_rng(3).random((len(batch.good), len(NAMES)), dtype=np.float32)
    scores = Scores(fe.mean(axis=1), fe, fe.mean(axis=1) > 0.4, np.zeros(len(fe), np.int32))
    whole = columns.encode(request, card, batch, scores)  # type: ignore[arg-type]
    without = columns.encode(request, card, batch, scores, echo_ids=False)  # type: ignore[arg-type]
    assert len(without.transaction_ids) == 0 and without.errors[0].transaction_id == "t-2"
    ids = columns.ids_field(request)
    spliced = pb.ScoreColumnsResponse.FromString(without.SerializeToString() + ids)
    assert spliced == whole and list(spliced.transaction_ids) == [f"t-{i}" for i in range(7)]
    # the request is cut down to its ids, nothing of it (top_k, an unknown field) may land in the reply
    assert ids == pb.ScoreColumnsRequest(transaction_ids=[f"t-{i}" for i in range(7)]).SerializeToString()
    assert spliced.SerializeToString() == whole.SerializeToString()


def test_fraud_probabilities_travel_per_row_and_only_when_the_model_has_them() -> None:
    m = _matrix(5)
    m[2, 0] = np.inf
    request = _request(m)
    staged = Card(NAMES, has_fraud_probability=True)
    batch = columns.decode(request, staged)  # type: ignore[arg-type]
    fe = np.full((len(batch.good), len(NAMES)), 0.01, np.float32)
    errors = fe.mean(axis=1)
    probability = np.array([0.0, 0.25, 0.5, 0.99], np.float32)
    scores = Scores(errors, fe, probability > 0.3, np.zeros(4, np.int32), fraud_probability=probability)
    reply = columns.encode(request, staged, batch, scores)  # type: ignore[arg-type]
    got = np.frombuffer(reply.fraud_probabilities, columns.FLOAT32)
    np.testing.assert_array_equal(got[[0, 1, 3, 4]], probability)
    assert np.isnan(got[2])  # the bad row
    rows = columns.responses(reply)
    assert [r.fraud_probability for r in rows if isinstance(r, pb.ScoreResponse)] == probability.tolist()
    assert rows[0].HasField("fraud_probability")  # 0.0 is present, not absent

    plain = Card(NAMES)
    reply = columns.encode(request, plain, batch, Scores(errors, fe, errors > 1, np.zeros(4, np.int32)))  # type: ignore[arg-type]
    assert reply.fraud_probabilities == b""
    assert not any(r.HasField("fraud_probability") for r in columns.responses(reply) if isinstance(r, pb.ScoreResponse))


@pytest.mark.parametrize(("asked", "want"), [(None, 3), (0, 0), (1, 1), (len(NAMES), len(NAMES))])
def test_a_reply_has_the_top_features_asked_for(asked: int | None, want: int) -> None:
    m = _matrix(6)
    m[4, 2] = np.nan  # a bad row: -1 / 0 in its top columns when there are any
    card = Card(NAMES)
    request = columns.request_of([f"t-{i}" for i in range(6)], NAMES, m, top_k=asked)
    batch = columns.decode(request, card)  # type: ignore[arg-type]
    fe = np.random.default_rng(4).random((len(batch.good), len(NAMES)), dtype=np.float32)
    scores = Scores(fe.mean(axis=1), fe, fe.mean(axis=1) > 0.4, np.zeros(len(fe), np.int32))
    reply = columns.encode(request, card, batch, scores)  # type: ignore[arg-type]
    default = columns.encode(_request(m), card, columns.decode(_request(m), card), scores)  # type: ignore[arg-type]
    assert reply.top_k == want
    assert len(reply.top_feature_indices) == len(reply.top_feature_shares) == 6 * want * 4
    # the scores do not depend on it, and the rows read back with that many top features
    assert reply.reconstruction_errors == default.reconstruction_errors and reply.is_anomaly == default.is_anomaly
    rows = columns.responses(reply)
    assert [len(r.top_features) for r in rows if isinstance(r, pb.ScoreResponse)] == [want] * 5
    if want:
        order, _, _ = top_k(fe, want)
        got = np.frombuffer(reply.top_feature_indices, columns.INT32).reshape(6, want)
        np.testing.assert_array_equal(got[batch.good], order)
        assert (got[4] == -1).all()


@pytest.mark.parametrize("asked", [-1, len(NAMES) + 1])
def test_a_top_k_out_of_range_is_refused_naming_the_field(asked: int) -> None:
    request = columns.request_of(["a"], NAMES, _matrix(1), top_k=asked)
    with pytest.raises(columns.BadRequest) as info:
        columns.decode(request, Card(NAMES))  # type: ignore[arg-type]
    assert info.value.field == "top_k" and f"got {asked}" in info.value.reason
