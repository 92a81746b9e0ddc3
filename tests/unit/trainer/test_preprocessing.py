"""preprocessing_fn with golden values, through tf.Transform's own Beam implementation."""

from __future__ import annotations

import math
import tempfile
from typing import Any

import numpy as np
import pytest

from trainer.preprocessing import OUT_OF_RANGE, SCALED, STAT_MAX, STAT_MIN, make_preprocessing_fn, raw_feature_spec

NAMES = ("a", "flat", "Amount")
TRAIN = [
    {"a": -1.0, "flat": 3.0, "Amount": 0.0},
    {"a": 3.0, "flat": 3.0, "Amount": math.e - 1.0},  # log1p -> 1
    {"a": 1.0, "flat": 3.0, "Amount": math.e**2 - 1.0},  # log1p -> 2
]
LATER = [
    {"a": 5.0, "flat": 3.0, "Amount": math.e - 1.0},  # a above the range
    {"a": -3.0, "flat": 4.0, "Amount": -5.0},  # a below, flat differs, negative amount below
]


def analyze_and_transform(later: list[dict[str, float]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Analyzes TRAIN with tf.Transform on Beam, then applies the written transform to TRAIN and ``later``."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_feature_spec(NAMES)))
    fn = make_preprocessing_fn(NAMES, ("Amount",))
    with tempfile.TemporaryDirectory() as tmp:
        with beam.Pipeline(runner="FnApiRunner") as p, tft_beam.Context(temp_dir=tmp, force_tf_compat_v1=False):
            transform_fn = (p | beam.Create(TRAIN), metadata) | tft_beam.AnalyzeDataset(fn)
            _ = transform_fn | tft_beam.WriteTransformFn(f"{tmp}/out")
        output = tft.TFTransformOutput(f"{tmp}/out")

        def apply(rows: list[dict[str, float]]) -> list[dict[str, Any]]:
            raw = {n: tf.constant([r[n] for r in rows], tf.float32) for n in NAMES}
            out = {k: v.numpy() for k, v in output.transform_raw_features(raw).items()}
            return [{k: v[i] for k, v in out.items()} for i in range(len(rows))]

        return apply(TRAIN), apply(later)


@pytest.fixture(scope="module")
def outputs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return analyze_and_transform(LATER)


def by_a(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: float(r[SCALED][0]))


def test_training_rows_scale_to_unit_range(outputs: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    train, _ = outputs
    scaled = np.array([r[SCALED] for r in by_a(train)])
    # a: min -1, max 3; flat: zero range -> 0; Amount: log1p in [0, 2].
    np.testing.assert_allclose(scaled, [[0.0, 0.0, 0.0], [0.5, 0.0, 1.0], [1.0, 0.0, 0.5]], atol=1e-6)
    assert [int(r[OUT_OF_RANGE]) for r in train] == [0, 0, 0]
    np.testing.assert_allclose(train[0][STAT_MIN], [-1.0, 3.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(train[0][STAT_MAX], [3.0, 3.0, 2.0], atol=1e-6)


def test_later_rows_are_clipped_and_counted(outputs: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    _, later = outputs
    low, high = by_a(later)
    np.testing.assert_allclose(high[SCALED], [1.0, 0.0, 0.5], atol=1e-6)
    assert int(high[OUT_OF_RANGE]) == 1  # only a
    np.testing.assert_allclose(low[SCALED], [0.0, 0.0, 0.0], atol=1e-6)
    assert int(low[OUT_OF_RANGE]) == 3  # a below, flat off its constant, negative amount below 0
    # Statistics are those of the training rows, whatever later rows hold.
    np.testing.assert_allclose(low[STAT_MIN], [-1.0, 3.0, 0.0], atol=1e-6)


def test_unknown_log_feature_is_refused() -> None:
    with pytest.raises(ValueError, match="log features not among"):
        make_preprocessing_fn(NAMES, ("Amnt",))
