"""Beam sinks for flagged cases: ``DeliverCases`` (the job's: rows, one alert per case, acknowledgements)
and ``WriteCases`` (rows only).

Kept apart from :mod:`cases.store` so the ``fraudscore cases`` command
does not import Beam. Writes go through :class:`CaseStore`, the one place that
knows the row keys; they are idempotent, so Beam retrying a failed bundle
rewrites the same cells instead of making second cases.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from cases.records import Case
from cases.store import CLAIM_LEASE_S, DEFAULT_BUCKETS, HELD, WON, CaseStore
from fraudscore.config import Resources
from stream import ingest, metrics
from stream.clients import per_process
from stream.records import Release
from stream.sinks import PUBLISH_TIMEOUT_S, alert_message, new_publisher

METRICS_NAMESPACE = "fraudscore"
DEFAULT_BATCH_SIZE = 500


class StoreFn(beam.DoFn):  # type: ignore[misc]
    """A DoFn writing through the process-wide CaseStore of its tables (or one from ``store_factory``)."""

    def __init__(
        self,
        resources: Resources,
        buckets: int,
        batch_size: int,
        store_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._resources = resources
        self._buckets = buckets
        self._batch_size = batch_size
        self._store_factory = store_factory
        self._store: Any = None

    def setup(self) -> None:
        if self._store_factory is not None:
            self._store = self._store_factory()
            return
        # One CaseStore (Bigtable client) per process and table set (see stream.clients).
        tag = f"case-store/{self._resources!r}/{self._buckets}"
        self._store = per_process(tag, self._new_store)

    def _new_store(self) -> CaseStore:
        return CaseStore(self._resources, buckets=self._buckets)

    def teardown(self) -> None:
        # A store from the factory belongs to this DoFn; the shared one lives as long as the process uses it.
        if self._store is not None and self._store_factory is not None:
            self._store.close()
        self._store = None


class _WriteCasesFn(StoreFn):  # type: ignore[misc]
    """Buffers cases per bundle and writes them in batches through one process-wide CaseStore.

    Takes StoreFn's constructor as is; the metrics are names only (Beam resolves them per bundle).
    """

    _written = Metrics.counter(METRICS_NAMESPACE, "cases_written")
    _failed = Metrics.counter(METRICS_NAMESPACE, "case_write_failures")
    _batch_sizes = Metrics.distribution(METRICS_NAMESPACE, "case_write_batch_size")
    _batch: list[Case]

    def start_bundle(self) -> None:
        self._batch = []

    def process(self, case: Case) -> None:
        self._batch.append(case)
        if len(self._batch) >= self._batch_size:
            self._flush()

    def finish_bundle(self) -> None:
        # A bundle is committed only after this returns: nothing buffered is lost.
        self._flush()

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
        resources: Resources,
        *,
        buckets: int = DEFAULT_BUCKETS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        store_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self._fn = _WriteCasesFn(resources, buckets, batch_size, store_factory)

    def expand(self, cases: beam.PCollection) -> beam.PCollection:
        return cases | "WriteCaseRows" >> beam.ParDo(self._fn)


class _DeliverCasesFn(_WriteCasesFn):  # type: ignore[misc]
    """Cases and Release markers in; each case's row, index and alert exactly once; then the releases.

    Per batch (at most ``batch_size`` cases, and at the end of the bundle):

    1. claim each case (:meth:`CaseStore.claim_many`: check-and-mutate on its row, writing the record;
       one round of them for the batch);
       cases whose alert is out already are dropped; a claim held by another live writer is asked
       again until it is confirmed or its lease runs out (then taken over);
    2. write the won cases' index rows;
    3. publish their alerts (attribute ``case_id``) and wait for Pub/Sub's confirmations;
    4. record ``alerted`` (the message id) on their rows.

    Only after the bundle's last batch are its Release markers' ack ids released (stream.ingest).
    A crash after 3 and before 4 is the one window that repeats an alert: the claim is then taken
    over after its lease and the alert published again (a duplicate, never a loss).
    """

    def __init__(
        self,
        resources: Resources,
        buckets: int,
        batch_size: int,
        lease_s: float,
        store_factory: Callable[[], Any] | None = None,
        publisher_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(resources, buckets, batch_size, store_factory)
        self._topic = resources.topic_path(resources.alerts_topic)
        self._lease_s = lease_s
        self._publisher_factory = publisher_factory
        self._publisher: Any = None
        self._cases: dict[str, Case] = {}
        self._releases: list[str] = []
        self._already = Metrics.counter(METRICS_NAMESPACE, "alerts_already_sent")
        self._taken = Metrics.counter(METRICS_NAMESPACE, "alert_claims_waited")

    def setup(self) -> None:
        super().setup()
        self._publisher = (self._publisher_factory or (lambda: per_process("pubsub-publisher", new_publisher)))()

    def start_bundle(self) -> None:
        self._cases = {}
        self._releases = []

    def process(self, element: Case | Release) -> None:
        if isinstance(element, Release):
            self._releases.extend(element.ack_ids)
            return
        self._cases.setdefault(element.case_id, element)
        if len(self._cases) >= self._batch_size:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()
        releases, self._releases = self._releases, []
        ingest.release(releases)

    def _flush(self) -> None:
        if not self._cases:
            return
        batch, self._cases = list(self._cases.values()), {}
        token = uuid.uuid4().hex
        won = self._claim(batch, token)
        if not won:
            return
        self._store.write_index(won)
        futures = []
        for case in won:
            data, attributes = alert_message(case)
            # The claim behind the alert: two alerts of one case (the documented crash window) differ here.
            futures.append(self._publisher.publish(self._topic, data, **attributes, alert_claim=token))
        message_ids = [f.result(timeout=PUBLISH_TIMEOUT_S) for f in futures]
        self._store.mark_alerted(zip(won, message_ids, strict=True))
        now = time.time()
        for case in won:
            metrics.stage_lag("alert", now - case.event_time.timestamp())
        metrics.alerts_published(len(won))
        self._written.inc(len(won))

    def _claim(self, cases: list[Case], token: str) -> list[Case]:
        won: list[Case] = []
        pending = cases
        deadline = time.monotonic() + self._lease_s + 30
        while pending:
            # One check-and-mutate round for the whole batch (CaseStore.claim_many), not a call per case.
            outcomes = self._store.claim_many(pending, token, self._lease_s)
            held = [(c, wait) for c, (outcome, wait) in zip(pending, outcomes, strict=True) if outcome == HELD]
            won.extend(c for c, (outcome, _) in zip(pending, outcomes, strict=True) if outcome == WON)
            self._already.inc(sum(1 for outcome, _ in outcomes if outcome not in (WON, HELD)))
            if not held:
                break
            if time.monotonic() > deadline:
                first = held[0][0].case_id
                raise TimeoutError(f"{len(held)} case claim(s) neither confirmed nor expired; first {first}")
            self._taken.inc(len(held))
            time.sleep(min(max(min(w for _, w in held), 0.05), 1.0))
            pending = [c for c, _ in held]
        return won


class DeliverCases(beam.PTransform):  # type: ignore[misc]
    """PCollection[Case | Release] -> Bigtable rows + one alert per case, ever; then acknowledgements.

    The durable idempotency record is the case row itself (:meth:`CaseStore.claim`), so it holds
    across restarts, re-published messages and Dataflow workers alike.
    """

    def __init__(
        self,
        resources: Resources,
        *,
        buckets: int = DEFAULT_BUCKETS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        lease_s: float = CLAIM_LEASE_S,
        store_factory: Callable[[], Any] | None = None,
        publisher_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self._fn = _DeliverCasesFn(resources, buckets, batch_size, lease_s, store_factory, publisher_factory)

    def expand(self, cases: beam.PCollection) -> beam.PCollection:
        return cases | "DeliverCases" >> beam.ParDo(self._fn)
