"""ScoreColumns on a real server with the quickly trained model: same scores as ScoreBatch and offline."""

from __future__ import annotations

import argparse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fraudscore import model as model_lib
from fraudscore import schema
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.v1.transaction_pb2 import Transaction
from scorer import client, columns
from scorer.servicer import INLINE_COLUMNS_ROWS
from tests.integration.scorer_support import ServerThread, config, copy_base, source_model, transactions

pytestmark = pytest.mark.integration
MAX_ROWS = 50


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    base = copy_base(source_model(request), tmp_path_factory.mktemp("columns") / "model")
    thread = ServerThread(config(base, metrics_port=0, max_request_rows=MAX_ROWS))
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
    return model_lib.load(server.running.registry.base)


def _request(txs: list[Transaction], names: tuple[str, ...], **changes: Any) -> pb.ScoreColumnsRequest:
    request = columns.request_of([tx.transaction_id for tx in txs], names, schema.feature_matrix(txs, names))
    for key, value in changes.items():
        if isinstance(value, list):
            del getattr(request, key)[:]
            getattr(request, key).extend(value)
        else:
            setattr(request, key, value)
    return request


def _arrays(reply: pb.ScoreColumnsResponse) -> dict[str, np.ndarray]:
    n, k = len(reply.transaction_ids), reply.top_k
    return {
        "errors": np.frombuffer(reply.reconstruction_errors, "<f4"),
        "anomaly": np.frombuffer(reply.is_anomaly, "u1"),
        "oor": np.frombuffer(reply.out_of_range_counts, "<i4"),
        "top": np.frombuffer(reply.top_feature_indices, "<i4").reshape(n, k),
        "shares": np.frombuffer(reply.top_feature_shares, "<f4").reshape(n, k),
    }


def _far(tx: Transaction) -> Transaction:
    """``tx`` with V1..V28 x20: beyond the training normals' envelope, so flagged whatever its score."""
    out = Transaction()
    out.CopyFrom(tx)
    out.v[:] = [20 * v for v in tx.v]
    return out


def test_scores_equal_offline_and_score_batch(stub, txs, offline) -> None:
    txs = [_far(tx) if i % 9 == 4 else tx for i, tx in enumerate(txs)]  # some flagged rows among them
    reply = stub.ScoreColumns(_request(txs, offline.features), timeout=10)
    got = _arrays(reply)
    rows = np.array([schema.feature_row(tx, offline.features) for tx in txs], np.float32)
    want = offline.score(rows, explain=True, only_flagged=True)
    assert list(reply.transaction_ids) == [tx.transaction_id for tx in txs]
    assert (reply.scored, reply.failed, list(reply.errors)) == (len(txs), 0, [])
    assert reply.model_version == offline.version
    assert reply.threshold == pytest.approx(offline.threshold)
    assert list(reply.feature_names) == list(offline.features)
    np.testing.assert_allclose(got["errors"], want.reconstruction_error, rtol=1e-5, atol=1e-9)
    assert got["anomaly"].astype(bool).tolist() == want.is_anomaly.tolist()
    assert got["oor"].tolist() == want.out_of_range_count.tolist()
    order, shares, has = model_lib.top_features(want, reply.top_k)  # occlusion: shares of the row's error
    np.testing.assert_array_equal(got["top"], np.where(has[:, None], order, -1))
    np.testing.assert_allclose(got["shares"], np.where(has[:, None], shares, 0.0), rtol=1e-5)
    # Top features for the flagged rows only (bulk calls explain no other): -1 / 0 for the rest.
    flagged = want.is_anomaly
    assert 0 < flagged.sum() < len(txs), "the test needs flagged and unflagged rows"
    assert (got["top"][~flagged] == -1).all() and (got["shares"][~flagged] == 0).all()
    assert (got["top"][flagged] >= 0).all()
    batch = stub.ScoreBatch(pb.ScoreBatchRequest(transactions=txs), timeout=10)
    for row, result, explained in zip(columns.responses(reply), batch.results, flagged, strict=True):
        assert isinstance(row, pb.ScoreResponse)
        s = result.score
        assert row.transaction_id == s.transaction_id
        assert row.reconstruction_error == pytest.approx(s.reconstruction_error, rel=1e-6)
        assert (row.is_anomaly, row.out_of_range_features, row.model_version) == (
            s.is_anomaly,
            s.out_of_range_features,
            s.model_version,
        )
        if not explained:  # ScoreBatch explains every row, ScoreColumns the flagged ones
            assert list(row.top_features) == [] and len(s.top_features) > 0
            continue
        assert [c.name for c in row.top_features] == [c.name for c in s.top_features]
        assert [c.share for c in row.top_features] == pytest.approx([c.share for c in s.top_features], rel=1e-6)


