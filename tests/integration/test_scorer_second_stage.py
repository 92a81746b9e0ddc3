"""The scorer serving a version with a second stage: every reply carries both scores, GetModelInfo says which
one the threshold applies to, and the version is picked up by hot reload while the scorer runs.

A real server on loopback serves the session's quick-trained model (version 1, no second stage); a second
stage fitted on the training CSV's labels is then derived into version 2 (``trainer.derive``) with the
threshold on ``fraud_probability``, and the running scorer loads it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from fraudscore import features, schema
from fraudscore.model import LoadedModel, load
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.v1.transaction_pb2 import Transaction
from scorer import client, columns
from tests.integration.scorer_support import ServerThread, config, copy_base, transactions, wait_for
from trainer import second_stage
from trainer.derive import derive_version

pytestmark = pytest.mark.integration

ROWS = 4000
THRESHOLD = 0.5
RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def base(trained_model_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_base(trained_model_base, tmp_path_factory.mktemp("second-stage") / "creditcard")


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[ServerThread]:
    thread = ServerThread(config(base))
    thread.wait_serving()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def staged(server: ServerThread, base: Path, train_csv: Path, trained_model: LoadedModel) -> LoadedModel:
    """Version 2 (derived with a second stage while the scorer runs), once the scorer serves it."""
    assert server.running.registry.current is not None and server.running.registry.current.version == 1
    frame = pd.read_csv(train_csv).iloc[:ROWS]
    x, y = frame[list(features.MODEL_FEATURES)].to_numpy(np.float32), frame["Class"].to_numpy(np.int8)
    stage = second_stage.fit(x, trained_model.score(x), y, seed=0, family="gbdt")
    labels = {"count": len(y), "frauds": int(y.sum()), "fingerprint": "0123456789abcdef"}
    version = derive_version(
        base,
        1,
        threshold=THRESHOLD,
        threshold_score="fraud_probability",
        second_stage=stage,
        card_updates={"second_stage": {"labels": labels}},
    )
    registry = server.running.registry
    wait_for(lambda: registry.current is not None and registry.current.version == version, 60, "no hot reload")
    return load(base, version)


@pytest.fixture(scope="module")
def stub(server: ServerThread) -> Iterator[scorer_pb2_grpc.FraudScorerStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield scorer_pb2_grpc.FraudScorerStub(channel)


@pytest.fixture(scope="module")
def txs(train_csv: Path) -> list[Transaction]:
    return transactions(train_csv, 300)


def _expected(model: LoadedModel, txs: list[Transaction]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = model.score(np.array([schema.feature_row(tx, model.features) for tx in txs], np.float32))
    assert scores.fraud_probability is not None
    # Flagged above the threshold on the probability, or beyond the envelope whatever it is.
    np.testing.assert_array_equal(
        scores.is_anomaly, (scores.fraud_probability > np.float32(model.threshold)) | model.outside_envelope(scores)
    )
    return scores.reconstruction_error, scores.fraud_probability, scores.is_anomaly


def test_model_info_names_the_thresholded_score_and_the_second_stage(stub, staged: LoadedModel) -> None:
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert (info.version, info.threshold_score, info.threshold) == (staged.version, "fraud_probability", THRESHOLD)
    assert "gradient-boosted trees" in info.second_stage and "4000 labelled rows" in info.second_stage, (
        info.second_stage
    )
    assert "label set 0123456789ab" in info.second_stage
    assert info.runtime == "litert", info.runtime_detail


def test_score_batch_and_score_carry_both_scores(stub, staged: LoadedModel, txs: list[Transaction]) -> None:
    errors, probability, anomaly = _expected(staged, txs)
    assert 0 < anomaly.sum() < len(txs)  # the threshold splits these rows: the flags below mean something
    batch = stub.ScoreBatch(pb.ScoreBatchRequest(transactions=txs), timeout=60)
    scored = [r.score for r in batch.results]
    assert {r.model_version for r in scored} == {staged.version}
    assert all(r.HasField("fraud_probability") for r in scored)
    np.testing.assert_allclose([r.fraud_probability for r in scored], probability, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose([r.reconstruction_error for r in scored], errors, rtol=RTOL, atol=ATOL)
    assert [r.is_anomaly for r in scored] == anomaly.tolist()

    one = stub.Score(pb.ScoreRequest(transaction=txs[0]), timeout=10)
    assert one.HasField("fraud_probability") and one.fraud_probability == pytest.approx(probability[0], abs=1e-6)
    assert one.threshold == THRESHOLD


def test_score_columns_carries_fraud_probabilities(stub, staged: LoadedModel, txs: list[Transaction]) -> None:
    _, probability, _ = _expected(staged, txs)
    matrix = np.array([schema.feature_row(tx, staged.features) for tx in txs], np.float32)
    reply = stub.ScoreColumns(columns.request_of([tx.transaction_id for tx in txs], staged.features, matrix))
    np.testing.assert_allclose(np.frombuffer(reply.fraud_probabilities, columns.FLOAT32), probability, atol=1e-6)


def test_the_version_without_a_second_stage_answers_without_one(stub, staged: LoadedModel, txs) -> None:
    pinned = stub.Score(pb.ScoreRequest(transaction=txs[0], model_version=1), timeout=10)
    assert pinned.model_version == 1 and not pinned.HasField("fraud_probability")
    matrix = np.array([schema.feature_row(tx, staged.features) for tx in txs[:5]], np.float32)
    request = columns.request_of([tx.transaction_id for tx in txs[:5]], staged.features, matrix, model_version=1)
    assert stub.ScoreColumns(request).fraud_probabilities == b""


def test_the_client_prints_the_probability(server: ServerThread, staged: LoadedModel, txs, capsys) -> None:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    args = parser.parse_args(["--target", server.target, "--json", schema.to_json(txs[0]).decode()])
    assert client.main(args) == 0
    line, *explanation = capsys.readouterr().out.strip().splitlines()
    assert explanation and all(" of the score" in e for e in explanation)  # each top feature against its range
    assert re.fullmatch(
        rf"{txs[0].transaction_id} +error=\S+ +p_fraud=[01]\.\d{{4}} +threshold=0\.5 +(normal|ANOMALY) +v2 .*", line
    ), line
