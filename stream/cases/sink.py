"""Beam sink for flagged cases: ``cases | WriteCases(project, instance, resources)``.

Kept apart from :mod:`stream.cases.store` so the ``fraudscore cases`` command
does not import Beam. Writes go through :class:`CaseStore`, the one place that
knows the row keys; they are idempotent, so Beam retrying a failed bundle
rewrites the same cells instead of making second cases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from fraudscore.config import Resources
from stream.cases.store import DEFAULT_BUCKETS, CaseStore
from stream.clients import per_process
from stream.records import Case

METRICS_NAMESPACE = "fraudscore"
DEFAULT_BATCH_SIZE = 500


class _WriteCasesFn(beam.DoFn):  # type: ignore[misc]
    """Buffers cases per bundle and writes them in batches through one process-wide CaseStore."""

    def __init__(
        self,
        project: str,
        instance: str,
        resources: Resources,
        buckets: int,
        batch_size: int,
        store_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._project = project
        self._instance = instance
        self._resources = resources
        self._buckets = buckets
        self._batch_size = batch_size
        self._store_factory = store_factory
        self._store: Any = None
        self._batch: list[Case] = []
        self._written = Metrics.counter(METRICS_NAMESPACE, "cases_written")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "case_write_failures")
        self._batch_sizes = Metrics.distribution(METRICS_NAMESPACE, "case_write_batch_size")

    def setup(self) -> None:
        if self._store_factory is not None:
            self._store = self._store_factory()
            return
        # One CaseStore (Bigtable client) per process and table set (see stream.clients).
        tag = f"case-store/{self._project}/{self._instance}/{self._resources!r}/{self._buckets}"
        self._store = per_process(tag, self._new_store)

    def _new_store(self) -> CaseStore:
        return CaseStore(self._project, self._instance, self._resources, buckets=self._buckets)

    def start_bundle(self) -> None:
        self._batch = []

    def process(self, case: Case) -> None:
        self._batch.append(case)
        if len(self._batch) >= self._batch_size:
            self._flush()

    def finish_bundle(self) -> None:
        # A bundle is committed only after this returns: nothing buffered is lost.
        self._flush()

    def teardown(self) -> None:
        # A store from the factory belongs to this DoFn; the shared one lives as long as the process uses it.
        if self._store is not None and self._store_factory is not None:
            self._store.close()
        self._store = None

    def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            written = self._store.write(batch)
        except Exception:
            # Counted, then re-raised so the runner retries the bundle (safe: writes are idempotent).
            self._failed.inc(len(batch))
            raise
        self._written.inc(written)
        self._batch_sizes.update(len(batch))


class WriteCases(beam.PTransform):  # type: ignore[misc]
    """Writes a PCollection of :class:`Case` to the ``flagged`` table and its time index."""

    def __init__(
        self,
        project: str,
        instance: str,
        resources: Resources,
        *,
        buckets: int = DEFAULT_BUCKETS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        store_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self._fn = _WriteCasesFn(project, instance, resources, buckets, batch_size, store_factory)

    def expand(self, cases: beam.PCollection) -> beam.PCollection:
        return cases | "WriteCaseRows" >> beam.ParDo(self._fn)
