"""The feature table (fraudscore/features.py) is what the schema reads transactions by."""

from __future__ import annotations

import numpy as np

from fraudscore import features, schema
from fraudscore.v1.transaction_pb2 import Transaction


def _tx() -> Transaction:
    tx = Transaction(transaction_id="t", card_id="c", amount=12.5, v=[float(i) / 10 for i in range(1, 29)])
    tx.event_time.FromSeconds(1_800_000_000)
    return tx


def test_every_feature_names_a_transaction_field() -> None:
    fields = Transaction.DESCRIPTOR.fields_by_name
    for f in features.FEATURES:
        assert f.proto_field in fields, f
        repeated = fields[f.proto_field].label == fields[f.proto_field].LABEL_REPEATED
        assert repeated == (f.index is not None), f
    assert (*features.PCA_FEATURES, features.AMOUNT) == features.MODEL_FEATURES
    assert (features.TIME, *features.MODEL_FEATURES) == features.REQUIRED_COLUMNS


def test_the_schema_reads_each_feature_by_its_table_row_in_any_order() -> None:
    tx = _tx()
    names = tuple(reversed(features.MODEL_FEATURES))
    expected = [12.5, *(float(i) / 10 for i in range(28, 0, -1))]
    assert schema.feature_row(tx, names) == expected
    np.testing.assert_array_equal(schema.feature_matrix([tx, tx], names), np.array([expected] * 2, np.float32))
    matrix, errors = schema.checked_feature_matrix([tx], names)
    assert errors == {} and matrix.tolist() == [list(np.array(expected, np.float32))]


def test_bounds_come_from_the_table() -> None:
    tx = _tx()
    tx.amount = features.MAX_AMOUNT * 2
    tx.v[3] = -1.0  # fine
    _, errors = schema.checked_feature_matrix([tx], features.MODEL_FEATURES)
    assert errors[0].field == "amount" and "limit" in errors[0].reason
    rows = np.array([[0.0] * 28 + [-1.0], [features.MAX_ABS_V * 2] + [0.0] * 28], dtype=np.float32)
    bad = schema.invalid_feature_rows(rows, features.MODEL_FEATURES)
    assert (bad[0].field, bad[1].field) == (features.AMOUNT, "V1")
