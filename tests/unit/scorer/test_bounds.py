"""Input the scorer used to accept silently: absurd magnitudes, and known fields sent with the wrong wire type.

The magnitude rule lives in fraudscore.schema (the one validator), so every way in applies it alike: a
message built in code (Score), proto3 JSON (the stream's Pub/Sub path), a CSV row (the stream's replay),
the bulk ScoreBatch check and the ScoreColumns matrix.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fraudscore import features, schema
from fraudscore.schema import MAX_ABS_V, MAX_AMOUNT, InvalidTransaction
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1.transaction_pb2 import Transaction
from scorer.decode import Malformed, parser, row_wire_errors, wire_error

NAMES = features.MODEL_FEATURES


def _tx(v: list[float] | None = None, amount: float = 12.5) -> Transaction:
    tx = Transaction(transaction_id="t-1", card_id="c-1", amount=amount, v=v if v is not None else [0.5] * 28)
    tx.event_time.FromSeconds(1_700_000_000)
    return tx


def _embedded(field: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, varint length, payload."""
    out, n = bytearray([field << 3 | 2]), len(payload)
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n]) + payload


def _error(tx: Transaction) -> InvalidTransaction:
    with pytest.raises(InvalidTransaction) as caught:
        schema.validate(tx)
    return caught.value


@pytest.mark.parametrize("value", [1e272, -1e272, MAX_ABS_V * 1.0001, -3e38])
def test_v_beyond_the_bound_is_rejected_naming_it(value: float) -> None:
    err = _error(_tx(v=[0.5] * 3 + [value] + [0.5] * 24))
    assert (err.field, err.reason) == ("v[3] (V4)", f"magnitude {value:g} is above the limit {MAX_ABS_V:g}")


def test_amount_beyond_the_bound_is_rejected() -> None:
    err = _error(_tx(amount=1e272))
    assert err.field == "amount" and err.reason == f"magnitude 1e+272 is above the limit {MAX_AMOUNT:g}"


def test_values_at_the_bounds_are_valid() -> None:
    schema.validate(_tx(v=[MAX_ABS_V, -MAX_ABS_V] * 14, amount=MAX_AMOUNT))


def test_json_and_csv_ways_in_apply_the_same_bound() -> None:
    obj = json.loads(schema.to_json(_tx()))
    obj["v"][0] = 1e272
    with pytest.raises(InvalidTransaction, match=r"^v\[0\] \(V1\): magnitude 1e\+272"):
        schema.parse_json(json.dumps(obj))
    row = {name: "0.5" for name in features.PCA_FEATURES} | {"Time": "0", "Amount": "2e9"}
    with pytest.raises(InvalidTransaction, match=r"^Amount: magnitude 2e\+09 is above the limit"):
        schema.from_csv_row(row, row_number=1)


def test_bulk_batch_check_reports_what_validate_reports() -> None:
    txs = [_tx(), _tx(v=[0.5] * 27 + [-2e6]), _tx(amount=5e9), _tx()]
    rows, errors = schema.checked_feature_matrix(txs, NAMES)
    assert sorted(errors) == [1, 2] and rows.shape == (2, len(NAMES))
    for i, exc in errors.items():
        assert (exc.field, exc.reason) == (_error(txs[i]).field, _error(txs[i]).reason)


def test_columns_matrix_rows_beyond_the_bounds_are_row_errors() -> None:
    m = np.full((4, len(NAMES)), 0.5, dtype=np.float32)
    m[1, NAMES.index("V7")] = 1e30
    m[2, NAMES.index("Amount")] = 2e9
    m[3, NAMES.index("Amount")] = MAX_AMOUNT  # at the bound: fine
    errors = schema.invalid_feature_rows(m, NAMES)
    assert sorted(errors) == [1, 2]
    assert errors[1].field == "V7" and errors[1].reason.startswith("magnitude 1e+30 is above the limit 1e+06")
    assert errors[2].field == "Amount" and errors[2].reason.startswith("magnitude 2e+09 is above the limit 1e+09")


def test_known_field_with_the_wrong_wire_type_is_named() -> None:
    parse = parser(pb.ScoreRequest)
    good = pb.ScoreRequest(transaction=_tx()).SerializeToString()
    assert isinstance(parse(good), pb.ScoreRequest)
    # Field 2 (model_version, an int64) sent length-delimited, as a string would be.
    bad = parse(good + b"\x12\x017")
    assert bad == Malformed("model_version", "wrong wire type: sent as length-delimited, the field is int64")
    # Inside the transaction: amount (a double, field 5) sent as a varint.
    bad = parse(_embedded(1, _tx().SerializeToString() + b"\x28\x05"))
    assert bad == Malformed("transaction.amount", "wrong wire type: sent as varint, the field is double")


def test_unknown_field_numbers_are_ignored() -> None:
    # Forward compatibility: a field this server does not know (number 15) is no reason to refuse.
    parsed = parser(pb.ScoreRequest)(pb.ScoreRequest(transaction=_tx()).SerializeToString() + b"\x78\x01")
    assert isinstance(parsed, pb.ScoreRequest) and wire_error(parsed) is None


def test_batch_rows_with_the_wrong_wire_type_are_row_errors() -> None:
    rows = [_tx().SerializeToString(), _tx().SerializeToString() + b"\x35" + b"\0" * 4, _tx().SerializeToString()]
    data = b"".join(_embedded(1, r) for r in rows)
    request = parser(pb.ScoreBatchRequest, skip=("transactions",))(data)
    assert isinstance(request, pb.ScoreBatchRequest)
    errors = row_wire_errors(request.transactions)
    assert list(errors) == [1]
    assert (errors[1].field, errors[1].reason) == ("v", "wrong wire type: sent as 32-bit, the field is repeated double")


def test_wrong_wire_type_two_messages_deep_is_named() -> None:
    # event_time.seconds (an int64, field 1 of the Timestamp in transaction field 4) sent as 32-bit: the
    # parser's precomputed walk must reach it like wire_error's generic one.
    tx = _tx()
    time = tx.event_time.SerializeToString() + b"\x0d" + b"\0" * 4
    tx.ClearField("event_time")
    parsed = parser(pb.ScoreRequest)(_embedded(1, tx.SerializeToString() + _embedded(4, time)))
    assert parsed == Malformed("transaction.event_time.seconds", "wrong wire type: sent as 32-bit, the field is int64")
    # And in ScoreColumns (no message fields): a repeated string sent as a varint.
    columns_request = pb.ScoreColumnsRequest(rows=1, transaction_ids=["a"]).SerializeToString() + b"\x08\x01"
    found = parser(pb.ScoreColumnsRequest)(columns_request)
    assert isinstance(found, Malformed) and found.reason.startswith("wrong wire type: sent as varint")
