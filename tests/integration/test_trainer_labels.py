"""`fraudscore train --labels FILE` and `--labels-from-cases`: one version holding the autoencoder and the
second stage, the card recording the labels and which score the threshold applies to; bad labels refused
before any training, nothing exported.

Real quick trains (tests/conftest.py's quick_config) on the session's generated CSV; the cases come from the
Bigtable emulator (a fresh instance per test, the default table names ``--labels-from-cases`` reads).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudscore import fastpath, features
from fraudscore.config import Resources
from fraudscore.dev.generate import generate_frame, write_csv
from fraudscore.model import CARD_FILE, load
from fraudscore.resources import create_resources
from fraudscore.versions import list_versions
from tests.conftest import quick_config
from trainer import train
from trainer.supervise import LabelsRefused

pytestmark = pytest.mark.integration

FEATURES = list(features.MODEL_FEATURES)


@pytest.fixture(scope="module")
def labels_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labelled.csv"
    write_csv(generate_frame(3000, fraud_rate=0.03, seed=5), path)
    return path


def _only_version(base: Path) -> dict[str, object]:
    assert list_versions(base) == [1]
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # no second version, no temp dir
    return json.loads((base / "1" / CARD_FILE).read_text())


def test_labels_file_adds_the_second_stage_to_the_one_version(
    train_csv: Path, labels_csv: Path, tmp_path: Path
) -> None:
    base = tmp_path / "models" / "creditcard"
    result = train(quick_config(train_csv, base, labels_file=labels_csv, baselines=False, plots=False))

    card = _only_version(base)
    assert result.version == 1 and result.card == card
    stage = card["second_stage"]
    assert isinstance(stage, dict)
    labelled = pd.read_csv(labels_csv)
    assert stage["labels"]["from"] == "file" and stage["labels"]["count"] == len(labelled)
    assert stage["labels"]["frauds"] == int(labelled["Class"].sum()) and len(stage["labels"]["sha256"]) == 64
    assert "derived_from" not in card  # the private export was never published
    assert card["threshold"]["score"] == "reconstruction_error"  # default: the autoencoder's threshold, kept
    assert card["threshold"]["policy"] == "best-f1"

    model = load(base)
    assert model.has_fraud_probability and model.fast_path.runtime == fastpath.LITERT, model.fast_path.detail
    x = labelled[FEATURES].to_numpy(np.float32)
    scores = model.score(x)
    assert scores.fraud_probability is not None
    above = scores.reconstruction_error > np.float32(model.threshold)
    np.testing.assert_array_equal(scores.is_anomaly, above | model.outside_envelope(scores))
    # The classifier learnt the labels it was given: frauds rank far above legit rows.
    y = labelled["Class"].to_numpy()
    assert np.median(scores.fraud_probability[y == 1]) > np.quantile(scores.fraud_probability[y == 0], 0.9)


def test_threshold_on_fraud_probability_is_calibrated_on_held_out_labels(
    train_csv: Path, labels_csv: Path, tmp_path: Path
) -> None:
    base = tmp_path / "models" / "creditcard"
    config = quick_config(
        train_csv, base, labels_file=labels_csv, threshold_score="fraud_probability", baselines=False, plots=False
    )
    train(config)

    card = _only_version(base)
    threshold = card["threshold"]
    assert isinstance(threshold, dict)
    assert threshold["score"] == "fraud_probability" and 0.0 < threshold["value"] < 1.0
    assert threshold["policy"] == "best-f1" and "held out" in threshold["chosen_on"]
    assert threshold["validation"]["rows"] == round(len(pd.read_csv(labels_csv)) * 0.3)
    held = card["second_stage"]["held_out"]  # type: ignore[index]
    assert held["frauds"] > 0 and held["pr_auc"] > 0.5

    model = load(base)
    assert model.threshold_score == "fraud_probability" and model.threshold == threshold["value"]
    scores = model.score(pd.read_csv(labels_csv)[FEATURES].to_numpy(np.float32))
    assert scores.fraud_probability is not None
    above = scores.fraud_probability > np.float32(model.threshold)
    np.testing.assert_array_equal(scores.is_anomaly, above | model.outside_envelope(scores))


@pytest.mark.parametrize(
    ("frame_change", "message"),
    [
        (lambda f: f.assign(Class=0), "the label set has no frauds"),
        (lambda f: f.drop(columns=["Class"]), "no Class column"),
        (lambda f: f.assign(Class=np.where(np.arange(len(f)) < 3, 1, 0)), "only 3 frauds labelled"),
    ],
)
def test_bad_labels_files_are_refused_before_training(
    train_csv: Path, tmp_path: Path, frame_change: object, message: str
) -> None:
    path = tmp_path / "bad.csv"
    frame = generate_frame(400, fraud_rate=0.05, seed=9)
    write_csv(frame_change(frame), path)  # type: ignore[operator]
    base = tmp_path / "models" / "creditcard"
    with pytest.raises(LabelsRefused, match=message) as caught:
        train(quick_config(train_csv, base, labels_file=path))
    assert "\n" not in str(caught.value)
    assert not base.exists() or list_versions(base) == []


def test_the_second_stage_choice_never_sees_the_test_split(train_csv: Path, labels_csv: Path, tmp_path: Path) -> None:
    """The same data but for the test split's rows (every row after the validation split, features scrambled):
    the same family chosen with the same fold scores, the same probabilities. The choice reads the labelled
    rows only."""
    from trainer import split

    frame = pd.read_csv(train_csv)
    last_validation = split.split(frame, True).validation[features.TIME].max()
    later = (frame[features.TIME] > last_validation).to_numpy()
    assert later.sum() > 100
    other = frame.copy()
    rng = np.random.default_rng(0)
    v_columns = [f for f in FEATURES if f.startswith("V")]
    other.loc[later, v_columns] = rng.permutation(other.loc[later, v_columns].to_numpy()) * -3.0
    other_csv = tmp_path / "other-test.csv"
    write_csv(other, other_csv)

    cards = []
    for name, data in (("a", train_csv), ("b", other_csv)):
        base = tmp_path / name / "creditcard"
        train(quick_config(data, base, labels_file=labels_csv, baselines=False, plots=False))
        cards.append((json.loads((base / "1" / CARD_FILE).read_text()), load(base)))
    (card_a, model_a), (card_b, model_b) = cards
    assert card_a["metrics"]["pr_auc"] != card_b["metrics"]["pr_auc"]  # the test splits differ
    sel_a, sel_b = card_a["second_stage"]["selection"], card_b["second_stage"]["selection"]
    assert sel_a["chosen"] == sel_b["chosen"] and sel_a["families"].keys() == sel_b["families"].keys()
    for family in sel_a["families"]:
        a, b = sel_a["families"][family], sel_b["families"][family]
        assert a["fold_average_precision"] == b["fold_average_precision"], family
    x = pd.read_csv(labels_csv)[FEATURES].to_numpy(np.float32)
    p_a, p_b = model_a.score(x).fraud_probability, model_b.score(x).fraud_probability
    assert p_a is not None and p_b is not None
    np.testing.assert_allclose(p_a, p_b, atol=1e-6)


def test_labels_whose_scores_are_all_equal_are_refused(train_csv: Path, tmp_path: Path) -> None:
    """Every labelled row the same transaction (half of them called fraud): no second stage can separate them."""
    frame = generate_frame(200, fraud_rate=0.05, seed=9)
    same = pd.concat([frame.iloc[[0]]] * len(frame), ignore_index=True)
    same["Time"] = frame["Time"].to_numpy()
    same["Class"] = np.arange(len(same)) % 2
    path = tmp_path / "same.csv"
    write_csv(same, path)
    base = tmp_path / "models" / "creditcard"
    with pytest.raises(LabelsRefused, match="same probability") as caught:
        train(quick_config(train_csv, base, labels_file=path, baselines=False, plots=False))
    assert "\n" not in str(caught.value)
    assert not base.exists() or list_versions(base) == []


def test_a_second_stage_that_fails_its_export_check_writes_no_version(
    train_csv: Path, labels_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The written SavedModel's fraud_probability must equal the fitted stage's (here it cannot: the library's
    copy of the trees is shifted); the run stops with one line and nothing is published."""
    from trainer import second_stage
    from trainer.derive import DeriveError

    real = second_stage.Library.probability

    def shifted(self: second_stage.Library, x: np.ndarray) -> np.ndarray:
        return np.asarray(real(self, x) * 0.5, np.float64)

    monkeypatch.setattr(second_stage.Library, "probability", shifted)
    base = tmp_path / "models" / "creditcard"
    config = quick_config(train_csv, base, labels_file=labels_csv, baselines=False, plots=False)
    with pytest.raises(DeriveError, match="differs from the fitted trees'") as caught:
        train(replace(config, second_stage_family="gbdt"))
    assert "\n" not in str(caught.value)
    assert not base.exists() or list_versions(base) == []