def test_feature_order_does_not_matter(stub, txs, offline) -> None:
    names = offline.features
    permuted = tuple(np.random.default_rng(3).permutation(names).tolist())
    assert permuted != names
    a = stub.ScoreColumns(_request(txs, names), timeout=10)
    b = stub.ScoreColumns(_request(txs, permuted), timeout=10)
    for key, value in _arrays(a).items():
        np.testing.assert_array_equal(_arrays(b)[key], value, err_msg=key)
    assert list(b.feature_names) == list(names)


def test_bad_rows_are_reported_and_the_others_scored(stub, txs, offline) -> None:
    names = offline.features
    matrix = schema.feature_matrix(txs[:6], names)
    matrix[1, names.index("V5")] = np.nan
    matrix[3, names.index("V2")] = np.inf
    matrix[4, names.index("Amount")] = -3.0
    ids = [tx.transaction_id for tx in txs[:6]]
    reply = stub.ScoreColumns(columns.request_of(ids, names, matrix), timeout=10)
    assert [(e.index, e.transaction_id, e.field) for e in reply.errors] == [
        (1, ids[1], "V5"),
        (3, ids[3], "V2"),
        (4, ids[4], "Amount"),
    ]
    assert "not a finite number" in reply.errors[0].reason and "negative" in reply.errors[2].reason
    assert (reply.scored, reply.failed) == (3, 3)
    got = _arrays(reply)
    assert np.isnan(got["errors"][[1, 3, 4]]).all()
    assert not got["anomaly"][[1, 3, 4]].any()
    assert (got["top"][[1, 3, 4]] == -1).all()
    good = [0, 2, 5]
    want = offline.score(matrix[good])
    np.testing.assert_allclose(got["errors"][good], want.reconstruction_error, rtol=1e-5, atol=1e-9)


