"""ScoreColumns: a batch as one float32 matrix in, per-row arrays out (pure helpers, no gRPC).

ScoreBatch carries one Transaction message per row, and reading 28,000 V
values out of 1,000 messages makes a Python object of each; with validation
and reply building that caps it near a quarter of the in-process signature's
rows/s. ScoreColumns carries the same rows the way TensorFlow Serving's
Predict carries tensors (``TensorProto.tensor_content``): ``np.frombuffer``
reads the matrix without touching each value, the value rules run as array
operations, and the reply is a handful of byte strings.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from fraudscore import features, schema
from fraudscore.features import MAX_ABS_V
from fraudscore.model import LoadedModel, Scores, top_features
from fraudscore.schema import InvalidTransaction
from fraudscore.v1 import scorer_pb2 as pb
from scorer.responses import TOP_K

# The wire types of the byte fields (see scorer.proto): little-endian whatever the machine.
FLOAT32 = np.dtype("<f4")
INT32 = np.dtype("<i4")
UINT8 = np.dtype("u1")


class BadRequest(ValueError):
    """A request that cannot be scored at all; ``field`` names the request field to fix."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Batch(NamedTuple):
    """A decoded request: the rows that pass the value rules, in the model's column order, and the others."""

    good: np.ndarray  # indices of the rows to score, ascending
    rows: np.ndarray  # float32 [len(good), F], the model's feature order
    errors: dict[int, InvalidTransaction]  # row index -> why it is not scored
    top_k: int  # top features per row in the reply (0: none), given for the flagged rows only


def check_shape(request: pb.ScoreColumnsRequest, max_rows: int) -> None:
    """The checks that need no model: row count and ids; raises BadRequest."""
    n = request.rows
    if n <= 0:
        raise BadRequest("rows", f"must be at least 1, got {n}")
    if n > max_rows:
        raise BadRequest("rows", f"{n} rows, limit {max_rows}")
    if len(request.transaction_ids) != n:
        raise BadRequest("transaction_ids", f"expected {n} ids (one per row), got {len(request.transaction_ids)}")


def column_order(given: tuple[str, ...], model_features: tuple[str, ...]) -> np.ndarray:
    """For each model feature, its column in the request; raises BadRequest naming a missing/unknown one."""
    position: dict[str, int] = {}
    for i, name in enumerate(given):
        if name in position:
            raise BadRequest("feature_names", f"{name!r} given twice")
        position[name] = i
    unknown = [name for name in given if name not in model_features]
    if unknown:
        raise BadRequest("feature_names", f"unknown feature {unknown[0]!r}; the model's are {list(model_features)}")
    missing = [name for name in model_features if name not in position]
    if missing:
        raise BadRequest("feature_names", f"missing feature {missing[0]!r}; the model's are {list(model_features)}")
    return np.array([position[name] for name in model_features], dtype=np.intp)


def top_k_of(request: pb.ScoreColumnsRequest, model: LoadedModel) -> int:
    """The top features per row the request asks for (absent: TOP_K); raises BadRequest."""
    if not request.HasField("top_k"):
        return min(TOP_K, len(model.features))
    k = request.top_k
    if not 0 <= k <= len(model.features):
        raise BadRequest("top_k", f"must be 0..{len(model.features)} (the model's features), got {k}")
    return k


def decode(request: pb.ScoreColumnsRequest, model: LoadedModel) -> Batch:
    """The request's matrix in the model's column order, split into rows to score and row errors."""
    k = top_k_of(request, model)
    order = column_order(tuple(request.feature_names), model.features)
    n, f = request.rows, len(order)
    expected = n * f * FLOAT32.itemsize
    if len(request.values) != expected:
        raise BadRequest(
            "values", f"{len(request.values)} bytes, expected rows x features x 4 = {n} x {f} x 4 = {expected}"
        )
    # A view of the request's bytes (no copy); reordered only when the client's column order is not the model's.
    matrix = np.frombuffer(request.values, dtype=FLOAT32).reshape(n, f)
    if not _is_identity(order):
        matrix = matrix[:, order]
    errors = {} if _plainly_valid(matrix, model.features) else schema.invalid_feature_rows(matrix, model.features)
    if not errors:
        return Batch(np.arange(n), matrix, errors, k)
    good = np.setdiff1d(np.arange(n), np.fromiter(errors, dtype=np.intp, count=len(errors)))
    return Batch(good, matrix[good], errors, k)


