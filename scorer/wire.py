"""ScoreBatch replies encoded in bulk by TensorFlow's ``encode_proto`` (C++), not message by message.

A 1,000-row reply is 4,000 messages; filling them from Python in upb costs
more than the model call (README, Benchmarks). ``tf.io.encode_proto`` serializes a
whole column of messages from arrays in one op, given the messages'
descriptors, so the reply is built in four ops and parsed back once.
:func:`scorer.responses.batch_response` stays the plain-Python reference; a
unit test holds the two equal message for message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from fraudscore.model import LoadedModel, Scores, top_features
from fraudscore.schema import InvalidTransaction
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1.transaction_pb2 import Transaction
from scorer.responses import TOP_K, names_of

_PACKAGE = pb.DESCRIPTOR.package
_SCORE_FIELDS = [
    "transaction_id",
    "reconstruction_error",
    "threshold",
    "is_anomaly",
    "top_features",
    "out_of_range_features",
    "model_version",
]


def _descriptor_set() -> bytes:
    """scorer.proto and everything it imports, as a serialized FileDescriptorSet (dependencies first)."""
    files: list[FileDescriptor] = []

    def visit(fd: FileDescriptor) -> None:
        if fd not in files:
            for dep in fd.dependencies:
                visit(dep)
            files.append(fd)

    visit(pb.DESCRIPTOR)
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in files:
        fd.CopyToProto(fds.file.add())
    return fds.SerializeToString()


class ReplyEncoder:
    """Builds ScoreBatchResponse messages with ``tf.io.encode_proto``; thread-safe (no state after init)."""

    def __init__(self) -> None:
        import tensorflow as tf  # the server has it loaded already (the model)

        self._tf = tf
        self._source = b"bytes://" + _descriptor_set()

    def _encode(self, message: str, sizes: Any, values: list[Any], fields: list[str]) -> Any:
        return self._tf.io.encode_proto(
            sizes, values, fields, f"{_PACKAGE}.{message}", descriptor_source=self._source
        ).numpy()

    def batch_response(
        self,
        txs: Sequence[Transaction],
        errors: Mapping[int, InvalidTransaction],
        model: LoadedModel,
        scores: Scores | None,
    ) -> pb.ScoreBatchResponse:
        """The same reply as :func:`scorer.responses.batch_response`."""
        n = len(txs)
        results = np.empty(n, dtype=object)
        for i, exc in errors.items():
            error = pb.RowError(index=i, transaction_id=txs[i].transaction_id, field=exc.field, reason=exc.reason)
            results[i] = pb.RowResult(error=error).SerializeToString()
        if scores is not None and len(scores):
            good = np.flatnonzero(np.isin(np.arange(n), list(errors), invert=True)) if errors else np.arange(n)
            results[good] = self._scored_rows([txs[i].transaction_id for i in good.tolist()], model, scores)
        one = np.ones((1, 3), dtype=np.int32)
        one[0, 0] = n
        reply = self._encode(
            "ScoreBatchResponse",
            one,
            [
                results.reshape(1, n),
                np.array([[n - len(errors)]], dtype=np.int32),
                np.array([[len(errors)]], dtype=np.int32),
            ],
            ["results", "scored", "failed"],
        )
        return pb.ScoreBatchResponse.FromString(reply[0])

    def _scored_rows(self, ids: list[str], model: LoadedModel, scores: Scores) -> Any:
        """Serialized ``RowResult(score=...)`` of each scored row, as an object array of bytes."""
        m = len(ids)
        order, shares, has_error = top_features(scores, TOP_K)
        k = order.shape[1]
        top = self._encode(
            "FeatureContribution",
            np.ones((m, k, 2), dtype=np.int32),
            [names_of(model.features)[order][..., None], shares[..., None]],
            ["name", "share"],
        )
        sizes = np.ones((m, len(_SCORE_FIELDS)), dtype=np.int32)
        sizes[:, _SCORE_FIELDS.index("top_features")] = np.where(has_error, k, 0)
        column = np.ones((m, 1))
        values = [
            np.array(ids, dtype=object)[:, None],
            scores.reconstruction_error.astype(np.float64)[:, None],
            model.threshold * column,
            scores.is_anomaly.astype(bool)[:, None],
            top,
            scores.out_of_range_count.astype(np.int32)[:, None],
            np.full((m, 1), model.version, dtype=np.int64),
        ]
        fields = _SCORE_FIELDS
        if scores.fraud_probability is not None:  # one value per row: present (even 0.0), as the proto says
            sizes = np.concatenate([sizes, np.ones((m, 1), dtype=np.int32)], axis=1)
            values.append(scores.fraud_probability.astype(np.float64)[:, None])
            fields = [*_SCORE_FIELDS, "fraud_probability"]
        score = self._encode("ScoreResponse", sizes, values, fields)
        return self._encode("RowResult", np.ones((m, 1), dtype=np.int32), [score[:, None]], ["score"])
