"""The tf.Transform full pass: statistics of the training normals, as a Beam pipeline.

The training normals are written to Parquet and read back by Beam as Arrow
record batches fed straight to ``AnalyzeDataset`` with a tfx-bsl
``TensorAdapterConfig``. Measured on this machine for 170k x 29 rows: about
8 s end to end, against 27-48 s for ``beam.Create`` of the same record batches
(Beam pickles and bz2-compresses ``Create``'s values into the pipeline proto)
and 174 s for ``beam.Create`` of dicts. A file source is also what a
distributed runner needs: pass ``--runner=...`` and a work dir its workers can
read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.preprocessing import (
    OUT_OF_RANGE,
    SCALED,
    STAT_CENTER,
    STAT_MAX,
    STAT_MIN,
    STAT_SCALE,
    UNSCALED,
    make_preprocessing_fn,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

INPUT_FILE = "train_normals.parquet"
TRANSFORM_DIR = "transform_fn"
ROW_GROUP = 50_000
# Beam 2.77's DirectRunner first tries the Prism runner, which it downloads from GitHub; for a bounded
# pipeline it then runs the in-process FnApiRunner anyway. Use that directly: no download, same engine.
DEFAULT_RUNNER = "FnApiRunner"
TRANSFORM_CHUNK = 100_000


def _join(base: str, *parts: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    return str(FileSystems.join(base, *parts))


def _to_list_columns(table: pa.Table, names: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Parquet row groups (scalar columns) -> record batches of one-element lists, as TensorAdapter expects."""
    import pyarrow as pa

    for batch in table.to_batches():
        offsets = pa.array(np.arange(batch.num_rows + 1, dtype=np.int64))
        columns = [pa.LargeListArray.from_arrays(offsets, batch.column(name)) for name in names]
        yield pa.RecordBatch.from_arrays(columns, list(names))


def _adapter_config(names: Sequence[str]) -> Any:
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.tfxio.tensor_adapter import TensorAdapterConfig

    schema = pa.schema([(name, pa.large_list(pa.float32())) for name in names])
    dense = schema_pb2.TensorRepresentation.DenseTensor
    representations = {
        name: schema_pb2.TensorRepresentation(dense_tensor=dense(column_name=name, shape=schema_pb2.FixedShape()))
        for name in names
    }
    return TensorAdapterConfig(schema, representations)


def write_input(train: pd.DataFrame, names: Sequence[str], work_dir: str) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    path = _join(work_dir, INPUT_FILE)
    table = pa.Table.from_arrays([pa.array(train[n].to_numpy(np.float32)) for n in names], list(names))
    with FileSystems.create(path) as f:
        pq.write_table(table, f, row_group_size=ROW_GROUP)
    return path


def analyze(
    train: pd.DataFrame,
    names: Sequence[str],
    log_features: Sequence[str],
    work_dir: str,
    beam_args: Sequence[str] = (),
    *,
    scaling: str = "minmax",
    clip: bool = True,
) -> str:
    """Runs the analysis over ``train`` (the training normals) and returns the transform output dir."""
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    source = _join(work_dir, INPUT_FILE)
    if not FileSystems.exists(source):  # one input file serves every preprocessing variant of a search
        write_input(train, names, work_dir)
    out = _join(work_dir, f"{TRANSFORM_DIR}-{scaling}-{'clip' if clip else 'noclip'}")
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append(f"--runner={DEFAULT_RUNNER}")
    options = PipelineOptions(args)
    log.info("tf.Transform analysis over %d training normals (%s)", len(train), " ".join(args))
    with (
        beam.Pipeline(options=options) as pipeline,
        tft_beam.Context(temp_dir=_join(work_dir, "tft_tmp"), force_tf_compat_v1=False),
    ):
        batches = (
            pipeline
            | "ReadTrainingNormals" >> beam.io.ReadFromParquetBatched(source, columns=list(names))
            | "ToListColumns" >> beam.FlatMap(_to_list_columns, list(names))
        )
        transform_fn = (batches, _adapter_config(names)) | "Analyze" >> tft_beam.AnalyzeDataset(
            make_preprocessing_fn(names, log_features, scaling, clip)
        )
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out)
    return out


class Transformer:
    """Applies a written transform in-process (offline), for training and evaluation."""

    def __init__(self, transform_dir: str, names: Sequence[str]) -> None:
        import tensorflow_transform as tft

        self.names = tuple(names)
        self.output = tft.TFTransformOutput(transform_dir)
        self._layer = self.output.transform_features_layer()

    def _call(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        result = self._layer({n: tf.constant(v, dtype=tf.float32) for n, v in columns.items()})
        return {k: v.numpy() for k, v in result.items()}

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(scaled [n, F] float32, out-of-range count [n] int32) for the raw rows of ``frame``."""
        scaled, outside = [], []
        for start in range(0, max(len(frame), 1), TRANSFORM_CHUNK):
            part = frame.iloc[start : start + TRANSFORM_CHUNK]
            out = self._call({n: part[n].to_numpy(np.float32) for n in self.names})
            scaled.append(out[SCALED])
            outside.append(out[OUT_OF_RANGE])
        return np.concatenate(scaled).astype(np.float32), np.concatenate(outside).astype(np.int32)

    def unscaled(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows of ``frame`` after the log and before clipping and scaling ([n, F] float32)."""
        parts = [
            self._call({n: frame[n].iloc[start : start + TRANSFORM_CHUNK].to_numpy(np.float32) for n in self.names})[
                UNSCALED
            ]
            for start in range(0, max(len(frame), 1), TRANSFORM_CHUNK)
        ]
        return np.concatenate(parts).astype(np.float32)

    def statistics(self) -> dict[str, np.ndarray]:
        """The analyzers' per-feature min, max, center and scale, read back from the transform graph."""
        out = self._call({n: np.zeros(1, np.float32) for n in self.names})
        keys = {"min": STAT_MIN, "max": STAT_MAX, "center": STAT_CENTER, "scale": STAT_SCALE}
        return {name: out[key][0].astype(np.float64) for name, key in keys.items()}
