"""The model card's one reader and writer (fraudscore/model.py): write -> read round trip, required keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fraudscore.model import CARD_FILE, REQUIRED, ModelCard, ModelError


def test_a_written_card_reads_back_the_same(tmp_path: Path) -> None:
    card = ModelCard(
        name="creditcard",
        version=3,
        features=("V1", "V2", "Amount"),
        threshold=0.125,
        threshold_policy="best-f1",
        metrics={"pr_auc": 0.75, "roc_auc": 0.9},
    )
    card.write(tmp_path)
    read = ModelCard.read(tmp_path)
    assert read == card and read.raw == card.to_dict()
    assert json.loads((tmp_path / CARD_FILE).read_text()) == {
        "name": "creditcard",
        "version": 3,
        "features": ["V1", "V2", "Amount"],
        "threshold": {"value": 0.125, "policy": "best-f1"},
        "metrics": {"pr_auc": 0.75, "roc_auc": 0.9},
    }


def test_the_writers_other_keys_and_numpy_values_are_kept(tmp_path: Path) -> None:
    content = {
        "name": "creditcard",
        "version": np.int64(2),
        "created_at": "2026-01-01T00:00:00+00:00",
        "features": ["V1", "Amount"],
        "threshold": {"value": np.float32(0.5), "policy": "budget", "alert_budget_percent": 1.0},
        "metrics": {"pr_auc": np.float64(0.8), "n": 7},
        "statistics": {"V1": {"min": np.float32(-1.0)}},
        "error": {"divisors": np.array([1.0, 2.0], np.float32)},
    }
    card = ModelCard.from_dict(content)
    card.write(tmp_path)
    read = ModelCard.read(tmp_path)
    assert read == card and read.version == 2 and read.threshold == 0.5 and read.metrics == {"pr_auc": 0.8, "n": 7.0}
    assert list(read.raw) == list(content)  # the writer's order
    assert read.raw["threshold"]["alert_budget_percent"] == 1.0 and read.raw["metrics"]["n"] == 7
    assert read.raw["statistics"] == {"V1": {"min": -1.0}} and read.raw["error"] == {"divisors": [1.0, 2.0]}
    ModelCard.read(tmp_path).write(tmp_path)
    assert ModelCard.read(tmp_path).raw == read.raw  # rewriting changes nothing


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_card_missing_a_required_key_is_refused_naming_it(tmp_path: Path, missing: str) -> None:
    data = ModelCard(name="m", version=1, features=("V1",), threshold=0.1, threshold_policy="p").to_dict()
    top, _, sub = missing.partition(".")
    if sub:
        del data[top][sub]
    else:
        del data[top]
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=rf"malformed model card: missing required key\(s\) {missing} \(required: "):
        ModelCard.read(tmp_path)
    with pytest.raises(ModelError, match="missing required key"):
        ModelCard.from_dict(data)  # the trainer's check, before anything is written


def test_unreadable_and_mistyped_cards_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read model card"):
        ModelCard.read(tmp_path)
    (tmp_path / CARD_FILE).write_text("[1, 2]")
    with pytest.raises(ModelError, match="a JSON object expected"):
        ModelCard.read(tmp_path)
    good = ModelCard(name="m", version=1, features=("V1",), threshold=0.1, threshold_policy="p").to_dict()
    (tmp_path / CARD_FILE).write_text(json.dumps({**good, "version": "two"}))
    with pytest.raises(ModelError, match="malformed model card"):
        ModelCard.read(tmp_path)
    (tmp_path / CARD_FILE).write_text(json.dumps({**good, "features": "V1"}))
    with pytest.raises(ModelError, match="features must be a list of names"):
        ModelCard.read(tmp_path)


def test_threshold_score_and_second_stage_round_trip(tmp_path: Path) -> None:
    content = {
        "name": "creditcard",
        "version": 4,
        "features": ["V1", "Amount"],
        "threshold": {"value": 0.7, "policy": "precision:0.9", "score": "fraud_probability"},
        "second_stage": {"rows": 120, "frauds": 20},
    }
    card = ModelCard.from_dict(content)
    card.write(tmp_path)
    read = ModelCard.read(tmp_path)
    assert read.threshold_score == "fraud_probability" and read.second_stage == {"rows": 120, "frauds": 20}
    assert json.loads((tmp_path / CARD_FILE).read_text())["threshold"]["score"] == "fraud_probability"
    # An older card without the key thresholds the reconstruction error and has no second stage.
    old = ModelCard.from_dict({**content, "threshold": {"value": 0.7, "policy": "best-f1"}, "second_stage": None})
    assert old.threshold_score == "reconstruction_error" and old.second_stage is None


@pytest.mark.parametrize(
    ("threshold", "stage", "message"),
    [
        ({"value": 0.5, "policy": "p", "score": "loss"}, None, "threshold.score must be one of"),
        ({"value": 0.5, "policy": "p", "score": "fraud_probability"}, None, "has no second_stage"),
        ({"value": 0.5, "policy": "p"}, [1, 2], "second_stage must be an object"),
    ],
)
def test_a_bad_threshold_score_or_second_stage_is_a_clear_error(
    threshold: dict[str, object], stage: object, message: str
) -> None:
    content = {"name": "m", "version": 1, "features": ["V1"], "threshold": threshold, "second_stage": stage}
    with pytest.raises(ModelError, match=message):
        ModelCard.from_dict(content)
