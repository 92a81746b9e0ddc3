"""Parsing and validating transactions: JSON messages and CSV rows.

Every tool that takes a transaction from outside (Pub/Sub JSON, gRPC, Kaggle
or generated CSV rows) goes through this module, so a malformed input gets the
same error everywhere: an :class:`InvalidTransaction` naming the field and the
reason.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from fraudscore import features
from fraudscore.features import MAX_ABS_V, MAX_AMOUNT
from fraudscore.v1.transaction_pb2 import Transaction

N_PCA = len(features.PCA_FEATURES)
MAX_MESSAGE_BYTES = 64 * 1024
# Kaggle's Time column counts seconds from the first transaction of the file;
# rows are anchored at this instant unless the caller passes another epoch.
DEFAULT_EPOCH = datetime(2013, 9, 1, tzinfo=UTC)

_FIELDS = Transaction.DESCRIPTOR.fields
_KNOWN_JSON_KEYS = {f.name for f in _FIELDS} | {f.json_name for f in _FIELDS}
_JSON_NAMES = {f.name: f.json_name for f in _FIELDS}
_CANONICAL = {f.json_name: str(f.name) for f in _FIELDS} | {f.name: str(f.name) for f in _FIELDS}  # key -> name
# Fields a JSON message must carry; merchant_id and label are optional.
_REQUIRED_JSON_FIELDS = ("transaction_id", "card_id", "event_time", "amount", "v")

# The raw feature table of a batch of transactions has one column per row of features.FEATURES, in its order.
_COLUMN = {f.name: i for i, f in enumerate(features.FEATURES)}
_VECTOR_COLUMNS = [i for i, f in enumerate(features.FEATURES) if f.proto_field == "v"]
_SCALAR_COLUMNS = [(i, attrgetter(f.proto_field)) for i, f in enumerate(features.FEATURES) if f.index is None]
_BOUNDS = np.array([f.max_abs for f in features.FEATURES], dtype=np.float64)
_CSV_ORDER = tuple(sorted(features.FEATURES, key=lambda f: f.index is not None))  # a bad Amount is named first
_NON_NEGATIVE = np.array([f.non_negative for f in features.FEATURES], dtype=bool)
# The ``v`` block is read in one pass: its features must be columns 0..N_PCA-1 at their own index.
assert _VECTOR_COLUMNS == [features.FEATURES[i].index for i in _VECTOR_COLUMNS] == list(range(N_PCA))
assert all(f.proto_field in ("v", *(field.name for field in _FIELDS)) for f in features.FEATURES)
# validated_row builds a raw row as the ``v`` values followed by the scalar columns, in column order.
assert [i for i, _ in _SCALAR_COLUMNS] == list(range(N_PCA, len(features.FEATURES)))
_IDENTITY = list(range(len(features.FEATURES)))


class InvalidTransaction(ValueError):
    """A transaction that cannot be used; ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_json(body: bytes | str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Transaction:
    """Parses the proto3 JSON form of a Transaction and validates it."""
    if isinstance(body, bytes):
        if len(body) > max_bytes:
            raise InvalidTransaction("<body>", f"message is {len(body)} bytes, limit {max_bytes}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidTransaction("<body>", f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = body
        if len(text.encode("utf-8")) > max_bytes:
            raise InvalidTransaction("<body>", f"message exceeds {max_bytes} bytes")
    if not text.strip():
        raise InvalidTransaction("<body>", "empty message")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidTransaction("<body>", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise InvalidTransaction("<body>", f"expected a JSON object, got {type(obj).__name__}")
    return from_dict(obj)


def from_dict(obj: Mapping[str, Any]) -> Transaction:
    """Builds a Transaction from a decoded proto3-JSON mapping and validates it."""
    seen: dict[str, str] = {}
    for key in obj:
        if key not in _KNOWN_JSON_KEYS:
            raise InvalidTransaction(str(key), "unknown field")
        name = _canonical(key)
        if name in seen:
            # proto3 JSON would silently keep one of the two values.
            raise InvalidTransaction(name, f"given twice, as {seen[name]!r} and {key!r}")
        seen[name] = key
    for name in _REQUIRED_JSON_FIELDS:
        # Checked on the JSON because once parsed, proto3 cannot tell a missing amount from 0.0.
        if name not in seen:
            raise InvalidTransaction(name, f"missing (expected key {_JSON_NAMES[name]!r})")
    for key, value in obj.items():
        _check_json_type(key, value)
    tx = _plain_transaction(obj)
    if tx is None:
        tx = Transaction()
        try:
            json_format.ParseDict(dict(obj), tx)
        except json_format.ParseError as exc:
            raise InvalidTransaction(_field_of(str(exc), obj), str(exc)) from None
    validate(tx)
    return tx


_EXACT_INT = 2**53  # JSON integers up to this convert to a double exactly, as ParseDict converts them


def _plain_number(value: Any) -> bool:
    return type(value) is float or (type(value) is int and -_EXACT_INT <= value <= _EXACT_INT)


def _plain_transaction(obj: Mapping[str, Any]) -> Transaction | None:
    """The Transaction ``json_format.ParseDict`` builds, for a mapping already through the key and type checks
    whose numbers are plain JSON numbers (no strings, no huge integers); None for any other (ParseDict decides).

    ParseDict's generic field-by-field reflection was most of the stream's parse cost (~15 us a message).
    """
    fields: dict[str, Any] = {}
    event_time = None
    for key, value in obj.items():
        name = _CANONICAL[key]
        if name == "event_time":
            event_time = value
        elif name == "v":
            if not all(_plain_number(x) for x in value):
                return None
            fields["v"] = value
        elif name == "amount":
            if not _plain_number(value):
                return None
            fields["amount"] = float(value)
        elif name == "label":
            if value is not None:  # proto3 JSON null: the field stays unset
                fields["label"] = value
        else:  # the string fields
            fields[name] = value
    tx = Transaction(**fields)
    if event_time is not None:
        tx.event_time.FromJsonString(event_time)
    return tx


def _check_json_type(key: str, value: Any) -> None:
    """Rejects JSON values whose type proto3 JSON would coerce silently or vaguely."""
    name = _canonical(key)
    if name in ("transaction_id", "card_id", "merchant_id", "event_time"):
        if not isinstance(value, str):
            raise InvalidTransaction(name, f"expected a string, got {_json_type(value)}")
        if name == "event_time":
            _check_timestamp(name, value)
    elif name == "amount":
        _check_number(name, value)
    elif name == "v":
        if not isinstance(value, list):
            raise InvalidTransaction("v", f"expected a list of {N_PCA} numbers, got {_json_type(value)}")
        for i, item in enumerate(value):
            _check_number(f"v[{i}] (V{i + 1})", item)
    elif name == "label" and value is not None and (isinstance(value, bool) or value not in (0, 1)):
        raise InvalidTransaction("label", f"expected 0 or 1, got {value!r}")


def _check_timestamp(field: str, value: str) -> None:
    try:
        Timestamp().FromJsonString(value)
    except ValueError:
        raise InvalidTransaction(
            field, f"expected an RFC 3339 timestamp with a timezone, e.g. 2026-11-23T07:00:00Z; got {value!r}"
        ) from None


def _check_number(field: str, value: Any) -> None:
    # proto3 JSON writes NaN/Infinity as strings; validate() rejects them by name.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidTransaction(field, f"expected a number, got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        # Python's json reads 1e400 as inf and accepts bare NaN/Infinity literals.
        raise InvalidTransaction(field, f"not a finite number: {value}")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            raise InvalidTransaction(field, f"expected a number, got string {value!r}") from None


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _canonical(key: str) -> str:
    return _CANONICAL.get(key, key)


def _field_of(message: str, obj: Mapping[str, Any]) -> str:
    for key in obj:
        if f'"{key}"' in message or f" {key} " in message:
            return _canonical(key)
    return "<body>"


def validate(tx: Transaction) -> None:
    """Checks the semantic rules proto3 cannot express; raises InvalidTransaction."""
    if not tx.transaction_id:
        raise InvalidTransaction("transaction_id", "missing or empty")
    if not tx.card_id:
        raise InvalidTransaction("card_id", "missing or empty")
    if not tx.HasField("event_time"):
        raise InvalidTransaction("event_time", "missing")
    if len(tx.v) != N_PCA:
        raise InvalidTransaction("v", f"expected {N_PCA} values (V1..V{N_PCA}), got {len(tx.v)}")
    for i, value in enumerate(tx.v):
        if not math.isfinite(value):
            raise InvalidTransaction(f"v[{i}] (V{i + 1})", f"not a finite number: {value}")
        if abs(value) > MAX_ABS_V:
            raise InvalidTransaction(f"v[{i}] (V{i + 1})", _too_large(value, MAX_ABS_V))
    if not tx.HasField("amount"):
        raise InvalidTransaction("amount", "missing")
    if not math.isfinite(tx.amount):
        raise InvalidTransaction("amount", f"not a finite number: {tx.amount}")
    if tx.amount < 0:
        raise InvalidTransaction("amount", f"negative amount {tx.amount}")
    if tx.amount > MAX_AMOUNT:
        raise InvalidTransaction("amount", _too_large(tx.amount, MAX_AMOUNT))


def validated_row(tx: Transaction, names: Sequence[str]) -> np.ndarray:
    """``validate(tx)`` then ``feature_matrix([tx], names)[0]``, for one transaction, in ~a quarter of their time.

    The scorer's Score pays this per call. A transaction that plainly passes
    every rule (ids, time and amount present, 28 values whose absolute values
    sum to at most MAX_ABS_V, which bounds each one and fails on NaN or inf,
    0 <= amount <= MAX_AMOUNT) is turned into its row directly; any other goes
    through ``validate`` itself, so the errors are exactly its.
    """
    columns = _feature_columns(tuple(names))
    v = tx.v
    if len(v) == N_PCA and tx.transaction_id and tx.card_id and tx.HasField("event_time") and tx.HasField("amount"):
        values = list(v)
        amount = tx.amount
        if sum(map(abs, values)) <= MAX_ABS_V and 0.0 <= amount <= MAX_AMOUNT:
            values.extend([value_of(tx) for _, value_of in _SCALAR_COLUMNS])  # the raw table's row
            row = np.array(values, dtype=np.float32)
            return row if columns == _IDENTITY else row[columns]
    validate(tx)
    return feature_matrix([tx], names)[0]


def _too_large(value: float, bound: float) -> str:
    return f"magnitude {value:g} is above the limit {bound:g}"


def to_json(tx: Transaction) -> bytes:
    """The proto3 JSON form used on Pub/Sub.

    Zero values are written out (``"amount": 0.0``) rather than omitted as plain proto3 JSON
    would: :func:`parse_json` requires the amount key, so that a producer that forgets the
    amount is caught instead of scored as a $0 transaction.
    """
    return json_format.MessageToJson(tx, indent=None, always_print_fields_with_no_presence=True).encode("utf-8")


def feature_value(tx: Transaction, name: str) -> float:
    """The value of one model feature (a row of ``features.FEATURES``) of a transaction."""
    (column,) = _feature_columns((name,))
    feature = features.FEATURES[column]
    value = getattr(tx, feature.proto_field)
    if feature.index is None:
        return float(value)
    if feature.index < len(value):
        return float(value[feature.index])
    raise InvalidTransaction(name, "model feature not present in the Transaction schema")


def feature_row(tx: Transaction, names: Sequence[str]) -> list[float]:
    """The transaction's values for the model's features, in the model's order."""
    return [feature_value(tx, name) for name in names]


def feature_matrix(txs: Sequence[Transaction], names: Sequence[str]) -> np.ndarray:
    """``feature_row`` of many validated transactions as a float32 ``[n, len(names)]`` array.

    The same values as ``feature_row``, without its per-value lookups, for
    servers that score thousands of rows a second (cost: README, Benchmarks).
    """
    columns = _feature_columns(tuple(names))
    for tx in txs:
        if len(tx.v) != N_PCA:
            raise InvalidTransaction("v", f"expected {N_PCA} values (V1..V{N_PCA}), got {len(tx.v)}")
    return _raw_table(txs, np.ones(len(txs), dtype=bool))[:, columns].astype(np.float32)


def checked_feature_matrix(
    txs: Sequence[Transaction], names: Sequence[str]
) -> tuple[np.ndarray, dict[int, InvalidTransaction]]:
    """``validate`` and ``feature_matrix`` of many transactions in one pass.

    Returns the feature matrix of the valid rows (in request order) and, by
    index, the error of each invalid one. The rules are checked in bulk (numpy
    over all values, a third of ``validate``'s cost a row); only a row failing a check is
    run through ``validate`` itself, so its error is exactly ``validate``'s.
    """
    columns = _feature_columns(tuple(names))
    n = len(txs)
    right_length = np.fromiter((len(tx.v) for tx in txs), dtype=np.int64, count=n) == N_PCA
    table = _raw_table(txs, right_length)
    present = [
        bool(tx.transaction_id and tx.card_id and tx.HasField("event_time") and tx.HasField("amount")) for tx in txs
    ]
    with np.errstate(invalid="ignore"):
        in_bounds = (np.abs(table) <= _BOUNDS).all(axis=1) & (table[:, _NON_NEGATIVE] >= 0).all(axis=1)
        suspect = ~(right_length & np.asarray(present, dtype=bool) & np.isfinite(table).all(axis=1) & in_bounds)
    errors: dict[int, InvalidTransaction] = {}
    for i in np.flatnonzero(suspect).tolist():
        try:
            validate(txs[i])
        except InvalidTransaction as exc:
            errors[i] = exc
    good = table if not errors else np.delete(table, list(errors), axis=0)
    return good[:, columns].astype(np.float32), errors


def _raw_table(txs: Sequence[Transaction], right_length: np.ndarray) -> np.ndarray:
    """The raw feature table (float64, a column per ``features.FEATURES`` row) of transactions.

    The ``v`` block of a row whose ``v`` has the wrong length stays 0.
    """
    n = len(txs)
    table = np.zeros((n, len(features.FEATURES)), dtype=np.float64)
    if right_length.all():
        values = itertools.chain.from_iterable(tx.v for tx in txs)
        table[:, :N_PCA] = np.fromiter(values, dtype=np.float64, count=n * N_PCA).reshape(n, N_PCA)
    else:
        kept = np.flatnonzero(right_length)
        values = itertools.chain.from_iterable(txs[i].v for i in kept.tolist())
        table[kept, :N_PCA] = np.fromiter(values, dtype=np.float64, count=len(kept) * N_PCA).reshape(-1, N_PCA)
    for column, value_of in _SCALAR_COLUMNS:
        table[:, column] = list(map(value_of, txs))
    return table


def invalid_feature_rows(matrix: np.ndarray, names: Sequence[str]) -> dict[int, InvalidTransaction]:
    """``validate``'s value rules over a feature matrix ``[n, len(names)]`` (columnar callers), in bulk.

    A row fails on its first non-finite value (field: the feature's name), else
    its first value beyond the magnitude bounds (|V| > MAX_ABS_V, Amount >
    MAX_AMOUNT), else a negative Amount, with ``validate``'s reasons; returns the errors by row.
    """
    finite = np.isfinite(matrix)
    amount = list(names).index(features.AMOUNT) if features.AMOUNT in names else None
    bounds = np.array(
        [features.BY_NAME[name].max_abs if name in features.BY_NAME else MAX_ABS_V for name in names], dtype=np.float64
    )
    with np.errstate(invalid="ignore"):
        too_large = np.abs(matrix) > bounds
        negative = matrix[:, amount] < 0 if amount is not None else np.zeros(len(matrix), dtype=bool)
    bad = ~finite.all(axis=1) | too_large.any(axis=1) | negative
    errors: dict[int, InvalidTransaction] = {}
    for i in np.flatnonzero(bad).tolist():
        nonfinite = np.flatnonzero(~finite[i])
        large = np.flatnonzero(too_large[i])
        if len(nonfinite):
            j = int(nonfinite[0])
            errors[i] = InvalidTransaction(names[j], f"not a finite number: {float(matrix[i, j])}")
        elif len(large):
            j = int(large[0])
            errors[i] = InvalidTransaction(names[j], _too_large(float(matrix[i, j]), float(bounds[j])))
        else:
            errors[i] = InvalidTransaction(features.AMOUNT, f"negative amount {float(matrix[i, amount])}")
    return errors


@functools.lru_cache(maxsize=64)
def _feature_columns(names: tuple[str, ...]) -> list[int]:
    """Each feature's column in the raw feature table built by feature_matrix (``features.FEATURES`` order)."""
    columns = []
    for name in names:
        if name not in _COLUMN:
            raise InvalidTransaction(name, "model feature not present in the Transaction schema")
        columns.append(_COLUMN[name])
    return columns


def _csv_features(row: Mapping[str, str | None]) -> dict[str, Any]:
    """The Transaction fields of the feature table's columns: scalar ones first, then the repeated ``v``."""
    fields: dict[str, Any] = {}
    for f in _CSV_ORDER:
        value = _csv_float(row, f.name)
        if f.index is None:
            fields[f.proto_field] = value
        else:
            fields.setdefault(f.proto_field, []).append(value)
    return fields


def from_csv_row(
    row: Mapping[str, str | None],
    *,
    row_number: int,
    epoch: datetime = DEFAULT_EPOCH,
    id_prefix: str = "row",
) -> Transaction:
    """Builds a Transaction from a Kaggle-schema CSV row (columns by header name).

    Rows without card_id/merchant_id (the Kaggle file has none) get ids derived
    from the row number; transaction ids are ``<id_prefix>-<row_number>`` unless
    the file has a transaction_id column.
    """
    time_s = _csv_float(row, features.TIME)
    if time_s < 0:
        raise InvalidTransaction(features.TIME, f"negative time {time_s} (seconds since the file's first row)")
    tx = Transaction(
        transaction_id=_csv_text(row, features.TRANSACTION_ID) or f"{id_prefix}-{row_number}",
        card_id=_csv_text(row, features.CARD_ID) or f"card-{row_number % 10_000:05d}",
        merchant_id=_csv_text(row, features.MERCHANT_ID) or "unknown",
        **_csv_features(row),
    )
    try:
        tx.event_time.FromDatetime(epoch + timedelta(seconds=time_s))
    except (OverflowError, ValueError):
        raise InvalidTransaction(features.TIME, f"{time_s} seconds after {epoch.isoformat()} is out of range") from None
    label = row.get(features.LABEL)
    if label is not None and label.strip() != "":
        try:
            value = float(label)
        except ValueError:
            raise InvalidTransaction(features.LABEL, f"not a number: {label!r}") from None
        if value not in (0.0, 1.0):
            raise InvalidTransaction(features.LABEL, f"expected 0 or 1, got {label.strip()!r}")
        tx.label = int(value)
    try:
        validate(tx)
    except InvalidTransaction as exc:
        raise InvalidTransaction(_csv_name(exc.field), exc.reason) from None
    return tx


def _csv_text(row: Mapping[str, str | None], column: str) -> str:
    value = row.get(column)
    return value.strip() if value else ""


def _csv_float(row: Mapping[str, str | None], column: str) -> float:
    raw = row.get(column)
    if raw is None:
        raise InvalidTransaction(column, "missing column")
    try:
        value = float(raw)
    except ValueError:
        raise InvalidTransaction(column, f"not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise InvalidTransaction(column, f"not a finite number: {raw!r}")
    return value


def _csv_name(field: str) -> str:
    if field.startswith("v["):
        return field.split("(")[-1].rstrip(")")
    return {"amount": features.AMOUNT, "label": features.LABEL}.get(field, field)