def _is_identity(order: np.ndarray) -> bool:
    return bool((order == np.arange(len(order))).all())


@functools.lru_cache(maxsize=16)
def _bounds(names: tuple[str, ...]) -> tuple[np.ndarray, int | None]:
    """Each column's magnitude bound (as schema.invalid_feature_rows) and the Amount column, if any."""
    exact = np.array(
        [features.BY_NAME[name].max_abs if name in features.BY_NAME else MAX_ABS_V for name in names], dtype=np.float64
    )
    # Compared in float32 (no float64 copy of the matrix); a bound float32 cannot hold is rounded down, so a value
    # this check passes always passes the exact one (one it fails is re-checked exactly).
    bounds = exact.astype(FLOAT32)
    bounds = np.where(bounds.astype(np.float64) > exact, np.nextafter(bounds, FLOAT32.type(0)), bounds)
    return bounds, names.index(features.AMOUNT) if features.AMOUNT in names else None


def _plainly_valid(matrix: np.ndarray, names: tuple[str, ...]) -> bool:
    """Whether every value passes the value rules, in one pass (NaN fails ``<=``); if not, the rows
    are checked one rule at a time by schema.invalid_feature_rows, which names each bad row's error."""
    bounds, amount = _bounds(names)
    if not (np.abs(matrix) <= bounds).all():
        return False
    return amount is None or not (matrix[:, amount] < 0).any()


def encode(
    request: pb.ScoreColumnsRequest, model: LoadedModel, batch: Batch, scores: Scores | None, *, echo_ids: bool = True
) -> pb.ScoreColumnsResponse:
    """The reply: each per-row output as one byte string, failed rows filled with NaN / 0 / -1.

    ``echo_ids=False`` leaves ``transaction_ids`` out, for a caller that appends :func:`ids_field` to the
    serialized reply instead.
    """
    n, k = request.rows, batch.top_k
    errors = np.full(n, np.nan, dtype=FLOAT32)
    anomaly = np.zeros(n, dtype=UINT8)
    out_of_range = np.zeros(n, dtype=INT32)
    indices = np.full((n, k), -1, dtype=INT32)
    shares = np.zeros((n, k), dtype=FLOAT32)
    probability = np.full(n, np.nan, dtype=FLOAT32) if model.has_fraud_probability else None
    if scores is not None and len(scores):
        # Every row scored (the usual case): slices, cheaper than index arrays.
        good = slice(None) if len(batch.good) == n else batch.good
        errors[good] = scores.reconstruction_error
        anomaly[good] = scores.is_anomaly
        out_of_range[good] = scores.out_of_range_count
        if k:  # top features asked for
            order, share, has_error = top_features(scores, k)
            if has_error.all():
                indices[good], shares[good] = order, share
            else:
                indices[good] = np.where(has_error[:, None], order, -1)
                shares[good] = np.where(has_error[:, None], share, 0.0)
        if probability is not None and scores.fraud_probability is not None:
            probability[good] = scores.fraud_probability
    return pb.ScoreColumnsResponse(
        transaction_ids=request.transaction_ids if echo_ids else (),
        reconstruction_errors=errors.tobytes(),
        is_anomaly=anomaly.tobytes(),
        out_of_range_counts=out_of_range.tobytes(),
        top_feature_indices=indices.tobytes(),
        top_feature_shares=shares.tobytes(),
        top_k=k,
        feature_names=model.features,
        threshold=model.threshold,
        model_version=model.version,
        errors=row_errors(request, batch.errors),
        scored=n - len(batch.errors),
        failed=len(batch.errors),
        fraud_probabilities=b"" if probability is None else probability.tobytes(),
    )


