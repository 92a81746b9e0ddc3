"""The exported model against the trainer's own computation, its card, report and atomic export.

Uses the session's quick train (tests/conftest.py); each test states the property it guards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudscore import features
from fraudscore.model import CARD_FILE, LoadedModel, ModelCard, load
from trainer import analyze, autoencoder, data, export, split
from trainer.config import TrainResult
from trainer.evaluate import offline_errors, offline_scores

pytestmark = pytest.mark.integration

FEATURES = list(features.MODEL_FEATURES)


def rows_with_outliers(train_csv: Path, n: int = 1500) -> pd.DataFrame:
    """Real rows plus copies pushed far outside the training range (to exercise clipping)."""
    frame = pd.read_csv(train_csv).iloc[:n]
    wild = frame.iloc[:40].copy()
    wild[["V1", "V4", "Amount"]] *= 40.0
    wild[["V1", "V4"]] += 1000.0  # real V features stay within about +-120: surely out of range
    return pd.concat([frame, wild], ignore_index=True)


def test_signature_on_raw_rows_equals_keras_on_offline_transformed_rows(
    train_result: TrainResult, trained_model: LoadedModel, train_csv: Path
) -> None:
    frame = rows_with_outliers(train_csv)
    assert train_result.transform_dir is not None
    scaled, outside = analyze.Transformer(str(train_result.transform_dir), FEATURES).transform(frame)
    expected, expected_per_feature = autoencoder.errors(train_result.autoencoder, scaled, train_result.error_weights)

    got = trained_model.score(frame[FEATURES].to_numpy())
    np.testing.assert_allclose(got.reconstruction_error, expected, rtol=1e-5, atol=1e-7)
    # Per-feature terms share out the row's error (their sum is F x the mean): each agrees to 1e-5 of that sum
    # (a tiny term of a PCA-coded model carries more relative rounding between runtimes than the sum does).
    row_scale = expected[:, None] * len(FEATURES) * 1e-5 + 1e-7
    assert np.all(np.abs(got.feature_errors - expected_per_feature) <= row_scale)
    np.testing.assert_array_equal(got.out_of_range_count, outside)
    assert (got.out_of_range_count[-40:] >= 1).all()  # the pushed rows are counted, not just clipped
    # Flagged above the threshold, or beyond the training normals' envelope whatever the error: every pushed row.
    assert got.envelope_distance is not None
    outside_envelope = got.envelope_distance > np.float32(trained_model.card.raw["envelope"]["limit_widths"])
    above = got.reconstruction_error > np.float32(trained_model.threshold)
    np.testing.assert_array_equal(got.is_anomaly, above | outside_envelope)
    assert outside_envelope[-40:].all() and got.is_anomaly.any() and not got.is_anomaly.all()


def test_offline_errors_from_the_version_dir_agree_with_the_signature(
    trained_model: LoadedModel, train_csv: Path
) -> None:
    frame = rows_with_outliers(train_csv, 500)
    offline = offline_scores(frame, trained_model.path)
    got = trained_model.score(frame[FEATURES].to_numpy())
    np.testing.assert_allclose(offline.reconstruction_error, got.reconstruction_error, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(offline.out_of_range_count, got.out_of_range_count)
    # The [n, F] array form in card order gives the same.
    np.testing.assert_allclose(
        offline_errors(frame[FEATURES].to_numpy(), trained_model.path), got.reconstruction_error, rtol=1e-5, atol=1e-7
    )


def training_normals(train_csv: Path) -> pd.DataFrame:
    return split.split(data.load_csv(train_csv).frame, True).train


def card_bounds(card: dict, stats_key: str = "statistics") -> tuple[np.ndarray, np.ndarray]:
    stats = card[stats_key]
    return np.array([stats[n]["min"] for n in FEATURES]), np.array([stats[n]["max"] for n in FEATURES])


def in_model_space(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[FEATURES].astype(np.float64)
    out["Amount"] = np.sign(out["Amount"]) * np.log1p(np.abs(out["Amount"]))
    return out


def test_card_holds_the_contract_and_statistics_of_the_training_normals(
    trained_model: LoadedModel, train_csv: Path
) -> None:
    card = json.loads((trained_model.path / CARD_FILE).read_text())
    assert card["name"] == "creditcard" and card["version"] == 1
    assert card["features"] == FEATURES
    assert card["threshold"]["policy"] == "best-f1" and card["threshold"]["chosen_on"] == "validation"
    assert card["threshold"]["value"] == pytest.approx(trained_model.threshold)
    for key in ("roc_auc", "pr_auc", "precision", "recall", "f1", "tp", "fp", "fn", "tn"):
        assert key in card["metrics"], key
    assert card["data"]["sha256"] == hashlib.sha256(train_csv.read_bytes()).hexdigest()
    assert sum(s["rows"] for s in card["splits"].values()) == card["data"]["rows_used"] == 20_000
    assert card["splits"]["train"]["frauds"] == 0
    assert {"tensorflow", "tensorflow-transform", "apache-beam", "keras"} <= set(card["libraries"])
    assert card["training_seconds"] > 0 and card["training"]["epochs_run"] >= 1

    lo, hi = card_bounds(card)
    normals = in_model_space(training_normals(train_csv)).astype(np.float32)
    np.testing.assert_allclose(lo, normals.min().to_numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hi, normals.max().to_numpy(), rtol=1e-6, atol=1e-6)
    # Frauds lie outside that range somewhere, so including them would have shown.
    frame = pd.read_csv(train_csv)
    frauds = in_model_space(frame[frame[features.LABEL] == 1])
    assert ((frauds.min().to_numpy() < lo) | (frauds.max().to_numpy() > hi)).any()


def test_statistics_do_not_change_when_test_and_fraud_rows_change(
    trained_model: LoadedModel, train_csv: Path, tmp_path: Path
) -> None:
    loaded = data.load_csv(train_csv).frame
    parts = split.split(loaded, True)
    later = loaded[features.TIME] > parts.train[features.TIME].max()
    changed = loaded.copy()
    wild = later.to_numpy() | (loaded[features.LABEL] == 1).to_numpy()
    changed.loc[wild, FEATURES] = changed.loc[wild, FEATURES] * 100.0
    assert wild.sum() > 7000  # validation + test normals and every fraud

    train = split.split(changed, True).train
    out = analyze.analyze(train, FEATURES, ("Amount",), str(tmp_path))
    stats = analyze.Transformer(out, FEATURES).statistics()
    lo, hi = stats["min"], stats["max"]
    card = json.loads((trained_model.path / CARD_FILE).read_text())
    card_lo, card_hi = card_bounds(card)
    np.testing.assert_allclose(lo, card_lo, rtol=1e-6)
    np.testing.assert_allclose(hi, card_hi, rtol=1e-6)


def test_artifact_works_after_the_transform_output_is_deleted(
    train_result: TrainResult, trained_model: LoadedModel, train_csv: Path, tmp_path: Path
) -> None:
    frame = rows_with_outliers(train_csv, 300)
    before = trained_model.score(frame[FEATURES].to_numpy())
    base = tmp_path / "models" / "creditcard"
    shutil.copytree(train_result.version_dir, base / "1")
    shutil.rmtree(base / "1" / export.EXTRA_DIR)  # the offline copies go too: serving must not need them
    assert train_result.transform_dir is not None
    moved = tmp_path / "moved-away"
    shutil.move(str(train_result.transform_dir), moved)
    try:
        assert not train_result.transform_dir.exists()
        after = load(base).score(frame[FEATURES].to_numpy())
    finally:
        shutil.move(str(moved), train_result.transform_dir)
    np.testing.assert_array_equal(after.reconstruction_error, before.reconstruction_error)
    np.testing.assert_array_equal(after.out_of_range_count, before.out_of_range_count)


def test_report_compares_with_baselines_and_says_who_wins(train_result: TrainResult) -> None:
    report_dir = train_result.version_dir / "report"
    report = json.loads((report_dir / "report.json").read_text())
    models = report["models"]
    assert {"autoencoder", "isolation_forest"} <= set(models) and any(k.startswith("pca_") for k in models)
    pca = next(v for k, v in models.items() if k.startswith("pca_"))
    ae = models["autoencoder"]["pr_auc"]
    assert ("beats every baseline" in report["verdict"]) == (ae >= max(m["pr_auc"] for m in models.values()))
    assert ("LOSES" in report["verdict"]) == (ae < pca["pr_auc"] or ae < models["isolation_forest"]["pr_auc"])
    labels = [row["threshold"] for row in report["table"]]
    assert labels[0] == "calibrated" and any("oracle" in label for label in labels)
    md = (report_dir / "report.md").read_text()
    assert "112 frauds / 1 FP" in md and "| autoencoder |" in md
    for png in ("pr_curve.png", "roc_curve.png", "error_histogram.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # The model learned something: far better than flagging at random (PR-AUC = fraud share ~ 0.025).
    assert ae > 0.3


def test_tensorboard_logs_one_directory_per_run(train_result: TrainResult) -> None:
    tb = Path(train_result.card["training"]["tensorboard_dir"])
    base = train_result.version_dir.parent
    assert tb.parent == base.parent.parent / "runs" / base.name
    events = list(tb.glob("*/events.out.tfevents.*"))
    assert {e.parent.name for e in events} == {"train", "validation"}
    assert all(e.stat().st_size > 0 for e in events)


def test_export_is_atomic_for_a_polling_reader(train_result: TrainResult, train_csv: Path, tmp_path: Path) -> None:
    base = tmp_path / "models" / "atomic"
    frame = pd.read_csv(train_csv).iloc[:64]
    rows = frame[FEATURES].to_numpy(np.float32)
    assert train_result.transform_dir is not None
    scaled, _ = analyze.Transformer(str(train_result.transform_dir), FEATURES).transform(frame)
    check_errors, _ = autoencoder.errors(train_result.autoencoder, scaled, train_result.error_weights)
    seen: list[tuple[str, frozenset[str]]] = []
    stop = threading.Event()

    def snapshot(d: Path) -> frozenset[str]:
        return frozenset(str(p.relative_to(d)) for p in d.rglob("*"))

    def poll() -> None:
        while not stop.is_set():
            if base.is_dir():
                for d in base.iterdir():
                    if d.name.isdigit():
                        seen.append((d.name, snapshot(d)))
            time.sleep(0.001)

    def extras(tmp: Path, version: int) -> ModelCard:
        (tmp / "report").mkdir(exist_ok=True)
        (tmp / "report" / "report.md").write_text("stand-in\n")
        return ModelCard.from_dict({**train_result.card, "version": version})

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(2):
            export.export(
                base=base,
                autoencoder=train_result.autoencoder,
                transform_dir=str(train_result.transform_dir),
                names=FEATURES,
                threshold=float(train_result.card["threshold"]["value"]),
                weights=train_result.error_weights,
                check_rows=rows,
                check_errors=check_errors,
                write_extras=extras,
            )
    finally:
        stop.set()
        reader.join()
    final = {d.name: snapshot(d) for d in base.iterdir() if d.name.isdigit()}
    assert set(final) == {"1", "2"}
    assert not [d for d in base.iterdir() if d.name.startswith(".tmp")]
    assert seen, "the reader never saw a version"
    for name, files in seen:
        assert files == final[name], f"version {name} was visible before it was complete"
    assert load(base).version == 2
