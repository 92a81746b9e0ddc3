"""ScoreTransactions: RunInference over the fraud model, with live model updates.

The stock TensorFlow handler feeds one tensor; the model's serving signature
takes one named ``[None]`` tensor per raw feature, so :class:`FraudModelHandler`
wraps ``fraudscore.model`` (which owns loading, the feature list from the card
and the threshold) and builds those inputs from batches of Transactions.

Model updates without a restart, two ways (``--model-refresh``):

- ``poll`` (default, every runner): the handler checks the model base at most
  every ``refresh_s`` seconds, from inside ``run_inference``, for a newer
  *complete* version, loads it and swaps it in, by the version policy of
  ``fraudscore.versions`` shared with the scorer (an integer directory with both
  ``saved_model.pb`` and the model card; a version that fails to load is retried
  once per check, ``MAX_LOAD_ATTEMPTS`` times in all, then given up).
- ``side-input``: RunInference's model-metadata side input, fed by
  :class:`WatchModelVersions`, a small PeriodicImpulse watcher emitting the
  newest complete version when its number grows. Not ``WatchFilePattern``: it
  picks the newest ``saved_model.pb`` by modification time, so it would pick a
  version the trainer is still writing in a temp directory. For Dataflow; the
  Python DirectRunner cannot run it in streaming: PeriodicImpulse's splittable
  DoFn fails the runner's override check next to ReadFromPubSub ("not replaced
  as expected"), and its streaming side inputs block the main input until the
  side input's watermark passes the end of the global window, i.e. forever.
  WatchFilePattern is built on the same PeriodicImpulse and fails the same way.

Model bases may be local directories or any Beam filesystem (``gs://...`` on
Dataflow): a remote version directory is copied to local disk before loading.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.coders import StrUtf8Coder
from apache_beam.ml.inference.base import ModelHandler, ModelMetadata, RunInference
from apache_beam.transforms import trigger, userstate, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from fraudscore import collector, schema
from fraudscore import model as fmodel
from fraudscore.v1.transaction_pb2 import Transaction
from fraudscore.versions import VersionWatcher, latest_version_uri
from stream import ingest, metrics
from stream.ack_parts import AckPlan
from stream.clients import per_process
from stream.parse import event_seconds
from stream.records import DeadLetter, ScoredTransaction

_LOG = logging.getLogger(__name__)
SCORED = "scored"
DEAD_LETTERS = "dead_letters"


def _is_remote(uri: str) -> bool:
    return "://" in uri


def localize(version_uri: str) -> Path:
    """A local directory holding the version (remote ones are copied to a temp dir)."""
    if not _is_remote(version_uri):
        return Path(version_uri)
    from apache_beam.io.filesystems import FileSystems

    target = Path(tempfile.mkdtemp(prefix="fraudscore-model-")) / posixpath.basename(version_uri.rstrip("/"))
    prefix = version_uri.rstrip("/") + "/"
    for result in FileSystems.match([prefix + "**"]):
        for meta in result.metadata_list:
            local = target / meta.path[len(prefix) :]
            local.parent.mkdir(parents=True, exist_ok=True)
            with FileSystems.open(meta.path) as src, open(local, "wb") as dst:
                dst.write(src.read())
    return target


def load_version(uri: str) -> fmodel.LoadedModel:
    """Loads one version directory (local or on any Beam filesystem)."""
    return fmodel.LoadedModel(localize(uri))


class _VersionPoller:
    """Per process and model base: the newest version seen by polling (``fraudscore.versions``' policy).

    Process-wide because runners re-create DoFns (and their handler copies) per bundle: state kept on
    the handler would reset and poll the model base on every batch.
    """

    def __init__(self, model_base: str) -> None:
        self._watcher = VersionWatcher(model_base, load_version)
        self._lock = threading.Lock()
        self._last_check = float("-inf")
        self._swapped: fmodel.LoadedModel | None = None

    def current(self, model: fmodel.LoadedModel, refresh_s: float, clock: Callable[[], float]) -> fmodel.LoadedModel:
        with self._lock:
            in_use = self._swapped if self._swapped and self._swapped.version > model.version else model
            if clock() - self._last_check < refresh_s:
                return in_use
            self._last_check = clock()
            found = self._watcher.poll(in_use.version)  # a refused version is logged there
            if found is None:  # keep scoring with the model we have
                return in_use
            self._swapped = found
            _LOG.info("switched to model version %d (threshold %g)", self._swapped.version, self._swapped.threshold)
            metrics.model_loaded(self._swapped.card.name, self._swapped.version)
            return self._swapped


def _optional(output: np.ndarray | None, n: int) -> list[float | None]:
    """An optional output per row (the second stage's probability, the envelope distance), or None for each
    row when the version has no such output."""
    if output is None:
        return [None] * n
    return [float(v) for v in output.tolist()]


_LOADED: dict[str, fmodel.LoadedModel] = {}  # version URI -> model: the newest one RunInference loaded here
_LOADED_LOCK = threading.Lock()


class FraudModelHandler(ModelHandler[Transaction, ScoredTransaction, fmodel.LoadedModel]):
    """Loads a fraudscore model version and scores batches of Transactions."""

    def __init__(
        self,
        model_base: str,
        version_uri: str | None = None,
        *,
        top_k: int = 3,
        max_batch_size: int = 512,
        refresh_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(min_batch_size=1, max_batch_size=max_batch_size)
        self._model_base = model_base
        self._version_uri = version_uri
        self._top_k = top_k
        self._refresh_s = refresh_s
        self._clock = clock

    def load_model(self) -> fmodel.LoadedModel:
        uri = self._version_uri or latest_version_uri(self._model_base)
        if uri is None:
            raise fmodel.ModelError(f"no complete model version under {self._model_base}")
        with _LOADED_LOCK:
            # RunInference keeps its model behind a weak reference (apache_beam.utils.shared), and on the
            # DirectRunner every bundle sets up a new DoFn whose set-up acquires another Shared object,
            # which drops the model's keep-alive: once the garbage collector ran, the next bundle loaded
            # the version again (every ~10 s, 1-3 s each with the LiteRT conversion, the job stalled).
            # The process keeps its newest loaded version here instead.
            cached = _LOADED.get(uri)
            if cached is not None:
                return cached
            loaded = load_version(uri)
            _LOADED.clear()
            _LOADED[uri] = loaded
        # The model, Beam and the clients are in memory for good now: full collections skip them (the card
        # states at rest are not tracked, see stream.direct_runner), so a full collection is short.
        collector.freeze_long_lived()
        _LOG.info("scoring with model %s version %d (threshold %g)", loaded.card.name, loaded.version, loaded.threshold)
        metrics.model_loaded(loaded.card.name, loaded.version)
        return loaded

    def update_model_path(self, model_path: str | None = None) -> None:
        if model_path:
            self._version_uri = model_path

    def _current(self, model: fmodel.LoadedModel) -> fmodel.LoadedModel:
        """``model``, or a newer complete version found by polling (``refresh_s``)."""
        if self._refresh_s is None:
            return model
        base = self._model_base
        poller = per_process(f"model-poller/{base}", lambda: _VersionPoller(base))
        return poller.current(model, self._refresh_s, self._clock)

    def run_inference(
        self,
        batch: Sequence[Transaction],
        model: fmodel.LoadedModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[ScoredTransaction]:
        model = self._current(model)
        rows = schema.feature_matrix(batch, model.features)
        scores = model.score(rows, explain=True)
        # Python scalars once per batch (tolist), metrics once per batch: per-element numpy indexing and
        # metric calls were a large share of a replay's CPU.
        errors = [float(e) for e in scores.reconstruction_error.tolist()]
        anomalies = [bool(a) for a in scores.is_anomaly.tolist()]
        out_of_range = [int(o) for o in scores.out_of_range_count.tolist()]
        event_times = [event_seconds(tx) for tx in batch]
        metrics.scored_batch(errors, anomalies, out_of_range)
        now = time.time()
        metrics.stage_lags("scored", (now - t for t in event_times))
        order, shares, has_error = fmodel.top_features(scores, self._top_k)
        names = model.features
        top_features = [
            tuple((names[j], share) for j, share in zip(cols, row_shares, strict=True)) if has else ()
            for cols, row_shares, has in zip(order.tolist(), shares.tolist(), has_error.tolist(), strict=True)
        ]
        name, version, threshold = model.card.name, model.version, model.threshold
        raws = [row.tobytes() for row in rows.astype("<f4", copy=False)]  # ScoredTransaction.raw
        probabilities = _optional(scores.fraud_probability, len(batch))
        distances = _optional(scores.envelope_distance, len(batch))
        limit = model.envelope_limit
        return [
            ScoredTransaction(
                transaction_id=tx.transaction_id,
                card_id=tx.card_id,
                merchant_id=tx.merchant_id,
                event_time=event_times[i],
                amount=float(tx.amount),
                reconstruction_error=errors[i],
                is_anomaly=anomalies[i],
                top_features=top_features[i],
                out_of_range=out_of_range[i],
                model_name=name,
                model_version=version,
                threshold=threshold,
                raw=raws[i],
                feature_names=names,
                fraud_probability=probabilities[i],
                envelope_distance=distances[i],
                envelope_limit=limit,
            )
            for i, tx in enumerate(batch)
        ]

    def get_metrics_namespace(self) -> str:
        return metrics.NAMESPACE

    def get_num_bytes(self, batch: Sequence[Transaction]) -> int:
        return sum(tx.ByteSize() for tx in batch)


_LAST_SPEC = userstate.ReadModifyWriteStateSpec("last", StrUtf8Coder())
_LAST_PARAM = beam.DoFn.StateParam(_LAST_SPEC)


class _EmitOnNewerVersion(beam.DoFn):
    """Passes a version URI on only when its version number is higher than the last one passed."""

    def process(self, element: tuple[str, str], last: Any = _LAST_PARAM) -> Iterator[ModelMetadata]:
        _, uri = element
        if not uri:
            return
        previous = last.read()
        version = int(posixpath.basename(uri.rstrip("/")))
        if previous is not None and int(posixpath.basename(previous.rstrip("/"))) >= version:
            return
        last.write(uri)
        yield ModelMetadata(model_id=uri, model_name=f"v{version}")


class WatchModelVersions(beam.PTransform):
    """PBegin -> PCollection[ModelMetadata]: the newest complete version, re-checked every ``interval_s``."""

    def __init__(self, model_base: str, interval_s: float = 10.0) -> None:
        super().__init__()
        self._model_base = model_base
        self._interval_s = interval_s

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        base = self._model_base
        return (
            pbegin
            | "Tick" >> PeriodicImpulse(start_timestamp=Timestamp.now(), fire_interval=self._interval_s)
            | "NewestComplete" >> beam.Map(lambda _: ("model", latest_version_uri(base) or ""))
            | "OnlyNewer" >> beam.ParDo(_EmitOnNewerVersion())
            | "AsSideInput"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterProcessingTime(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        )


def _failed_batch_to_dead_letters(failure: tuple[Sequence[Transaction], tuple[Any, str, Any]]) -> Iterator[DeadLetter]:
    batch, (_, message, _) = failure
    for tx in batch:
        metrics.dead_letter("score_error", stage="score")
        yield DeadLetter(
            schema.to_json(tx),
            {"transaction_id": tx.transaction_id},
            "score",
            "<model>",
            message,
            "score_error",
            ingest.take(tx.transaction_id),
        )


def _with_event_time_and_acks(s: ScoredTransaction, plan: AckPlan | None = None) -> TimestampedValue:
    """Stamps a scored transaction with its event time and gives it its message's ack ids (pulled ingest).

    Here, upstream of every sink, its messages are told the parts they owe: those the job's sinks
    declare for it (``plan``, :mod:`stream.ack_parts`).
    """
    ack_ids = ingest.take(s.transaction_id)
    if ack_ids:
        s = dataclasses.replace(s, ack_ids=ack_ids)
        if plan is not None:
            plan.owe(s)
    return TimestampedValue(s, s.event_time)


class ScoreTransactions(beam.PTransform):
    """PCollection[Transaction] -> (PCollection[ScoredTransaction], PCollection[DeadLetter]).

    With ``refresh_s`` set (streaming), the model follows the newest complete
    version under the model base, by polling in the handler or, with
    ``side_input=True``, through RunInference's side input; without it
    (replay), the version resolved when the pipeline is built is used throughout.
    """

    def __init__(
        self,
        model_base: str,
        *,
        version_uri: str | None = None,
        refresh_s: float | None = None,
        side_input: bool = False,
        max_batch_size: int = 512,
        plan: AckPlan | None = None,
    ) -> None:
        super().__init__()
        self._plan = plan  # what a scored transaction's messages owe the job's sinks
        self._model_base = model_base
        self._version_uri = version_uri
        self._refresh_s = refresh_s
        self._side_input = side_input
        self._max_batch_size = max_batch_size

    def expand(self, transactions: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        poll = None if self._side_input else self._refresh_s
        handler = FraudModelHandler(
            self._model_base, self._version_uri, max_batch_size=self._max_batch_size, refresh_s=poll
        )
        side: Any = None
        if self._side_input and self._refresh_s is not None:
            side = transactions.pipeline | "WatchModel" >> WatchModelVersions(self._model_base, self._refresh_s)
        scored, failed = (
            transactions
            | "RunInference"
            >> RunInference(
                handler, model_metadata_pcoll=side, metrics_namespace=metrics.NAMESPACE
            ).with_exception_handling()
        )
        dead = failed.failed_inferences | "FailedToDeadLetters" >> beam.FlatMap(_failed_batch_to_dead_letters)
        # BatchElements emits each batch at the end of the global window, so outputs lose their
        # event time: stamp each scored transaction with its own again for the card windows.
        restamped = scored | "EventTime" >> beam.Map(_with_event_time_and_acks, self._plan)
        return restamped, dead
