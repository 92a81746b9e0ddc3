"""Detection on the shipped real rows: no blind spot far outside the training data, explanations that explain.

The default design is trained on ``samples/creditcard-real-dev.csv.gz`` (real Kaggle rows) and scored through
its exported SavedModel. Probes are the test split's normal rows moved outside everything the model was
trained on; the same autoencoder served without the envelope rule (clipped, one residual axis) misses them,
which is what these tests would catch if the rule were lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudscore import features
from fraudscore.model import LoadedModel, load, top_k
from tests.conftest import quick_config
from trainer.config import TrainResult

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "creditcard-real-dev.csv.gz"
PROBE_GOAL = 0.99


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, LoadedModel, pd.DataFrame]:
    from trainer import train
    from trainer.split import split

    root = tmp_path_factory.mktemp("real")
    # The shipped design as `fraudscore train` runs it (its epochs and batch size), seeded.
    config = quick_config(
        SAMPLE,
        root / "models" / "creditcard",
        epochs=150,
        batch_size=1024,
        patience=5,
        seed=0,
        work_dir=str(root / "work"),
        keep_work_dir=True,
        plots=False,
    )
    result = train(config)
    frame = pd.read_csv(SAMPLE)
    parts = split(frame, has_labels=True)
    return result, load(result.version_dir.parent), pd.concat([parts.train.assign(part="train"), parts.test])


def _probes(model: LoadedModel, data: pd.DataFrame) -> dict[str, np.ndarray]:
    names = list(model.features)
    train = data[data["part"] == "train"][names].to_numpy(np.float64)
    test = data[(data["part"] != "train") & (data[features.LABEL] == 0)][names].to_numpy(np.float64)
    lo, hi = train.min(axis=0), train.max(axis=0)
    v = [i for i, n in enumerate(names) if n != features.AMOUNT]
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {"normals": test}
    for factor in (20, 100):
        p = test.copy()
        p[:, v] *= factor
        out[f"x{factor}"] = p
    for direction in ("above", "below"):
        p = test.copy()
        j = rng.choice(v, len(p))
        span = hi[j] - lo[j]
        p[np.arange(len(p)), j] = hi[j] + 10 * span if direction == "above" else lo[j] - 10 * span
        out[f"10 ranges {direction}"] = p
    return out


def test_far_outside_the_training_data_is_flagged(real: tuple[TrainResult, LoadedModel, pd.DataFrame]) -> None:
    _, model, data = real
    shares = {name: float(np.mean(model.score(rows).is_anomaly)) for name, rows in _probes(model, data).items()}
    assert shares["normals"] <= 0.005, shares
    for name in ("x20", "x100", "10 ranges above", "10 ranges below"):
        assert shares[name] >= PROBE_GOAL, (name, shares)


def test_the_same_model_without_the_envelope_rule_has_the_blind_spot(
    real: tuple[TrainResult, LoadedModel, pd.DataFrame],
) -> None:
    """The control: what the probe test above would see if the rule were lost (it must fail there)."""
    import tensorflow as tf

    from trainer.export import build_module

    result, model, data = real
    assert result.transform_dir is not None
    bare = build_module(
        result.autoencoder, str(result.transform_dir), model.features, model.threshold, result.error_weights
    )
    rows = _probes(model, data)["x20"].astype(np.float32)
    out: dict[str, Any] = bare.serve({n: tf.constant(rows[:, i]) for i, n in enumerate(model.features)})
    assert "envelope_distance" not in out
    assert float(np.mean(out["is_anomaly"].numpy())) < PROBE_GOAL


def test_explanations_are_per_transaction_and_faithful(real: tuple[TrainResult, LoadedModel, pd.DataFrame]) -> None:
    """On the real frauds the model flags: the top features differ between frauds, and putting a fraud's top-3
    back to the training median removes more of its score than putting 3 random features back."""
    _, model, data = real
    frauds = data[data[features.LABEL] == 1][list(model.features)].to_numpy(np.float32)
    scores = model.score(frauds, explain=True)
    flagged = scores.is_anomaly & (scores.reconstruction_error > model.threshold)
    rows, error = frauds[flagged], scores.reconstruction_error[flagged]
    assert scores.contributions is not None and model.medians is not None and len(rows) >= 5
    order, _, has = top_k(scores.contributions[flagged], 3)
    assert has.all()
    assert len({tuple(sorted(o)) for o in order.tolist()}) >= 2
    at = np.arange(len(rows))[:, None]
    top = rows.copy()
    top[at, order] = model.medians[order]
    top_drop = error - model.score(top).reconstruction_error
    rng = np.random.default_rng(0)
    random_drops = []
    for _ in range(10):
        pick = np.array([rng.choice(rows.shape[1], 3, replace=False) for _ in rows])
        r = rows.copy()
        r[at, pick] = model.medians[pick]
        random_drops.append(error - model.score(r).reconstruction_error)
    ratio = top_drop / np.maximum(np.mean(random_drops, axis=0), 1e-12)
    assert float(np.median(ratio)) >= 2.0, ratio
    assert np.all(top_drop > 0)