# --- from the analysts' cases in Bigtable ---------------------------------------------------------


@pytest.fixture
def cases_instance(emulators: object, unique_resources_factory: object) -> tuple[Resources, str]:
    """A Bigtable instance of this test's own with the default table names (what --labels-from-cases reads)."""
    instance = f"labels-{uuid.uuid4().hex[:8]}"
    tables = Resources()
    res = replace(
        unique_resources_factory("labels"),  # type: ignore[operator]
        bigtable_instance=instance,
        cases_table=tables.cases_table,
        cases_by_time_table=tables.cases_by_time_table,
        sample_table=tables.sample_table,
    )
    create_resources(res)
    return res, instance


def _write_cases(res: Resources, frame: pd.DataFrame, *, sample: pd.DataFrame, raw: bool = True) -> None:
    from cases.casebook import Casebook
    from cases.records import Case
    from cases.store import CaseStore
    from stream.records import ScoredTransaction, float32_bytes
    from stream.rules import TX_ANOMALY

    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    names = tuple(FEATURES)
    with CaseStore(res) as store:
        cases = [
            Case(
                f"tx-{i}", "card", "m", t0 + timedelta(seconds=i), float(row["Amount"]), 1.0, 0.5, 1, (TX_ANOMALY,),
                raw_features=tuple(float(row[f]) for f in names) if raw else (), feature_names=names if raw else (),
            )
            for i, row in frame.iterrows()
        ]  # fmt: skip
        store.write(cases)
        for i, row in frame.iterrows():
            Casebook(store).label_transaction(f"tx-{i}", bool(row["Class"]), "", "test")
        scored = [
            ScoredTransaction(
                f"s-{i}", "card", "m", (t0 + timedelta(seconds=i)).timestamp(), float(row["Amount"]), 0.1, False, (),
                0, "creditcard", 1, 0.5, raw=float32_bytes([float(row[f]) for f in names]), feature_names=names,
            )
            for i, row in sample.iterrows()
        ]  # fmt: skip
        store.write_sample(scored, 0.25)


