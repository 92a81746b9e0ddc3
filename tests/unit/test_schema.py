"""fraudscore.schema: every way in (JSON, CSV rows) and every way a transaction can be malformed."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fraudscore import features, schema
from fraudscore.schema import InvalidTransaction, feature_row, from_csv_row, parse_json, to_json, validate
from fraudscore.v1.transaction_pb2 import Transaction

V = [round(-1.5 + 0.1 * i, 3) for i in range(28)]
GOOD: dict[str, Any] = {
    "transactionId": "t-1",
    "cardId": "c-9",
    "merchantId": "m-3",
    "eventTime": "2026-11-23T07:00:00Z",
    "amount": 12.5,
    "v": V,
    "label": 0,
}

# The first two rows of Kaggle's creditcard.csv, header and quoting as in the file.
KAGGLE_CSV = (
    '"Time","V1","V2","V3","V4","V5","V6","V7","V8","V9","V10","V11","V12","V13","V14","V15","V16","V17","V18",'
    '"V19","V20","V21","V22","V23","V24","V25","V26","V27","V28","Amount","Class"\n'
    "0,-1.3598071336738,-0.0727811733098497,2.53634673796914,1.37815522427443,-0.338320769942518,"
    "0.462387777762292,0.239598554061257,0.0986979012610507,0.363786969611213,0.0907941719789316,"
    "-0.551599533260813,-0.617800855762348,-0.991389847235408,-0.311169353699879,1.46817697209427,"
    "-0.470400525259478,0.207971241929242,0.0257905801985591,0.403992960255733,0.251412098239705,"
    "-0.018306777944153,0.277837575547756,-0.110473910188767,0.0669280749146731,0.128539358273528,"
    '-0.189114843888824,0.133558376740387,-0.0210530534538215,149.62,"0"\n'
    "406,-2.3122265423263,1.95199201064158,-1.60985073229769,3.9979055875468,-0.522187864667764,"
    "-1.42654531920595,-2.53738730624579,1.39165724829804,-2.77008927719433,-2.77227214465915,"
    "3.20203320709635,-2.89990738849473,-0.595221881324605,-4.28925378244217,0.389724120274487,"
    "-1.14074717980657,-2.83005567450437,-0.0168224681808257,0.416955705037907,0.126910559061474,"
    "0.517232370861764,-0.0350493686052974,-0.465211076182388,0.320198198514526,0.0445191674731724,"
    '0.177839798284401,0.261145002567677,-0.143275874698919,0,"1"\n'
)


def body(**changes: Any) -> bytes:
    """GOOD with some keys changed; a value of ``...`` removes the key."""
    obj = {k: v for k, v in GOOD.items() if changes.get(k) is not ...}
    obj.update({k: v for k, v in changes.items() if v is not ...})
    return json.dumps(obj).encode()


def kaggle_rows() -> list[dict[str, str | None]]:
    return list(csv.DictReader(io.StringIO(KAGGLE_CSV)))


def rejects(payload: bytes | str) -> InvalidTransaction:
    with pytest.raises(InvalidTransaction) as err:
        parse_json(payload)
    assert str(err.value) == f"{err.value.field}: {err.value.reason}"
    return err.value


# ---------------------------------------------------------------------------------------------------------------------
# Round trips


def test_json_round_trip() -> None:
    tx = parse_json(body())
    assert tx.transaction_id == "t-1" and tx.card_id == "c-9" and tx.merchant_id == "m-3"
    assert tx.event_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 23, 7, tzinfo=UTC)
    assert tx.amount == 12.5 and list(tx.v) == V
    assert tx.HasField("label") and tx.label == 0
    assert parse_json(to_json(tx)) == tx
    assert parse_json(to_json(tx).decode()) == tx  # str bodies too


def test_json_round_trip_keeps_an_absent_label_absent() -> None:
    tx = parse_json(body(label=...))
    assert not tx.HasField("label")
    again = parse_json(to_json(tx))
    assert again == tx and not again.HasField("label")


def test_json_accepts_snake_case_and_numeric_strings() -> None:
    snake = {"transaction_id": "t-1", "card_id": "c-9", "event_time": "2026-11-23T07:00:00Z", "amount": "12.5", "v": V}
    tx = parse_json(json.dumps(snake))
    assert tx.transaction_id == "t-1" and tx.amount == 12.5 and tx.merchant_id == ""


def test_to_json_is_compact_proto3_json() -> None:
    tx = parse_json(body())
    obj = json.loads(to_json(tx))
    assert obj["transactionId"] == "t-1" and obj["eventTime"] == "2026-11-23T07:00:00Z" and obj["v"] == V
    assert b"\n" not in to_json(tx)


def test_from_csv_row_of_the_kaggle_file() -> None:
    first, second = kaggle_rows()
    tx = from_csv_row(first, row_number=1)
    assert tx.transaction_id == "row-1" and tx.card_id == "card-00001" and tx.merchant_id == "unknown"
    assert tx.event_time.ToDatetime(tzinfo=UTC) == schema.DEFAULT_EPOCH
    assert tx.amount == pytest.approx(149.62)
    assert tx.v[0] == pytest.approx(-1.3598071336738) and tx.v[27] == pytest.approx(-0.0210530534538215)
    assert tx.label == 0

    fraud = from_csv_row(second, row_number=2, epoch=datetime(2024, 1, 1, tzinfo=UTC), id_prefix="kaggle")
    assert fraud.transaction_id == "kaggle-2" and fraud.label == 1 and fraud.amount == 0.0
    assert fraud.event_time.ToDatetime(tzinfo=UTC) == datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=406)
    assert parse_json(to_json(fraud)) == fraud


def test_from_csv_row_uses_generated_id_columns_and_optional_class() -> None:
    row = kaggle_rows()[0]
    del row[features.LABEL]
    row.update({features.CARD_ID: "c-42", features.MERCHANT_ID: "m-7", features.TRANSACTION_ID: "tx-9"})
    tx = from_csv_row(row, row_number=5)
    assert (tx.transaction_id, tx.card_id, tx.merchant_id) == ("tx-9", "c-42", "m-7")
    assert not tx.HasField("label")
    assert not from_csv_row({**kaggle_rows()[0], features.LABEL: ""}, row_number=1).HasField("label")


def test_feature_row_follows_the_order_given() -> None:
    tx = parse_json(body())
    assert feature_row(tx, features.MODEL_FEATURES) == [*V, 12.5]
    assert feature_row(tx, ["Amount", "V3", "V1"]) == [12.5, V[2], V[0]]
    with pytest.raises(InvalidTransaction) as err:
        feature_row(tx, ["V29"])
    assert err.value.field == "V29"


# ---------------------------------------------------------------------------------------------------------------------
# Malformed JSON: each case names the field and says why


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("transactionId", "transaction_id"),
        ("cardId", "card_id"),
        ("eventTime", "event_time"),
        ("amount", "amount"),
        ("v", "v"),
    ],
)
def test_missing_field(key: str, field: str) -> None:
    err = rejects(body(**{key: ...}))
    assert err.field == field
    assert "missing" in err.reason and key in err.reason


def test_optional_fields_may_be_missing() -> None:
    tx = parse_json(body(merchantId=..., label=...))
    assert tx.merchant_id == "" and not tx.HasField("label")


def test_empty_ids_are_rejected() -> None:
    assert rejects(body(transactionId="")).field == "transaction_id"
    assert rejects(body(cardId="")).field == "card_id"


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"amount": "twelve"}, "amount", "expected a number, got string 'twelve'"),
        ({"amount": None}, "amount", "expected a number, got null"),
        ({"amount": True}, "amount", "expected a number, got boolean"),
        ({"amount": [1]}, "amount", "expected a number, got array"),
        ({"cardId": 123}, "card_id", "expected a string, got number"),
        ({"transactionId": {"id": 1}}, "transaction_id", "expected a string, got object"),
        ({"eventTime": 1700000000}, "event_time", "expected a string, got number"),
        ({"v": {"V1": 1.0}}, "v", "expected a list of 28 numbers, got object"),
        ({"v": 1.0}, "v", "expected a list of 28 numbers, got number"),
        ({"v": [*V[:27], "x"]}, "v[27] (V28)", "expected a number, got string 'x'"),
        ({"v": [None, *V[1:]]}, "v[0] (V1)", "expected a number, got null"),
    ],
)
def test_wrong_type(changes: dict[str, Any], field: str, reason: str) -> None:
    err = rejects(body(**changes))
    assert (err.field, err.reason) == (field, reason)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_amount_as_proto3_json_strings(value: str) -> None:
    err = rejects(body(amount=value))
    assert err.field == "amount"
    assert err.reason.startswith("not a finite number")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_v_value(value: str) -> None:
    err = rejects(body(v=[*V[:5], value, *V[6:]]))
    assert err.field == "v[5] (V6)"
    assert err.reason.startswith("not a finite number")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400"])
def test_non_finite_json_number_literals(literal: str) -> None:
    # Python's json module reads these (1e400 overflows to inf); they must not slip through as floats.
    err = rejects(body().replace(b'"amount": 12.5', f'"amount": {literal}'.encode()))
    assert err.field == "amount" and err.reason.startswith("not a finite number")


def test_unknown_field() -> None:
    err = rejects(body(cvv="123"))
    assert (err.field, err.reason) == ("cvv", "unknown field")


def test_field_given_under_both_names() -> None:
    err = rejects(body(transaction_id="t-2"))
    assert err.field == "transaction_id"
    assert "twice" in err.reason and "transactionId" in err.reason


@pytest.mark.parametrize("payload", [b"", b"   \n", ""])
def test_empty_body(payload: bytes | str) -> None:
    err = rejects(payload)
    assert (err.field, err.reason) == ("<body>", "empty message")


def test_non_utf8_body() -> None:
    payload = b'{"transactionId": "t-\xff"}'
    err = rejects(payload)
    assert err.field == "<body>"
    bad_at = payload.index(0xFF)
    assert err.reason.startswith("not UTF-8") and f"byte {bad_at}" in err.reason


@pytest.mark.parametrize("payload", [b"{nope", b'{"amount": 1,}', b"12.5"])
def test_not_a_json_object(payload: bytes) -> None:
    err = rejects(payload)
    assert err.field == "<body>"
    assert err.reason.startswith(("not JSON", "expected a JSON object"))


def test_oversized_body() -> None:
    padded = body(merchantId="m" * schema.MAX_MESSAGE_BYTES)
    err = rejects(padded)
    assert err.field == "<body>"
    assert str(len(padded)) in err.reason and str(schema.MAX_MESSAGE_BYTES) in err.reason
    assert rejects(padded.decode()).field == "<body>"
    # The limit is a parameter, so callers with larger messages can raise it.
    assert parse_json(padded, max_bytes=2 * len(padded)).merchant_id == "m" * schema.MAX_MESSAGE_BYTES


@pytest.mark.parametrize("count", [0, 27, 29])
def test_wrong_number_of_v_values(count: int) -> None:
    err = rejects(body(v=[0.5] * count))
    assert err.field == "v"
    assert err.reason == f"expected 28 values (V1..V28), got {count}"


def test_negative_amount() -> None:
    err = rejects(body(amount=-0.01))
    assert err.field == "amount" and "negative" in err.reason


def test_zero_amount_is_valid() -> None:
    assert parse_json(body(amount=0)).amount == 0.0


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-11-23T07:00:00", "2026-13-01T00:00:00Z", "0000-01-01T00:00:00Z", ""]
)
def test_bad_event_time(value: str) -> None:
    err = rejects(body(eventTime=value))
    assert err.field == "event_time"
    assert "RFC 3339" in err.reason and repr(value) in err.reason


def test_event_time_with_offset_is_normalised_to_utc() -> None:
    tx = parse_json(body(eventTime="2026-11-23T08:30:00+01:30"))
    assert tx.event_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 23, 7, tzinfo=UTC)


@pytest.mark.parametrize("value", [2, -1, 0.5, "1", True])
def test_bad_label(value: Any) -> None:
    err = rejects(body(label=value))
    assert err.field == "label"
    assert err.reason == f"expected 0 or 1, got {value!r}"


def test_validate_checks_messages_built_in_code() -> None:
    # gRPC requests arrive as messages, not JSON: validate() applies the same rules.
    tx = parse_json(body())
    tx.v[3] = math.nan
    with pytest.raises(InvalidTransaction) as err:
        validate(tx)
    assert err.value.field == "v[3] (V4)"
    missing_time = Transaction(transaction_id="t", card_id="c", amount=1.0, v=V)
    with pytest.raises(InvalidTransaction) as err:
        validate(missing_time)
    assert (err.value.field, err.value.reason) == ("event_time", "missing")


# ---------------------------------------------------------------------------------------------------------------------
# Malformed CSV rows: errors name the CSV column


@pytest.mark.parametrize("column", ["Time", "V1", "V17", "Amount"])
def test_csv_missing_column(column: str) -> None:
    row = kaggle_rows()[0]
    del row[column]
    with pytest.raises(InvalidTransaction) as err:
        from_csv_row(row, row_number=1)
    assert (err.value.field, err.value.reason) == (column, "missing column")


@pytest.mark.parametrize(("column", "raw"), [("V3", "abc"), ("V3", ""), ("Amount", "12,50"), ("Time", "noon")])
def test_csv_unparseable_number(column: str, raw: str) -> None:
    with pytest.raises(InvalidTransaction) as err:
        from_csv_row({**kaggle_rows()[0], column: raw}, row_number=1)
    assert (err.value.field, err.value.reason) == (column, f"not a number: {raw!r}")


@pytest.mark.parametrize(("column", "raw"), [("V3", "nan"), ("Amount", "inf"), ("Time", "-Infinity")])
def test_csv_non_finite_value(column: str, raw: str) -> None:
    with pytest.raises(InvalidTransaction) as err:
        from_csv_row({**kaggle_rows()[0], column: raw}, row_number=1)
    assert (err.value.field, err.value.reason) == (column, f"not a finite number: {raw!r}")


def test_csv_semantic_errors_use_csv_column_names() -> None:
    with pytest.raises(InvalidTransaction) as err:
        from_csv_row({**kaggle_rows()[0], "Amount": "-5"}, row_number=1)
    assert err.value.field == "Amount" and "negative" in err.value.reason


@pytest.mark.parametrize(("raw", "reason"), [("-1", "negative time"), ("1e20", "out of range")])
def test_csv_bad_time(raw: str, reason: str) -> None:
    with pytest.raises(InvalidTransaction) as err:
        from_csv_row({**kaggle_rows()[0], "Time": raw}, row_number=1)
    assert err.value.field == "Time" and reason in err.value.reason


@pytest.mark.parametrize(
    ("raw", "reason"), [("2", "expected 0 or 1"), ("0.5", "expected 0 or 1"), ("yes", "not a number")]
)
def test_csv_bad_class(raw: str, reason: str) -> None:
    with pytest.raises(InvalidTransaction) as err:
        from_csv_row({**kaggle_rows()[0], "Class": raw}, row_number=1)
    assert err.value.field == "Class" and reason in err.value.reason and repr(raw) in err.value.reason


def test_plain_json_is_built_exactly_as_parse_dict_builds_it() -> None:
    """from_dict builds the common shape directly; the result is ParseDict's, byte for byte."""
    from google.protobuf import json_format

    from fraudscore.schema import _plain_transaction

    base = {"transaction_id": "t1", "card_id": "c1", "event_time": "2026-11-23T07:00:00.123456Z", "amount": 12.5}
    shapes = [
        base | {"v": [0.1 * i - 1.3 for i in range(28)]},
        base | {"v": list(range(-14, 14)), "amount": 7, "merchantId": "m9", "label": 1},
        base | {"v": [1e-300] * 28, "label": None, "transactionId": "t2"} | {"eventTime": "2026-11-23T08:00:00+02:00"},
        base | {"v": [-1_000_000] * 28, "label": 0, "amount": 0},
    ]
    for shape in shapes:
        obj = {k: v for k, v in shape.items() if not (k == "event_time" and "eventTime" in shape)}
        obj = {k: v for k, v in obj.items() if not (k == "transaction_id" and "transactionId" in shape)}
        expected = json_format.ParseDict(dict(obj), Transaction())
        built = _plain_transaction(obj)
        assert built is not None and built.SerializeToString(deterministic=True) == expected.SerializeToString(
            deterministic=True
        )
        assert schema.from_dict(obj) == expected
    # Numbers as strings or beyond 2**53: ParseDict decides (and its messages stay the errors).
    assert _plain_transaction(base | {"v": ["1.5"] * 28}) is None
    assert _plain_transaction(base | {"v": [0.0] * 28, "amount": 2**60}) is None
