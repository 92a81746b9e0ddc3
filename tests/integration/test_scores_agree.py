"""The "scores agree" contract, all paths at once on the same transactions.

One generated CSV (a few hundred rows, frauds among them) is scored four ways
against one model artifact:

- the stream: ``fraudscore stream --replay`` (bounded DirectRunner job, a subprocess as an operator runs it),
  its cases read back from Bigtable and from the alerts topic;
- the gRPC scorer: ``Score`` per flagged transaction and ``ScoreBatch`` over every row, on a real grpc.aio
  server on loopback;
- the trainer's offline evaluation: ``trainer.evaluate.offline_errors`` on the CSV as ``trainer.data.load_csv``
  reads it (Keras model + tf.Transform outside the SavedModel);
- the artifact itself: ``fraudscore.model.LoadedModel.score`` (the LiteRT fast path, which the stream and the
  scorer use too), and ``score_tensorflow`` (the SavedModel's signature in TensorFlow) to rtol 1e-5.

It runs twice: on the quick-trained autoencoder, and on a version derived from it with a second stage
(``trainer.derive``; a logistic one fitted on the training CSV's labels: a continuous function of the errors,
unlike trees, whose leaf can change for a row whose error sits within float rounding of a split threshold,
README "The second stage") whose threshold applies to ``fraud_probability``:
there every path must also agree on ``fraud_probability`` (the trainer's is its Keras copy on the offline
feature errors) and the anomaly flags are the probability's.

The stream persists only flagged transactions, so errors are compared on its cases; the anomaly flags are
compared on every row (the stream's TX_ANOMALY cases must be exactly the rows the others call anomalous).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from cases.records import Case
from fraudscore import fastpath, schema
from fraudscore import model as model_lib
from fraudscore.config import Resources
from fraudscore.dev.generate import generate_frame, write_csv
from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from fraudscore.v1.transaction_pb2 import Transaction
from stream.rules import TX_ANOMALY
from tests.integration.scorer_support import ServerThread, config, copy_base

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300
FRAUD_RATE = 0.1  # ~30 frauds: plenty of TX_ANOMALY cases from a quick model
MIN_CASES = 5
RTOL, ATOL = 1e-5, 1e-7  # float32 arithmetic in different graphs (SavedModel, Keras + Transformer)
PROB_ATOL = 1e-5  # fraud_probability is in [0, 1]: an absolute tolerance, as the fast path's check
REPLAY_TIMEOUT_S = 180


@dataclass(frozen=True)
class Streamed:
    stored: dict[str, Case]  # Bigtable, each flagged transaction's row by transaction id
    alerted: dict[str, Case]  # alerts topic: each alert's triggering transaction, by transaction id
    cases: set[str]  # case ids alerted


def _replay_argv(csv_path: Path, model_base: Path, res: Resources) -> list[str]:
    names = [f"--{name.replace('_', '-')}={value}" for name, value in vars(res).items() if name != "project"]
    return [
        sys.executable, "-m", "fraudscore.cli", "stream", f"--replay={csv_path}", f"--model-base={model_base}",
        f"--project={res.project}", *names, "--metrics-port=0", "--runner=DirectRunner",
    ]  # fmt: skip


def _read_stored(res: Resources) -> dict[str, Case]:
    from cases.store import CaseStore

    with CaseStore(res) as store:
        return {c.transaction_id: c for c in store.flagged_transactions()}


def _read_alerts(res: Resources) -> tuple[dict[str, Case], set[str]]:
    """Everything on the alerts subscription (the replay has finished, so it is all there): each alert's
    triggering transaction by id, and the case ids; no (case, escalation component) alerted twice."""
    from google.api_core import exceptions
    from google.cloud.pubsub_v1 import SubscriberClient

    client = SubscriberClient()
    path = res.subscription_path(res.alerts_subscription)
    out: dict[str, Case] = {}
    components: set[tuple[str, str]] = set()
    try:
        while True:
            try:
                response = client.pull(subscription=path, max_messages=500, timeout=3)
            except exceptions.DeadlineExceeded:
                break
            if not response.received_messages:
                break
            client.acknowledge(subscription=path, ack_ids=[m.ack_id for m in response.received_messages])
            for m in response.received_messages:
                alert = json.loads(m.message.data)
                for c in alert["escalation"]:
                    assert (alert["case_id"], c) not in components, f"two alerts for case {alert['case_id']}, {c}"
                    components.add((alert["case_id"], c))
                case = Case.from_json_dict(alert["transaction"])
                out[case.transaction_id] = case
    finally:
        client.close()
    return out, {case_id for case_id, _ in components}


def _csv_transactions(path: Path) -> list[Transaction]:
    """The rows as the stream's CSV replay parses them (row numbers from 1, so the same transaction ids)."""
    with path.open(newline="") as f:
        return [schema.from_csv_row(row, row_number=i) for i, row in enumerate(csv.DictReader(f), start=1)]


