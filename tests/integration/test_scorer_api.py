"""FraudScorer on a real grpc.aio server on loopback, serving the model from a quick real train."""

from __future__ import annotations

import logging
import math
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from fraudscore import model as model_lib
from fraudscore import schema
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.v1.transaction_pb2 import Transaction
from scorer import columns
from tests.integration.scorer_support import ServerThread, config, copy_base, source_model, transactions

pytestmark = pytest.mark.integration
MAX_ROWS = 50
MAX_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    base = copy_base(source_model(request), tmp_path_factory.mktemp("api") / "model")
    thread = ServerThread(config(base, metrics_port=0, max_request_rows=MAX_ROWS, max_message_bytes=MAX_BYTES))
    thread.wait_serving()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def stub(server: ServerThread) -> Iterator[scorer_pb2_grpc.FraudScorerStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield scorer_pb2_grpc.FraudScorerStub(channel)


@pytest.fixture(scope="module")
def txs(request: pytest.FixtureRequest) -> list[Transaction]:
    return transactions(Path(request.getfixturevalue("train_csv")), 40)


@pytest.fixture(scope="module")
def offline(server: ServerThread) -> model_lib.LoadedModel:
    """The same version loaded on its own, outside the server."""
    return model_lib.load(server.running.registry.base)


def test_score_matches_offline_score(stub, txs, offline) -> None:
    from trainer.evaluate import offline_errors

    rows = np.array([schema.feature_row(tx, offline.features) for tx in txs], np.float32)
    expected = offline.score(rows, explain=True)
    # The trainer's own offline scoring (Keras model + tf.Transform outside the SavedModel) agrees too.
    trainer_errors = offline_errors(rows, offline.path)
    for i, tx in enumerate(txs[:10]):
        r = stub.Score(pb.ScoreRequest(transaction=tx), timeout=10)
        assert r.transaction_id == tx.transaction_id
        assert r.model_version == offline.version
        assert r.threshold == pytest.approx(offline.threshold)
        assert r.reconstruction_error == pytest.approx(float(expected.reconstruction_error[i]), rel=1e-5, abs=1e-9)
        assert r.reconstruction_error == pytest.approx(float(trainer_errors[i]), rel=1e-4, abs=1e-7)
        assert r.is_anomaly == bool(expected.is_anomaly[i])
        assert r.out_of_range_features == int(expected.out_of_range_count[i])
        order, shares, has = model_lib.top_features(expected, 3)  # occlusion: each a share of the row's error
        assert [c.name for c in r.top_features] == ([offline.features[j] for j in order[i]] if has[i] else [])
        assert [c.share for c in r.top_features] == pytest.approx(shares[i][: len(r.top_features)], rel=1e-5)
        assert all(0 <= c.share <= 1 for c in r.top_features)


def test_score_batch_reports_bad_rows_and_scores_good_ones(stub, txs) -> None:
    bad_nan = Transaction()
    bad_nan.CopyFrom(txs[1])
    bad_nan.v[4] = math.nan
    bad_short = Transaction()
    bad_short.CopyFrom(txs[3])
    del bad_short.v[-1]
    batch = [txs[0], bad_nan, txs[2], bad_short, txs[4]]
    reply = stub.ScoreBatch(pb.ScoreBatchRequest(transactions=batch), timeout=10)
    assert (reply.scored, reply.failed) == (3, 2)
    kinds = [r.WhichOneof("result") for r in reply.results]
    assert kinds == ["score", "error", "score", "error", "score"]
    assert (reply.results[1].error.index, reply.results[1].error.field) == (1, "v[4] (V5)")
    assert "finite" in reply.results[1].error.reason
    assert reply.results[3].error.field == "v" and "expected 28 values" in reply.results[3].error.reason
    for i in (0, 2, 4):
        single = stub.Score(pb.ScoreRequest(transaction=batch[i]), timeout=10)
        assert reply.results[i].score.transaction_id == batch[i].transaction_id
        assert reply.results[i].score.reconstruction_error == pytest.approx(single.reconstruction_error, rel=1e-5)


def test_score_stream_answers_in_order(stub, txs) -> None:
    replies = list(stub.ScoreStream(iter([pb.ScoreRequest(transaction=tx) for tx in txs[:15]]), timeout=20))
    assert [r.transaction_id for r in replies] == [tx.transaction_id for tx in txs[:15]]
    assert all(r.reconstruction_error > 0 for r in replies)


def test_get_model_info_comes_from_the_card(stub, offline) -> None:
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    card = offline.card
    assert (info.name, info.version, info.threshold_policy) == (card.name, card.version, card.threshold_policy)
    assert info.threshold == pytest.approx(card.threshold)
    assert tuple(info.features) == card.features
    assert dict(info.metrics) == pytest.approx(card.metrics)
    assert list(info.loaded_versions) == [card.version] and not info.refused_versions
    # The normal range of each feature and the envelope limit, from the card's statistics and envelope.
    stats = card.raw["statistics"]
    assert [n.feature for n in info.normal_ranges] == list(card.features)
    for n in info.normal_ranges:
        assert (n.p01, n.median, n.p99) == pytest.approx(tuple([stats[n.feature][k] for k in ("p01", "median", "p99")]))
        assert n.p01 <= n.median <= n.p99
    assert info.envelope_limit == pytest.approx(card.raw["envelope"]["limit_widths"]) and info.envelope_limit > 0
    # The trained model compiles to the LiteRT fast path and passes its load-time check against TensorFlow.
    assert offline.fast_path.runtime == info.runtime == "litert"
    assert "agrees with TensorFlow" in info.runtime_detail


def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def _modified(tx: Transaction, **changes) -> Transaction:
    out = Transaction()
    out.CopyFrom(tx)
    for name, value in changes.items():
        if name == "v":
            del out.v[:]
            out.v.extend(value)
        elif name == "clear":
            out.ClearField(value)
        else:
            setattr(out, name, value)
    return out


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"v": [0.1] * 27}, "transaction.v: expected 28 values"),
        ({"v": []}, "transaction.v: expected 28 values"),
        ({"v": [0.1] * 3 + [math.nan] + [0.1] * 24}, "transaction.v[3] (V4): not a finite number"),
        ({"v": [math.inf] + [0.1] * 27}, "transaction.v[0] (V1): not a finite number"),
        ({"amount": math.inf}, "transaction.amount: not a finite number"),
        ({"amount": -3.0}, "transaction.amount: negative"),
        ({"clear": "transaction_id"}, "transaction.transaction_id: missing"),
        ({"clear": "event_time"}, "transaction.event_time: missing"),
        ({"clear": "amount"}, "transaction.amount: missing"),
        ({"clear": "card_id"}, "transaction.card_id: missing"),
    ],
)
def test_bad_transaction_is_invalid_argument_naming_the_field(stub, txs, changes, field) -> None:
    code, details = _status(lambda: stub.Score(pb.ScoreRequest(transaction=_modified(txs[0], **changes)), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(field)


def test_bad_requests_get_the_right_code_and_field(stub, txs, offline) -> None:
    cases = [
        (lambda: stub.Score(pb.ScoreRequest(), timeout=10), grpc.StatusCode.INVALID_ARGUMENT, "transaction: missing"),
        (
            lambda: stub.ScoreBatch(pb.ScoreBatchRequest(), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
            "transactions: empty",
        ),
        (
            lambda: stub.ScoreBatch(pb.ScoreBatchRequest(transactions=[txs[0]] * (MAX_ROWS + 1)), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"transactions: {MAX_ROWS + 1} rows, limit {MAX_ROWS}",
        ),
        (
            lambda: stub.Score(pb.ScoreRequest(transaction=txs[0], model_version=offline.version + 99), timeout=10),
            grpc.StatusCode.NOT_FOUND,
            f"model_version: version {offline.version + 99} is not loaded",
        ),
        (
            lambda: stub.ScoreBatch(pb.ScoreBatchRequest(transactions=[txs[0]], model_version=999), timeout=10),
            grpc.StatusCode.NOT_FOUND,
            "model_version:",
        ),
    ]
    for call, want_code, want_details in cases:
        code, details = _status(call)
        assert code == want_code, details
        assert details.startswith(want_details)


def test_oversized_message_is_refused_and_server_keeps_serving(stub, txs) -> None:
    huge = _modified(txs[0], transaction_id="x" * (MAX_BYTES + 1))
    code, _ = _status(lambda: stub.Score(pb.ScoreRequest(transaction=huge), timeout=10))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Score(pb.ScoreRequest(transaction=txs[0]), timeout=10).transaction_id == txs[0].transaction_id


def test_pinned_version_is_served(stub, txs, offline) -> None:
    r = stub.Score(pb.ScoreRequest(transaction=txs[0], model_version=offline.version), timeout=10)
    assert r.model_version == offline.version


def test_metrics_page_counts_requests(server, stub, txs) -> None:
    stub.Score(pb.ScoreRequest(transaction=txs[0]), timeout=10)
    with pytest.raises(grpc.RpcError):
        stub.Score(pb.ScoreRequest(), timeout=10)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.running.metrics_port}/metrics", timeout=10).read().decode()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and line[0] != "#"
    }
    version = server.running.registry.current.version
    assert values['fraudscore_scorer_requests_total{code="OK",method="Score"}'] >= 1
    assert values['fraudscore_scorer_requests_total{code="INVALID_ARGUMENT",method="Score"}'] >= 1
    assert values['fraudscore_scorer_request_latency_seconds_count{method="Score"}'] >= 2
    assert values["fraudscore_scorer_scored_total"] >= 1
    assert values["fraudscore_scorer_batch_size_count"] >= 1
    assert values["fraudscore_reconstruction_error_count"] == values["fraudscore_scorer_scored_total"]
    name = server.running.registry.current.card.name
    assert values[f'fraudscore_model_info{{model="{name}",version="{version}"}}'] == 1
    for name in ("anomalies_total", "reloads_total"):
        assert f"fraudscore_scorer_{name}" in text or f"fraudscore_model_{name}" in text
    assert "fraudscore_out_of_range_features_total" in text and "fraudscore_model_reload_failures_total" in text


def test_reflection_describes_the_service(server) -> None:
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(server.target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"fraudscore.v1.FraudScorer", "grpc.health.v1.Health"} <= services
        service = DescriptorPool(database).FindServiceByName("fraudscore.v1.FraudScorer")
        assert {m.name for m in service.methods} == {
            "Score",
            "ScoreBatch",
            "ScoreStream",
            "ScoreColumns",
            "GetModelInfo",
        }
        assert (
            service.methods_by_name["Score"].input_type.fields_by_name["transaction"].message_type.name == "Transaction"
        )


def test_score_stream_ends_at_a_bad_request_naming_the_field(stub, txs) -> None:
    bad = _modified(txs[1], v=[0.0] * 5)
    replies = stub.ScoreStream(
        iter([pb.ScoreRequest(transaction=txs[0]), pb.ScoreRequest(transaction=bad)]), timeout=10
    )
    assert next(replies).transaction_id == txs[0].transaction_id
    with pytest.raises(grpc.RpcError) as caught:
        next(replies)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("transaction.v: expected 28 values")


def _truncated(message) -> bytes:
    return message.SerializeToString()[:-3]  # cut inside the last field


# A Transaction whose packed `v` is 3 bytes long: not a whole number of doubles.
_PACKED_V_3_BYTES = b"\x0a\x05\x32\x03abc"
_GARBAGE = b"\xff\xff\xff\xff\xff"


def _malformed_cases() -> list[tuple[str, bytes]]:
    tx = Transaction(transaction_id="t-1", card_id="c-1", amount=1.0, v=[0.5] * 28)
    tx.event_time.FromSeconds(1_700_000_000)
    columns = pb.ScoreColumnsRequest(transaction_ids=["a"], feature_names=["V1"], values=b"\0" * 4, rows=1)
    return [
        ("Score", _GARBAGE),
        ("Score", _truncated(pb.ScoreRequest(transaction=tx))),
        ("Score", _PACKED_V_3_BYTES),
        ("ScoreBatch", _GARBAGE),
        ("ScoreBatch", _truncated(pb.ScoreBatchRequest(transactions=[tx, tx]))),
        ("ScoreBatch", _PACKED_V_3_BYTES),
        ("ScoreColumns", _GARBAGE),
        ("ScoreColumns", _truncated(columns)),
        ("GetModelInfo", _GARBAGE),
    ]


@pytest.mark.parametrize(("method", "data"), _malformed_cases())
def test_malformed_protobuf_is_invalid_argument_with_one_log_line(server, stub, txs, caplog, method, data) -> None:
    caplog.set_level("INFO")
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(f"/fraudscore.v1.FraudScorer/{method}")  # bytes as they are
        code, details = _status(lambda: call(data, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("request: malformed protobuf, not a valid fraudscore.v1.")
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in records] == ["scorer.servicer"], [r.getMessage() for r in records]
    assert records[0].exc_info is None and method in records[0].getMessage()
    assert stub.Score(pb.ScoreRequest(transaction=txs[0]), timeout=10).transaction_id == txs[0].transaction_id


def test_malformed_message_in_a_stream_ends_it_with_invalid_argument(server, txs, caplog) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stream = channel.stream_stream("/fraudscore.v1.FraudScorer/ScoreStream")
        replies = stream(iter([pb.ScoreRequest(transaction=txs[0]).SerializeToString(), _GARBAGE]), timeout=10)
        assert pb.ScoreResponse.FromString(next(replies)).transaction_id == txs[0].transaction_id
        with pytest.raises(grpc.RpcError) as caught:
            next(replies)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("request: malformed protobuf, not a valid fraudscore.v1.ScoreRequest")
    assert not [r for r in caplog.records if r.exc_info is not None]


def test_model_version_with_the_wrong_wire_type_is_refused_naming_it(server, txs) -> None:
    good = pb.ScoreRequest(transaction=txs[0]).SerializeToString()
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary("/fraudscore.v1.FraudScorer/Score")
        # model_version (field 2, int64) sent length-delimited: protobuf alone would drop it and score.
        code, details = _status(lambda: call(good + b"\x12\x0299", timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "model_version: wrong wire type: sent as length-delimited, the field is int64"
        columns_call = channel.unary_unary("/fraudscore.v1.FraudScorer/ScoreColumns")
        request = pb.ScoreColumnsRequest(transaction_ids=["a"], feature_names=["V1"], values=b"\0" * 4, rows=1)
        code, details = _status(lambda: columns_call(request.SerializeToString() + b"\x2a\x01\x02", timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("model_version: wrong wire type")


def test_absurd_magnitudes_are_refused_naming_the_field(stub, txs, offline) -> None:
    code, details = _status(
        lambda: stub.Score(pb.ScoreRequest(transaction=_modified(txs[0], v=[1e272] + [0.1] * 27)), timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "transaction.v[0] (V1): magnitude 1e+272 is above the limit 1e+06"
    code, details = _status(lambda: stub.Score(pb.ScoreRequest(transaction=_modified(txs[0], amount=1e12)), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("transaction.amount: magnitude 1e+12")
    batch = [txs[0], _modified(txs[1], v=[0.1] * 27 + [-1e272]), txs[2]]
    reply = stub.ScoreBatch(pb.ScoreBatchRequest(transactions=batch), timeout=10)
    assert (reply.scored, reply.failed) == (2, 1)
    assert (reply.results[1].error.field, reply.results[1].error.reason) == (
        "v[27] (V28)",
        "magnitude -1e+272 is above the limit 1e+06",
    )
    matrix = np.array([schema.feature_row(tx, offline.features) for tx in txs[:3]], dtype=np.float32)
    matrix[1, list(offline.features).index("V3")] = 1e30
    reply = stub.ScoreColumns(
        columns.request_of([tx.transaction_id for tx in txs[:3]], offline.features, matrix), timeout=10
    )
    assert (reply.scored, reply.failed) == (2, 1)
    assert (reply.errors[0].index, reply.errors[0].field) == (1, "V3")
    assert reply.errors[0].reason.startswith("magnitude 1e+30 is above the limit")


def test_batch_row_with_the_wrong_wire_type_fails_alone(server, txs) -> None:
    def embedded(payload: bytes) -> bytes:  # field 1 (transactions), length-delimited
        return b"\x0a" + _varint(len(payload)) + payload

    rows = [tx.SerializeToString() for tx in txs[:3]]
    rows[1] += b"\x28\x07"  # amount (a double) sent as a varint
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary("/fraudscore.v1.FraudScorer/ScoreBatch")
        reply = pb.ScoreBatchResponse.FromString(call(b"".join(embedded(r) for r in rows), timeout=10))
    assert (reply.scored, reply.failed) == (2, 1)
    error = reply.results[1].error
    assert (error.index, error.field, error.reason) == (
        1,
        "amount",
        "wrong wire type: sent as varint, the field is double",
    )
    assert [r.score.transaction_id for r in (reply.results[0], reply.results[2])] == [
        txs[0].transaction_id,
        txs[2].transaction_id,
    ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])
