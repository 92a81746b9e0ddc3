"""Derived versions (trainer/derive.py) of the session's quick-trained model: same weights and transform, a
new threshold that the signature and the card agree on, and the LiteRT fast path still on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudscore import fastpath, features
from fraudscore.model import CARD_FILE, LoadedModel, load
from fraudscore.versions import list_versions
from tests.integration.scorer_support import copy_base
from trainer import second_stage
from trainer.derive import DeriveError, derive_version
from trainer.second_stage import SecondStage

pytestmark = pytest.mark.integration

FEATURES = list(features.MODEL_FEATURES)


@pytest.fixture
def base(trained_model_base: Path, tmp_path: Path) -> Path:
    return copy_base(trained_model_base, tmp_path / "creditcard")


def rows(train_csv: Path, n: int = 2000) -> np.ndarray:
    return pd.read_csv(train_csv).iloc[:n][FEATURES].to_numpy(np.float32)


def a_threshold_between_flags(model: LoadedModel, x: np.ndarray) -> float:
    """A threshold that flags about 5 % of ``x``: far from the trained one, so is_anomaly must change."""
    return float(np.quantile(model.score(x).reconstruction_error, 0.95))


def test_a_derived_threshold_is_the_signatures_and_the_cards(
    base: Path, trained_model: LoadedModel, train_csv: Path
) -> None:
    x = rows(train_csv)
    new = a_threshold_between_flags(trained_model, x)
    version = derive_version(base, 1, threshold=new, card_updates={"threshold": {"policy": "test-quantile"}})

    assert version == 2 and list_versions(base) == [1, 2]
    derived = load(base, 2)
    card = json.loads((base / "2" / CARD_FILE).read_text())
    assert card["derived_from"]["version"] == 1 and "threshold" in card["derived_from"]["reason"]
    assert card["threshold"]["policy"] == "test-quantile" and card["threshold"]["score"] == "reconstruction_error"
    assert derived.threshold == float(np.float32(new)) and derived.card.threshold_score == "reconstruction_error"
    assert "precision" not in card["metrics"]  # measured at the old threshold: dropped, not carried over stale

    source, got = trained_model.score_tensorflow(x), derived.score_tensorflow(x)
    np.testing.assert_allclose(got.reconstruction_error, source.reconstruction_error, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got.out_of_range_count, source.out_of_range_count)
    np.testing.assert_array_equal(got.is_anomaly, got.reconstruction_error > np.float32(derived.threshold))
    assert got.is_anomaly.sum() != source.is_anomaly.sum()  # the new threshold is the one in use
    assert got.fraud_probability is None

    # The fast path compiles from the derived SavedModel and agrees with its TensorFlow signature.
    assert derived.fast_path.runtime == fastpath.LITERT, derived.fast_path.detail
    fast = derived.score(x)
    np.testing.assert_allclose(fast.reconstruction_error, got.reconstruction_error, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(fast.is_anomaly, got.is_anomaly)


def test_deriving_from_a_derived_version_unwraps_it(base: Path, trained_model: LoadedModel, train_csv: Path) -> None:
    x = rows(train_csv, 500)
    first = derive_version(base, threshold=a_threshold_between_flags(trained_model, x))
    second = derive_version(base, first, threshold=trained_model.threshold)

    assert second == 3
    again = load(base, 3)
    assert json.loads((base / "3" / CARD_FILE).read_text())["derived_from"]["version"] == 2
    np.testing.assert_array_equal(again.score_tensorflow(x).is_anomaly, trained_model.score_tensorflow(x).is_anomaly)
    # The copied extras (report, Keras model, transform copy) are the source's, for offline evaluation.
    assert (base / "3" / "report" / "report.md").is_file() and (base / "3" / "assets.extra").is_dir()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": float("nan")}, "threshold must be finite"),
        ({"threshold": 0.5, "threshold_score": "fraud_probability"}, "needs a second stage"),
        ({"threshold": 0.5, "threshold_score": "loss"}, "threshold_score must be one of"),
        ({"threshold": 0.5, "source_version": 9}, "source version 9"),
    ],
)
def test_bad_requests_write_nothing(base: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DeriveError, match=message):
        derive_version(base, **kwargs)  # type: ignore[arg-type]
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # no version, no temp dir left behind


def fitted_stage(
    model: LoadedModel, train_csv: Path, n: int = 4000, family: str = "gbdt"
) -> tuple[SecondStage, np.ndarray, np.ndarray]:
    frame = pd.read_csv(train_csv).iloc[:n]
    x, y = frame[FEATURES].to_numpy(np.float32), frame["Class"].to_numpy(np.int8)
    return second_stage.fit(x, model.score(x), y, seed=0, family=family), x, y


def test_a_second_stage_is_an_output_of_the_same_signature(
    base: Path, trained_model: LoadedModel, train_csv: Path
) -> None:
    stage, x, y = fitted_stage(trained_model, train_csv)
    labels = {"count": len(y), "frauds": int(y.sum()), "fingerprint": "abc"}
    version = derive_version(
        base,
        threshold=0.5,
        threshold_score="fraud_probability",
        second_stage=stage,
        card_updates={"second_stage": {"labels": labels}},
    )

    derived = load(base, version)
    card = json.loads((base / str(version) / CARD_FILE).read_text())
    assert card["threshold"] == {**card["threshold"], "value": 0.5, "score": "fraud_probability"}
    assert card["second_stage"]["labels"] == labels and card["second_stage"]["frauds"] == int(y.sum())
    assert "fraud_probability" in card["signature"]["outputs"]
    assert derived.threshold_score == "fraud_probability" and derived.has_fraud_probability
    assert derived.fast_path.runtime == fastpath.LITERT, derived.fast_path.detail

    fast, tf = derived.score(x), derived.score_tensorflow(x)
    expected = second_stage.predict(stage, x, trained_model.score_tensorflow(x))
    assert fast.fraud_probability is not None and tf.fraud_probability is not None
    np.testing.assert_allclose(tf.fraud_probability, expected, atol=1e-5)
    # The trees through both runtimes are scikit-learn's own on each runtime's inputs; LiteRT's feature errors
    # differ from TensorFlow's by ~1e-6 relative, so a row whose error sits that close to a split threshold can
    # reach the neighbouring leaf (2 of these 4,000 fitted-on rows in one run): rare, never more.
    assert stage.library is not None
    for scored in (fast, tf):
        inputs = second_stage.stage_input(x, scored)
        np.testing.assert_allclose(scored.fraud_probability, stage.library.probability(inputs), atol=1e-5)
    differs = np.abs(fast.fraud_probability - tf.fraud_probability) > 1e-5
    assert differs.mean() < 0.002, differs.sum()
    np.testing.assert_array_equal(tf.is_anomaly, tf.fraud_probability > np.float32(0.5))
    np.testing.assert_allclose(
        tf.reconstruction_error, trained_model.score_tensorflow(x).reconstruction_error, rtol=1e-5, atol=1e-7
    )
    assert (base / str(version) / "assets.extra" / "second_stage.keras").is_file()

    # A later threshold-only derivation (calibrate --apply) keeps the classifier and its card entry.
    later = derive_version(base, version, threshold=0.9)
    again = load(base, later)
    assert again.card.second_stage == derived.card.second_stage and again.threshold_score == "fraud_probability"
    kept = again.score_tensorflow(x)
    assert kept.fraud_probability is not None
    np.testing.assert_array_equal(kept.fraud_probability, tf.fraud_probability)
    np.testing.assert_array_equal(kept.is_anomaly, kept.fraud_probability > np.float32(0.9))


def test_a_probability_threshold_outside_zero_one_is_refused(
    base: Path, trained_model: LoadedModel, train_csv: Path
) -> None:
    stage, _, _ = fitted_stage(trained_model, train_csv, 3000)
    with pytest.raises(DeriveError, match=r"fraud_probability threshold must be in \[0, 1\)"):
        derive_version(base, threshold=1.5, threshold_score="fraud_probability", second_stage=stage)
    assert sorted(p.name for p in base.iterdir()) == ["1"]


def test_a_savedmodel_without_a_threshold_variable_is_refused(tmp_path: Path) -> None:
    from tests.unit.scorer.fake_model import build_fake_model

    base = tmp_path / "fake"
    base.mkdir()
    build_fake_model(base, 1)
    with pytest.raises(DeriveError, match="source version 1: its SavedModel has no threshold variable"):
        derive_version(base, threshold=0.1)
    assert sorted(p.name for p in base.iterdir()) == ["1"]