# --- fixtures -----------------------------------------------------------------------------------


STAGE_ROWS = 4000
STAGE_THRESHOLD = 0.5


@pytest.fixture(params=["autoencoder", "second_stage"])
def model_base(request: pytest.FixtureRequest, tmp_path: Path, trained_model_base: Path) -> Path:
    base = copy_base(Path(trained_model_base), tmp_path / "models")
    if request.param == "second_stage":
        import pandas as pd

        from trainer import second_stage
        from trainer.derive import derive_version

        frame = pd.read_csv(request.getfixturevalue("train_csv")).iloc[:STAGE_ROWS]
        x = frame[list(model_lib.load(base).features)].to_numpy(np.float32)
        scores = model_lib.load(base).score(x)
        stage = second_stage.fit(x, scores, frame["Class"].to_numpy(np.int8), seed=0, family="logistic")
        derive_version(base, threshold=STAGE_THRESHOLD, threshold_score="fraud_probability", second_stage=stage)
    return base


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    path = tmp_path / "agree.csv"
    write_csv(generate_frame(ROWS, fraud_rate=FRAUD_RATE, seed=23), path)
    return path


@pytest.fixture
def replay(
    emulators: Any, unique_resources: Resources, model_base: Path, data_csv: Path, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The bounded stream job, started in the background so the other paths are scored meanwhile."""
    log_path = tmp_path / "stream.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            _replay_argv(data_csv, model_base, unique_resources), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def scorer(model_base: Path) -> Iterator[scorer_pb2_grpc.FraudScorerStub]:
    thread = ServerThread(config(model_base))
    try:
        thread.wait_serving()
        with grpc.insecure_channel(thread.target) as channel:
            yield scorer_pb2_grpc.FraudScorerStub(channel)
    finally:
        thread.close()


def _finish(proc: subprocess.Popen[bytes], res: Resources, log_path: Path) -> Streamed:
    try:
        code = proc.wait(timeout=REPLAY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError("stream replay did not finish:\n" + log_path.read_text()[-3000:]) from None
    assert code == 0, f"stream replay exited {code}:\n" + log_path.read_text()[-3000:]
    alerted, case_ids = _read_alerts(res)
    return Streamed(stored=_read_stored(res), alerted=alerted, cases=case_ids)


# --- the test -----------------------------------------------------------------------------------


def test_stream_grpc_trainer_and_artifact_agree(
    replay: subprocess.Popen[bytes],
    scorer: scorer_pb2_grpc.FraudScorerStub,
    unique_resources: Resources,
    model_base: Path,
    data_csv: Path,
    tmp_path: Path,
) -> None:
    from trainer.data import load_csv
    from trainer.derive import offline_fraud_probability
    from trainer.evaluate import offline_errors

    loaded = model_lib.load(model_base)
    txs = _csv_transactions(data_csv)
    ids = [tx.transaction_id for tx in txs]
    assert len(ids) == ROWS == len(set(ids))

    # The artifact (LoadedModel: its LiteRT fast path, the stream's and the scorer's too) and the trainer's
    # offline evaluation, on every row.
    assert loaded.fast_path.runtime == fastpath.LITERT, loaded.fast_path.detail
    rows = np.array([schema.feature_row(tx, loaded.features) for tx in txs], np.float32)
    artifact = loaded.score(rows)
    data = load_csv(data_csv, loaded.features)
    assert len(data.frame) == ROWS and data.bad_rows == 0
    trainer_errors = offline_errors(data.frame, loaded.path)
    np.testing.assert_allclose(trainer_errors, artifact.reconstruction_error, rtol=RTOL, atol=ATOL)

    # The fast path against the SavedModel's signature in TensorFlow, as one batch and one row at a time.
    tf_scores = loaded.score_tensorflow(rows)
    np.testing.assert_allclose(artifact.reconstruction_error, tf_scores.reconstruction_error, rtol=RTOL)
    np.testing.assert_allclose(trainer_errors, tf_scores.reconstruction_error, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(artifact.out_of_range_count, tf_scores.out_of_range_count)
    singles = np.concatenate([loaded.score(rows[i : i + 1]).reconstruction_error for i in range(0, ROWS, 7)])
    np.testing.assert_allclose(singles, tf_scores.reconstruction_error[::7], rtol=RTOL)

    # The score the threshold applies to, each path's: the error, or the second stage's probability.
    staged = loaded.threshold_score == "fraud_probability"
    trainer_probability = offline_fraud_probability(rows, loaded.path)
    assert (artifact.fraud_probability is not None) == (trainer_probability is not None) == staged
    if staged:
        assert artifact.fraud_probability is not None and tf_scores.fraud_probability is not None
        assert trainer_probability is not None
        np.testing.assert_allclose(artifact.fraud_probability, tf_scores.fraud_probability, atol=PROB_ATOL)
        np.testing.assert_allclose(trainer_probability, artifact.fraud_probability, atol=PROB_ATOL)
        single_p = [loaded.score(rows[i : i + 1]).fraud_probability for i in range(0, ROWS, 7)]
        np.testing.assert_allclose(np.concatenate(single_p), tf_scores.fraud_probability[::7], atol=PROB_ATOL)
    thresholded = artifact.fraud_probability if staged else artifact.reconstruction_error
    trainer_thresholded = trainer_probability if staged else trainer_errors
    assert thresholded is not None and trainer_thresholded is not None
    band = PROB_ATOL if staged else RTOL * loaded.threshold + ATOL  # within float tolerance of the threshold

    # gRPC ScoreBatch on every row.
    batch = scorer.ScoreBatch(pb.ScoreBatchRequest(transactions=txs), timeout=60)
    assert (batch.scored, batch.failed) == (ROWS, 0)
    by_batch = {r.score.transaction_id: r.score for r in batch.results}
    assert list(by_batch) == ids
    np.testing.assert_allclose(
        [by_batch[i].reconstruction_error for i in ids], artifact.reconstruction_error, rtol=RTOL, atol=ATOL
    )
    assert {r.model_version for r in by_batch.values()} == {loaded.version}
    assert all(r.HasField("fraud_probability") == staged for r in by_batch.values())
    if staged:
        got_p = [by_batch[i].fraud_probability for i in ids]
        np.testing.assert_allclose(got_p, thresholded, atol=PROB_ATOL)
    info = scorer.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.runtime == fastpath.LITERT, info.runtime_detail
    assert info.threshold_score == loaded.threshold_score and bool(info.second_stage) == staged

    # The anomaly flag: the artifact's (fast path and TensorFlow), the scorer's, and the trainer's score against
    # the card's threshold (rows within float tolerance of the threshold are the only ones allowed to differ).
    anomalous = {i for i, flag in zip(ids, artifact.is_anomaly, strict=True) if flag}
    # Flagged: above the threshold, or outside the training normals' envelope whatever the score.
    assert artifact.envelope_distance is not None
    outside = artifact.envelope_distance > np.float32(loaded.card.raw["envelope"]["limit_widths"])
    assert anomalous == {
        i for i, s, o in zip(ids, thresholded, outside, strict=True) if s > np.float32(loaded.threshold) or o
    }
    assert {i for i in ids if by_batch[i].is_anomaly} == anomalous
    near = np.abs(tf_scores.reconstruction_error - loaded.threshold) <= RTOL * loaded.threshold
    if staged:
        near = np.abs(np.asarray(tf_scores.fraud_probability) - loaded.threshold) <= PROB_ATOL
    np.testing.assert_array_equal(artifact.is_anomaly[~near], tf_scores.is_anomaly[~near])
    clear = np.abs(trainer_thresholded - loaded.threshold) > band
    assert {
        i
        for i, e, c, o in zip(ids, trainer_thresholded, clear, outside, strict=True)
        if c and (e > loaded.threshold or o)
    } == {i for i, c in zip(ids, clear, strict=True) if c and i in anomalous}

    # The stream's cases: the same set in Bigtable and on the alerts topic, TX_ANOMALY exactly the anomalous rows.
    streamed = _finish(replay, unique_resources, tmp_path / "stream.log")
    cases = streamed.stored
    assert len(cases) >= MIN_CASES, f"only {len(cases)} cases flagged; the comparison needs at least {MIN_CASES}"
    assert streamed.cases == {c.episode_id for c in cases.values()}, "every case alerted"
    assert set(streamed.alerted) <= set(cases) <= set(ids)
    assert {k for k, c in cases.items() if TX_ANOMALY in c.reasons} == anomalous
    flagged = sorted(cases, key=ids.index)
    at = [ids.index(i) for i in flagged]

    # Errors of the flagged transactions, path against path.
    stream_errors = np.array([cases[i].reconstruction_error for i in flagged])
    singles = {i: scorer.Score(pb.ScoreRequest(transaction=txs[ids.index(i)]), timeout=10) for i in flagged}
    for i, alerted in streamed.alerted.items():  # an alert's triggering transaction, as stored
        assert alerted.reconstruction_error == cases[i].reconstruction_error
        assert alerted.fraud_probability == cases[i].fraud_probability
    np.testing.assert_allclose(stream_errors, artifact.reconstruction_error[at], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(stream_errors, trainer_errors[at], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(stream_errors, [by_batch[i].reconstruction_error for i in flagged], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(stream_errors, [singles[i].reconstruction_error for i in flagged], rtol=RTOL, atol=ATOL)

    # The envelope distance each case keeps (what a case page shows when it flagged the transaction): the model's.
    assert artifact.envelope_distance is not None
    stream_distances = [cases[i].envelope_distance for i in flagged]
    np.testing.assert_allclose(stream_distances, artifact.envelope_distance[at], rtol=RTOL, atol=ATOL)
    assert {cases[i].envelope_limit for i in flagged} == {loaded.envelope_limit}

    # The second stage's probability of the flagged transactions, path against path (None everywhere without one).
    stream_p = [cases[i].fraud_probability for i in flagged]
    assert all(singles[i].HasField("fraud_probability") == staged for i in flagged)
    if staged:
        assert trainer_probability is not None and artifact.fraud_probability is not None
        np.testing.assert_allclose(stream_p, artifact.fraud_probability[at], atol=PROB_ATOL)
        np.testing.assert_allclose(stream_p, trainer_probability[at], atol=PROB_ATOL)
        np.testing.assert_allclose(stream_p, [singles[i].fraud_probability for i in flagged], atol=PROB_ATOL)
    else:
        assert stream_p == [None] * len(flagged)

    # The explanation of each flagged transaction (occlusion top features and shares): the same in the stream's
    # case member, its alert (for the transactions that opened or escalated a case), gRPC Score and ScoreBatch,
    # and the artifact's own.
    explained = loaded.score(rows[at], explain=True)
    order, shares, has = model_lib.top_features(explained, 3)
    for n, i in enumerate(flagged):
        want = [(loaded.features[j], s) for j, s in zip(order[n], shares[n], strict=True)] if has[n] else []
        alert = [streamed.alerted[i].top_features] if i in streamed.alerted else []
        for got in (
            cases[i].top_features,
            *alert,
            [(c.name, c.share) for c in singles[i].top_features],
            [(c.name, c.share) for c in by_batch[i].top_features],
        ):
            assert [name for name, _ in got] == [name for name, _ in want], i
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-6)
    assert any(i in streamed.alerted for i in flagged)  # the alerts' explanations were compared too

    # Model version and threshold are the artifact's everywhere.
    for i in flagged:
        assert singles[i].transaction_id == i
        assert singles[i].is_anomaly == (i in anomalous) == (TX_ANOMALY in cases[i].reasons)
        assert cases[i].model_version == singles[i].model_version == loaded.version
        assert cases[i].threshold == pytest.approx(loaded.threshold) == singles[i].threshold