# Every ScoreColumnsRequest field but the ids, from its descriptor (a field added later is cleared too).
_NOT_IDS = tuple(f.name for f in pb.ScoreColumnsRequest.DESCRIPTOR.fields if f.name != "transaction_ids")


def ids_field(request: pb.ScoreColumnsRequest) -> bytes:
    """The request's ``transaction_ids`` serialized, which are also the reply's: both messages number the
    field 1, and protobuf parses concatenated messages as one (repeated fields appended), so a serialized
    reply without ids + these bytes is the reply with them.

    Copying the ids from the request to the reply message turns each into a Python string and back (0.7 ms
    of a 10,000-row call); this serializes them straight from the parsed request (~0.05 ms). It CLEARS the
    request's other fields to do so, every one the message has and any unknown to this server (they would
    land in the reply under the reply's own field numbers): call it last, once decode and encode are done.
    """
    for name in _NOT_IDS:  # by name, not ListFields: that would copy the 1.2 MB of a 10,000-row `values` first
        request.ClearField(name)
    request.DiscardUnknownFields()
    return request.SerializeToString()


def row_errors(request: pb.ScoreColumnsRequest, errors: Mapping[int, InvalidTransaction]) -> list[pb.RowError]:
    ids = request.transaction_ids
    return [
        pb.RowError(index=i, transaction_id=ids[i], field=exc.field, reason=exc.reason)
        for i, exc in sorted(errors.items())
    ]


def request_of(
    ids: list[str],
    names: tuple[str, ...] | list[str],
    matrix: np.ndarray,
    model_version: int = 0,
    top_k: int | None = None,
) -> pb.ScoreColumnsRequest:
    """A ScoreColumnsRequest of a ``[rows, len(names)]`` matrix (for clients); ``top_k`` None: the server's 3."""
    matrix = np.ascontiguousarray(matrix, dtype=FLOAT32)
    if matrix.ndim != 2 or matrix.shape != (len(ids), len(names)):
        raise ValueError(f"matrix of shape {matrix.shape}, expected ({len(ids)}, {len(names)})")
    return pb.ScoreColumnsRequest(
        transaction_ids=ids,
        feature_names=list(names),
        values=matrix.tobytes(),
        rows=len(ids),
        model_version=model_version,
        top_k=top_k,
    )


def responses(reply: pb.ScoreColumnsResponse) -> list[pb.ScoreResponse | pb.RowError]:
    """The reply row by row, as ScoreBatch would give it (for clients that print or compare rows)."""
    n, k = len(reply.transaction_ids), reply.top_k
    errors = np.frombuffer(reply.reconstruction_errors, dtype=FLOAT32).tolist()
    anomaly = np.frombuffer(reply.is_anomaly, dtype=UINT8).tolist()
    out_of_range = np.frombuffer(reply.out_of_range_counts, dtype=INT32).tolist()
    indices = np.frombuffer(reply.top_feature_indices, dtype=INT32).reshape(n, k).tolist()
    shares = np.frombuffer(reply.top_feature_shares, dtype=FLOAT32).reshape(n, k).tolist()
    probability = np.frombuffer(reply.fraud_probabilities, dtype=FLOAT32).tolist() or None
    failed = {e.index: e for e in reply.errors}
    out: list[pb.ScoreResponse | pb.RowError] = []
    for i, tx_id in enumerate(reply.transaction_ids):
        if i in failed:
            out.append(failed[i])
            continue
        r = pb.ScoreResponse(
            transaction_id=tx_id,
            reconstruction_error=errors[i],
            threshold=reply.threshold,
            is_anomaly=bool(anomaly[i]),
            out_of_range_features=out_of_range[i],
            model_version=reply.model_version,
        )
        if probability is not None:
            r.fraud_probability = probability[i]
        for j, share in zip(indices[i], shares[i], strict=True):
            if j >= 0:
                r.top_features.add(name=reply.feature_names[j], share=share)
        out.append(r)
    return out