def test_labels_from_cases_train_with_the_traffic_sample(
    train_csv: Path, tmp_path: Path, cases_instance: tuple[Resources, str]
) -> None:
    res, instance = cases_instance
    labelled = generate_frame(200, fraud_rate=0.15, seed=11)
    _write_cases(res, labelled, sample=generate_frame(120, fraud_rate=0.0, seed=12))
    base = tmp_path / "models" / "creditcard"
    config = quick_config(
        train_csv, base, labels_from_cases=True, cases_project=res.project, cases_instance=instance,
        baselines=False, plots=False,
    )  # fmt: skip
    train(config)

    card = _only_version(base)
    labels = card["second_stage"]["labels"]  # type: ignore[index]
    assert labels["from"] == "cases" and labels["count"] == 200 and labels["frauds"] == int(labelled["Class"].sum())
    assert labels["traffic_sample"] == {"rows": 120, "sampling_rate": 0.25, "weight": 4.0}
    assert len(labels["fingerprint"]) == 64
    assert card["second_stage"]["fitted_on"] == {"labelled_rows": 200, "traffic_sample_rows": 120}  # type: ignore[index]
    assert "traffic sample" in card["second_stage"]["selection_bias"]  # type: ignore[index]
    assert load(base).has_fraud_probability


def test_labelled_cases_without_their_transaction_are_refused(
    train_csv: Path, tmp_path: Path, cases_instance: tuple[Resources, str]
) -> None:
    res, instance = cases_instance
    _write_cases(res, generate_frame(60, fraud_rate=0.2, seed=13), sample=generate_frame(5, seed=14), raw=False)
    base = tmp_path / "models" / "creditcard"
    config = quick_config(train_csv, base, labels_from_cases=True, cases_project=res.project, cases_instance=instance)
    with pytest.raises(LabelsRefused, match=r"labels for transactions that cannot be used \(60 no raw features"):
        train(config)
    assert not base.exists() or list_versions(base) == []


def test_the_cli_refuses_a_label_set_without_frauds_in_one_line(
    train_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fraudscore.cli import main as fraudscore_main

    path = tmp_path / "no-frauds.csv"
    write_csv(generate_frame(300, fraud_rate=0.0, seed=3), path)
    base = tmp_path / "models" / "m"
    code = fraudscore_main(["train", "--data", str(train_csv), "--model-base", str(base), "--labels", str(path)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fraudscore train:")]
    assert code == 1 and len(err) == 1, err
    assert (
        err[0]
        == f"fraudscore train: --labels {path}: the label set has no frauds (300 legit): nothing to learn fraud from"
    )
    assert not base.exists() or list_versions(base) == []
