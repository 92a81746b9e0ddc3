"""The LiteRT fast path of fraudscore.model: agreement with TensorFlow, and every way it falls back."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from fraudscore import fastpath
from fraudscore.model import OUTPUTS, LoadedModel
from scorer.metrics import ScorerMetrics
from scorer.registry import ModelRegistry
from tests.unit.scorer.fake_model import build_fake_model

RTOL = 1e-5


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fastpath") / "fake"
    base.mkdir()
    build_fake_model(base, 1)
    return base


@pytest.fixture(scope="module")
def model(base: Path) -> LoadedModel:
    return LoadedModel(base / "1")


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 4.0, (n, 29)).astype(np.float32)


def _assert_same(model: LoadedModel, rows: np.ndarray) -> None:
    fast, tf = model.score(rows), model.score_tensorflow(rows)
    np.testing.assert_allclose(fast.reconstruction_error, tf.reconstruction_error, rtol=RTOL)
    np.testing.assert_allclose(fast.feature_errors, tf.feature_errors, rtol=RTOL, atol=1e-7)
    np.testing.assert_array_equal(fast.is_anomaly, tf.is_anomaly)
    np.testing.assert_array_equal(fast.out_of_range_count, tf.out_of_range_count)
    for name in OUTPUTS:
        assert getattr(fast, name).dtype == getattr(tf, name).dtype


def test_fast_path_is_on_and_agrees_with_tensorflow(model: LoadedModel) -> None:
    assert model.fast_path.runtime == fastpath.LITERT and model.fast_path.enabled
    assert model.fast_path.max_relative_diff is not None and model.fast_path.max_relative_diff <= RTOL
    assert "agrees with TensorFlow" in model.fast_path.detail
    for n in (1, 2, 16, 300):
        _assert_same(model, _rows(n, seed=n))


def test_batches_larger_than_a_chunk_are_scored_in_chunks(model: LoadedModel, monkeypatch: Any) -> None:
    monkeypatch.setattr(fastpath, "CHUNK_ROWS", 7)
    rows = _rows(30)
    _assert_same(model, rows)
    assert len(model.score(rows)) == 30


def test_fast_path_is_thread_safe(model: LoadedModel) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batches = [_rows(1 + i % 5, seed=i) for i in range(200)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(model.score, batches))
    for rows, got in zip(batches, results, strict=True):
        np.testing.assert_allclose(
            got.reconstruction_error, model.score_tensorflow(rows).reconstruction_error, rtol=RTOL
        )


def _wrapping(change: Any) -> fastpath.Compiler:
    """A compiler whose runner is the real LiteRT one with its outputs changed by ``change(outputs)``."""

    def compile_wrong(module: Any, fn: Any, features: Sequence[str]) -> fastpath.Runner:
        real = fastpath.compile_litert(module, fn, features)

        def run(rows: np.ndarray) -> Mapping[str, np.ndarray]:
            out = dict(real(rows))
            change(out)
            return out

        return run

    return compile_wrong


def _perturb_errors(out: dict[str, np.ndarray]) -> None:
    out["reconstruction_error"] = out["reconstruction_error"] * np.float32(1 + 1e-4)


def _shift_out_of_range(out: dict[str, np.ndarray]) -> None:
    out["out_of_range_count"] = out["out_of_range_count"] + np.int32(1)


def _flip_flags(out: dict[str, np.ndarray]) -> None:
    out["is_anomaly"] = ~out["is_anomaly"]


def _drop_feature_errors(out: dict[str, np.ndarray]) -> None:
    out["feature_errors"] = out["feature_errors"] * np.float32(0.5)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_perturb_errors, "reconstruction errors differ"),
        (_shift_out_of_range, "out_of_range_count differs"),
        (_flip_flags, "is_anomaly differs"),
        (_drop_feature_errors, "feature errors differ"),
    ],
)
def test_a_fast_path_that_disagrees_is_refused(base: Path, caplog: Any, change: Any, reason: str) -> None:
    with caplog.at_level(logging.WARNING, logger="fraudscore.fastpath"):
        model = LoadedModel(base / "1", compiler=_wrapping(change))
    assert model.fast_path.runtime == fastpath.TENSORFLOW and not model.fast_path.enabled
    assert model.fast_path.detail.startswith("fast path refused: " + reason), model.fast_path.detail
    assert [r.getMessage() for r in caplog.records if "fast path refused" in r.getMessage()], caplog.text
    rows = _rows(5)
    np.testing.assert_array_equal(
        model.score(rows).reconstruction_error, model.score_tensorflow(rows).reconstruction_error
    )


def test_a_tiny_difference_within_tolerance_is_accepted(base: Path) -> None:
    def nudge(out: dict[str, np.ndarray]) -> None:
        out["reconstruction_error"] = out["reconstruction_error"] * np.float32(1 + 1e-6)

    model = LoadedModel(base / "1", compiler=_wrapping(nudge))
    assert model.fast_path.enabled


def test_a_failed_conversion_falls_back_to_tensorflow(base: Path, caplog: Any) -> None:
    def broken(module: Any, fn: Any, features: Sequence[str]) -> fastpath.Runner:
        raise RuntimeError("converter: op not supported\nlong detail")

    with caplog.at_level(logging.WARNING, logger="fraudscore.fastpath"):
        model = LoadedModel(base / "1", compiler=broken)
    assert model.fast_path.runtime == fastpath.TENSORFLOW
    assert model.fast_path.detail == "fast path refused: conversion failed: RuntimeError: converter: op not supported"
    assert "conversion failed" in caplog.text
    assert len(model.score(_rows(3))) == 3


def test_a_fast_path_that_raises_on_the_check_falls_back(base: Path) -> None:
    def crashing(module: Any, fn: Any, features: Sequence[str]) -> fastpath.Runner:
        def run(rows: np.ndarray) -> Mapping[str, np.ndarray]:
            raise ValueError("bad tensor")

        return run

    model = LoadedModel(base / "1", compiler=crashing)
    assert model.fast_path.detail == "fast path refused: fast path failed on the check rows: ValueError: bad tensor"


def test_the_environment_turns_it_off(base: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(fastpath.ENV, "off")
    model = LoadedModel(base / "1")
    assert model.fast_path.runtime == fastpath.TENSORFLOW and "off" in model.fast_path.detail


def test_check_rows_cover_the_range_and_beyond() -> None:
    stats = {
        "V1": {"min": -2.0, "max": 3.0, "space": "raw"},
        "Amount": {"min": 0.0, "max": 6.2, "space": "signed_log1p", "raw_min": 0.0, "raw_max": 500.0},
    }
    rows = fastpath.check_rows(["V1", "V2", "Amount"], stats)
    assert rows.dtype == np.float32 and rows.shape[1] == 3
    assert rows[:, 0].min() < -2.0 and rows[:, 0].max() > 3.0
    assert ((rows[:, 0] > -2.0) & (rows[:, 0] < 3.0)).any()
    assert rows[:, 2].max() > 500.0 and rows[:, 2].min() < 0.0
    assert rows[:, 1].min() < -3.0 and rows[:, 1].max() > 3.0  # no statistic: [-3, 3]
    assert np.isfinite(rows).all()
    np.testing.assert_array_equal(rows, fastpath.check_rows(["V1", "V2", "Amount"], stats))  # fixed


def test_the_scorer_reports_the_runtime_in_its_metrics(base: Path) -> None:
    metrics = ScorerMetrics()
    registry = ModelRegistry(base, metrics)
    assert registry.poll() == 1
    assert "fraudscore_model_fast_path 1.0" in generate_latest(metrics.registry).decode()

    refused = ScorerMetrics()
    registry = ModelRegistry(base, refused, loader=lambda path: LoadedModel(path, compiler=_wrapping(_perturb_errors)))
    assert registry.poll() == 1
    assert registry.get().fast_path.runtime == fastpath.TENSORFLOW
    assert "fraudscore_model_fast_path 0.0" in generate_latest(refused.registry).decode()


@pytest.fixture(scope="module")
def staged_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fastpath-staged") / "fake"
    base.mkdir()
    build_fake_model(base, 1, second_stage=True, threshold=0.5, threshold_score="fraud_probability")
    return base


def test_fraud_probability_comes_from_the_fast_path_and_agrees(staged_base: Path) -> None:
    model = LoadedModel(staged_base / "1")
    assert model.fast_path.runtime == fastpath.LITERT, model.fast_path.detail
    assert model.has_fraud_probability and model.threshold_score == "fraud_probability"
    rows = _rows(300)
    fast, tf = model.score(rows), model.score_tensorflow(rows)
    assert fast.fraud_probability is not None and tf.fraud_probability is not None
    assert fast.fraud_probability.dtype == np.float32 and fast.fraud_probability.shape == (300,)
    np.testing.assert_allclose(fast.fraud_probability, tf.fraud_probability, atol=RTOL)
    # The signature thresholds the probability, not the reconstruction error.
    np.testing.assert_array_equal(fast.is_anomaly, fast.fraud_probability > np.float32(0.5))
    assert 0 < fast.is_anomaly.sum() < 300


def test_a_model_without_a_second_stage_has_no_fraud_probability(model: LoadedModel) -> None:
    assert not model.has_fraud_probability and model.score(_rows(3)).fraud_probability is None


def test_a_fast_path_whose_probability_disagrees_is_refused(staged_base: Path) -> None:
    def shift(out: dict[str, np.ndarray]) -> None:
        out["fraud_probability"] = out["fraud_probability"] + np.float32(1e-3)

    model = LoadedModel(staged_base / "1", compiler=_wrapping(shift))
    assert model.fast_path.detail.startswith("fast path refused: fraud_probability differs"), model.fast_path.detail


def test_a_card_and_signature_that_disagree_on_the_second_stage_are_refused(staged_base: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from fraudscore.model import CARD_FILE, ModelError

    broken = tmp_path / "1"
    shutil.copytree(staged_base / "1", broken)
    card = json.loads((broken / CARD_FILE).read_text())
    card.pop("second_stage")
    card["threshold"]["score"] = "reconstruction_error"
    (broken / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="has no second_stage but the signature has the fraud_probability output"):
        LoadedModel(broken)
