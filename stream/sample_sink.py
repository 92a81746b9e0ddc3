"""WriteSample: the stream's durable traffic sample (:mod:`stream.sampling`) into Bigtable, then its acknowledgements.

A sampled transaction's message owes this sink's part ``sample`` (declared by :meth:`WriteSample.releases`
for the transactions its filter keeps, with the same predicate; owed from scoring on, :mod:`stream.ack_parts`):
it is released in ``finish_bundle``, once the bundle's sample rows are written, like DeliverCases does
for cases. Its own step, not a branch of DeliverCases: the sample is one row per sampled transaction
with no claim or alert, and a slow alert path does not hold the sample (nor the other way round).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from cases.store import DEFAULT_BUCKETS
from fraudscore.config import Resources
from stream import ingest
from stream.ack_parts import SAMPLE, DurableSink, Part
from stream.case_sink import DEFAULT_BATCH_SIZE, METRICS_NAMESPACE, StoreFn
from stream.records import ScoredTransaction
from stream.sampling import sampled


class _WriteSampleFn(StoreFn):  # type: ignore[misc]
    """Buffers sampled transactions per bundle; writes them in batches; releases their parts after the last."""

    def __init__(
        self,
        resources: Resources,
        buckets: int,
        batch_size: int,
        rate: float,
        store_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(resources, buckets, batch_size, store_factory)
        self._rate = rate
        self._sampled: list[ScoredTransaction] = []
        self._releases: list[str] = []
        self._rows = Metrics.counter(METRICS_NAMESPACE, "sample_rows_written")

    def start_bundle(self) -> None:
        self._sampled = []
        self._releases = []

    def process(self, s: ScoredTransaction) -> None:
        self._sampled.append(s)
        self._releases.extend(s.ack_ids)
        if len(self._sampled) >= self._batch_size:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()  # a failure raises: nothing is released and the runner retries the bundle
        releases, self._releases = self._releases, []
        ingest.release(SAMPLE, releases)

    def _flush(self) -> None:
        if not self._sampled:
            return
        batch, self._sampled = self._sampled, []
        self._rows.inc(self._store.write_sample(batch, self._rate))


def _sampled(rate: float, s: ScoredTransaction) -> bool:
    return sampled(s.transaction_id, rate)


class WriteSample(DurableSink):
    """PCollection[ScoredTransaction] -> the sampled ones (hash of the transaction id < rate) in ``traffic-sample``."""

    def __init__(
        self,
        resources: Resources,
        rate: float,
        *,
        buckets: int = DEFAULT_BUCKETS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        store_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self._rate = rate
        self._fn = _WriteSampleFn(resources, buckets, batch_size, rate, store_factory)

    def releases(self) -> tuple[Part, ...]:
        return (Part(SAMPLE, ScoredTransaction, functools.partial(_sampled, self._rate)),)

    def expand(self, scored: beam.PCollection) -> beam.PCollection:
        (part,) = self.releases()
        return (
            scored
            | "Sampled" >> beam.Filter(part.owed_if)  # what it writes is what owes its part
            | "WriteSampleRows" >> beam.ParDo(self._fn)
        )