def _status(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()  # type: ignore[attr-defined]


def test_malformed_requests_are_invalid_argument_naming_the_field(stub, txs, offline) -> None:
    names = offline.features
    good = _request(txs[:4], names)
    too_many = txs * 2
    cases = [
        (_request(txs[:4], names, values=good.values[:-4]), f"values: {len(good.values) - 4} bytes, expected"),
        (_request(txs[:4], names, rows=5), "transaction_ids: expected 5 ids"),
        (_request(txs[:4], names, rows=0), "rows: must be at least 1"),
        (_request(too_many[: MAX_ROWS + 1], names), f"rows: {MAX_ROWS + 1} rows, limit {MAX_ROWS}"),
        (_request(txs[:4], names, feature_names=[*names[:-1], "Bogus"]), "feature_names: unknown feature 'Bogus'"),
        (_request(txs[:4], names, feature_names=list(names[:-1])), "feature_names: missing feature"),
        (_request(txs[:4], names, feature_names=[*names[:-1], names[0]]), f"feature_names: '{names[0]}' given twice"),
    ]
    for request, want in cases:
        code, details = _status(lambda r=request: stub.ScoreColumns(r, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith(want), details
    code, details = _status(lambda: stub.ScoreColumns(_request(txs[:2], names, model_version=99), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("model_version:")


def test_pinned_version_and_metrics(server, stub, txs, offline) -> None:
    reply = stub.ScoreColumns(_request(txs[:3], offline.features, model_version=offline.version), timeout=10)
    assert reply.model_version == offline.version
    with pytest.raises(grpc.RpcError):
        stub.ScoreColumns(_request(txs[:3], offline.features, rows=0), timeout=10)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.running.metrics_port}/metrics", timeout=10).read().decode()
    assert 'fraudscore_scorer_requests_total{code="OK",method="ScoreColumns"}' in text
    assert 'fraudscore_scorer_requests_total{code="INVALID_ARGUMENT",method="ScoreColumns"}' in text


def test_client_columns_prints_the_same_lines_as_score_batch(server, request, capsys) -> None:
    source = str(request.getfixturevalue("train_csv"))
    outputs = []
    for extra in ([], ["--columns"]):
        parser = argparse.ArgumentParser()
        client.add_arguments(parser)
        argv = ["--target", server.target, "--csv", source, "--limit", "7", "--batch-size", "3", *extra]
        assert client.main(parser.parse_args(argv)) == 0
        outputs.append(capsys.readouterr().out.splitlines())
    assert len(outputs[0]) == 7
    # The same lines, but ScoreColumns names top features for the flagged rows only (bulk calls explain no other).
    for by_columns, by_batch in zip(outputs[1], outputs[0], strict=True):
        if " normal " in by_batch:
            assert by_columns == by_batch.split(" top: ")[0] + " top: "
        else:
            assert by_columns == by_batch


def test_a_large_call_equals_offline(request, txs, offline, tmp_path) -> None:
    """A call over INLINE_COLUMNS_ROWS (scored on a thread; the fast path in chunks past its CHUNK_ROWS, the top
    features across rows): every row gets exactly what scoring it offline gives, bad rows in between included."""
    base = copy_base(source_model(request), tmp_path / "model")
    thread = ServerThread(config(base, max_request_rows=10_000))
    thread.wait_serving()
    try:
        names = offline.features
        rng = np.random.default_rng(11)
        seed = schema.feature_matrix(txs, names)
        n = 2 * INLINE_COLUMNS_ROWS + 37
        matrix = (seed[rng.integers(0, len(seed), n)] * rng.uniform(0.9, 1.1, (n, len(names)))).astype(np.float32)
        bad = [5, INLINE_COLUMNS_ROWS, n - 1]
        matrix[bad, names.index("Amount")] = -1.0  # a negative Amount: in `errors`, not scored
        ids = [f"big-{i}" for i in range(n)]
        with grpc.insecure_channel(thread.target) as channel:
            reply = scorer_pb2_grpc.FraudScorerStub(channel).ScoreColumns(
                columns.request_of(ids, names, matrix), timeout=60
            )
        assert list(reply.transaction_ids) == ids
        assert [(e.index, e.field) for e in reply.errors] == [(i, "Amount") for i in bad]
        good = np.setdiff1d(np.arange(n), bad)
        want = offline.score(matrix[good], explain=True, only_flagged=True)
        got = _arrays(reply)
        np.testing.assert_array_equal(got["errors"][good], want.reconstruction_error)
        assert np.isnan(got["errors"][bad]).all() and (got["top"][bad] == -1).all()
        np.testing.assert_array_equal(got["anomaly"][good].astype(bool), want.is_anomaly)
        order, shares, has = model_lib.top_features(want, reply.top_k)
        np.testing.assert_array_equal(got["top"][good], np.where(has[:, None], order, -1))
        np.testing.assert_array_equal(got["shares"][good], np.where(has[:, None], shares, 0.0).astype(np.float32))
        assert (reply.scored, reply.failed) == (n - len(bad), len(bad))
    finally:
        thread.close()


def test_scores_only_calls_leave_the_top_features_out(stub, txs, offline) -> None:
    names = offline.features
    ids = [tx.transaction_id for tx in txs]
    matrix = schema.feature_matrix(txs, names)
    full = stub.ScoreColumns(columns.request_of(ids, names, matrix), timeout=10)
    bare = stub.ScoreColumns(columns.request_of(ids, names, matrix, top_k=0), timeout=10)
    assert (bare.top_k, bare.top_feature_indices, bare.top_feature_shares) == (0, b"", b"")
    assert full.top_k == 3 and len(full.top_feature_indices) == len(txs) * 3 * 4
    for key in ("errors", "anomaly", "oor"):
        np.testing.assert_array_equal(_arrays(bare)[key], _arrays(full)[key], err_msg=key)
    assert list(bare.transaction_ids) == ids and bare.scored == len(txs)
    code, details = _status(lambda: stub.ScoreColumns(columns.request_of(ids, names, matrix, top_k=-1), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("top_k: must be 0..29"), details
