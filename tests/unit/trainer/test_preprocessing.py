"""preprocessing_fn with golden values, through tf.Transform's own Beam implementation."""

from __future__ import annotations

import math
import tempfile
from typing import Any

import numpy as np
import pytest

from trainer.preprocessing import (
    OUT_OF_RANGE,
    SCALED,
    STAT_CENTER,
    STAT_MAX,
    STAT_MIN,
    STAT_SCALE,
    make_preprocessing_fn,
    raw_feature_spec,
)

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


def analyze_and_transform(
    later: list[dict[str, float]], scaling: str = "minmax", clip: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Analyzes TRAIN with tf.Transform on Beam, then applies the written transform to TRAIN and ``later``."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_feature_spec(NAMES)))
    fn = make_preprocessing_fn(NAMES, ("Amount",), scaling=scaling, clip=clip)
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


# z-score without clipping. tft.var is the population variance: a in TRAIN is -1, 3, 1 (mean 1, sd sqrt(8/3)),
# log1p(Amount) is 0, 1, 2 (mean 1, sd sqrt(2/3)); flat has sd 0 and scales to 0.
SD_A, SD_AMOUNT = math.sqrt(8 / 3), math.sqrt(2 / 3)


@pytest.fixture(scope="module")
def zscore_outputs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return analyze_and_transform(LATER, scaling="zscore", clip=False)


def test_zscore_centers_and_scales_training_rows_by_mean_and_sd(
    zscore_outputs: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    train, _ = zscore_outputs
    scaled = np.array([r[SCALED] for r in by_a(train)])
    r = math.sqrt(1.5)  # 2 / SD_A == 1 / SD_AMOUNT
    np.testing.assert_allclose(scaled, [[-r, 0.0, -r], [0.0, 0.0, r], [r, 0.0, 0.0]], atol=1e-5)
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-6)
    assert [int(row[OUT_OF_RANGE]) for row in train] == [0, 0, 0]
    np.testing.assert_allclose(train[0][STAT_CENTER], [1.0, 3.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(train[0][STAT_SCALE], [SD_A, 0.0, SD_AMOUNT], atol=1e-5)
    # min and max stay the training range: they decide what counts as out of range
    np.testing.assert_allclose(train[0][STAT_MIN], [-1.0, 3.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(train[0][STAT_MAX], [3.0, 3.0, 2.0], atol=1e-6)


def test_zscore_without_clip_passes_later_values_through_and_counts_them(
    zscore_outputs: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    _, later = zscore_outputs
    low, high = by_a(later)
    # a = 5: (5 - 1) / sd, beyond the training maximum's 1.22 (clipping would give exactly that)
    np.testing.assert_allclose(high[SCALED], [4 / SD_A, 0.0, 0.0], atol=1e-5)
    assert int(high[OUT_OF_RANGE]) == 1
    # a = -3; flat = 4 (zero sd: 0, but counted); Amount = -5 -> -log1p(5), below the training minimum 0
    np.testing.assert_allclose(low[SCALED], [-4 / SD_A, 0.0, (-math.log1p(5.0) - 1.0) / SD_AMOUNT], atol=1e-5)
    assert int(low[OUT_OF_RANGE]) == 3
    np.testing.assert_allclose(low[STAT_CENTER], [1.0, 3.0, 1.0], atol=1e-6)


def test_zscore_with_clip_clips_to_the_training_range_first() -> None:
    _, later = analyze_and_transform(LATER, scaling="zscore", clip=True)
    low, high = by_a(later)
    r = math.sqrt(1.5)
    np.testing.assert_allclose(high[SCALED], [r, 0.0, 0.0], atol=1e-5)  # a clipped to 3
    np.testing.assert_allclose(low[SCALED], [-r, 0.0, -r], atol=1e-5)  # a to -1, log Amount to 0
    assert [int(high[OUT_OF_RANGE]), int(low[OUT_OF_RANGE])] == [1, 3]  # counted all the same


def test_minmax_without_clip_extends_past_the_unit_range() -> None:
    _, later = analyze_and_transform(LATER, scaling="minmax", clip=False)
    low, high = by_a(later)
    np.testing.assert_allclose(high[SCALED], [1.5, 0.0, 0.5], atol=1e-6)  # (5 + 1) / 4
    np.testing.assert_allclose(low[SCALED], [-0.5, 0.0, -math.log1p(5.0) / 2], atol=1e-6)
    assert [int(high[OUT_OF_RANGE]), int(low[OUT_OF_RANGE])] == [1, 3]


def test_unknown_scaling_is_refused() -> None:
    with pytest.raises(ValueError, match="scaling 'robust': expected one of minmax, zscore"):
        make_preprocessing_fn(NAMES, ("Amount",), scaling="robust")
