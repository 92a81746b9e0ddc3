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

from cases.episode_rows import Episode, alerted_column, claim_column
from cases.episode_store import EpisodeStore
from cases.episodes import EpisodeConfig
from cases.records import Case
from cases.store import CLAIM_LEASE_S, DEFAULT_BUCKETS, HELD, WON, CaseStore, ClaimTarget
from fraudscore.config import Resources
from stream import ingest, metrics
from stream.ack_parts import CARD, TX_ANOMALY_CASE, DurableSink, Part
from stream.clients import per_process
from stream.records import Release, ScoredTransaction
from stream.rules import has_transaction_case
from stream.sinks import PUBLISH_TIMEOUT_S, episode_alert, new_publisher

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


class WriteCases(DurableSink):
    """Writes a PCollection of :class:`Case` to the ``flagged`` table and its time index (acknowledges nothing)."""

    def releases(self) -> tuple[Part, ...]:
        return ()

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
    """Flagged transactions and Release markers in; card-episode cases, one alert per escalation; then the releases.

    Per batch (at most ``batch_size`` transactions, and at the end of the bundle), through
    :class:`cases.episode_store.EpisodeStore`:

    1. skip the transactions already done (their ``id#`` row exists: a redelivery or a re-publish);
    2. assign each to its card's case, opening one where none is open (the card's pointer row moved by
       check-and-mutate, so workers and replays agree);
    3. write the member rows and the cases' member cells and index rows;
    4. claim each touched case's escalation, component by component (:mod:`cases.episodes`); a component
       held by another live writer is asked again until confirmed or its lease runs out (then taken over);
    5. publish one alert per case with won components (attribute ``case_id``), wait for Pub/Sub's
       confirmations, record ``alerted-<component>`` on the case row;
    6. write the members' ``id#`` rows: done.

    Only after the bundle's last batch are its Release markers' ack ids released (stream.ingest).
    A crash after 5's publish and before its record is the one window that repeats an alert: the claim
    is taken over after its lease and the alert published again (a duplicate, never a loss).
    """

    def __init__(
        self,
        resources: Resources,
        buckets: int,
        batch_size: int,
        lease_s: float,
        episodes: EpisodeConfig,
        store_factory: Callable[[], Any] | None = None,
        publisher_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(resources, buckets, batch_size, store_factory)
        self._topic = resources.topic_path(resources.alerts_topic)
        self._lease_s = lease_s
        self._episodes_config = episodes
        self._publisher_factory = publisher_factory
        self._publisher: Any = None
        self._cases: dict[str, Case] = {}
        self._releases: dict[str, list[str]] = {}
        self._already = Metrics.counter(METRICS_NAMESPACE, "alerts_already_sent")
        self._taken = Metrics.counter(METRICS_NAMESPACE, "alert_claims_waited")

    def setup(self) -> None:
        super().setup()
        self._publisher = (self._publisher_factory or (lambda: per_process("pubsub-publisher", new_publisher)))()

    def start_bundle(self) -> None:
        self._cases = {}
        self._releases = {}

    def process(self, element: Case | Release) -> None:
        if isinstance(element, Release):
            if element.part not in DELIVERED_PARTS:
                raise ValueError(f"DeliverCases releases parts {DELIVERED_PARTS}, not {element.part!r}")
            self._releases.setdefault(element.part, []).extend(element.ack_ids)
            return
        self._cases.setdefault(element.transaction_id, element)
        if len(self._cases) >= self._batch_size:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()
        releases, self._releases = self._releases, {}
        for part, ack_ids in releases.items():
            ingest.release(part, ack_ids)

    def _flush(self) -> None:
        if not self._cases:
            return
        batch, self._cases = list(self._cases.values()), {}
        episodes = EpisodeStore(self._store, self._episodes_config)
        done = episodes.already_done(batch)
        if done:
            metrics.members_already_done(len(done))
            batch = [c for c in batch if c.transaction_id not in done]
            if not batch:
                return
        members, touched, opened = episodes.assign(batch)
        episodes.write_members(members, touched)
        metrics.case_members(members, [e for e in touched.values() if e.case_id in opened])
        alerted = self._alert(episodes, list(touched.values()), members)
        episodes.mark_done(members, touched)
        metrics.alerts_published(alerted)
        self._written.inc(len(members))

    def _alert(self, episodes: EpisodeStore, touched: list[Episode], members: list[Case]) -> int:
        """Claims, publishes and records each touched case's escalation; returns how many alerts went out."""
        token = uuid.uuid4().hex
        pending = episodes.escalations(touched)
        deadline = time.monotonic() + self._lease_s + 30
        sent = 0
        by_case: dict[str, list[Case]] = {}
        for m in members:
            by_case.setdefault(m.episode_id, []).append(m)
        while pending:
            targets = [(e, c) for e, comps in pending for c in sorted(comps)]
            outcomes = self._store.claim_targets(
                [ClaimTarget(e.key.encode(), claim_column(c), alerted_column(c)) for e, c in targets],
                token,
                self._lease_s,
            )
            won: dict[str, tuple[Episode, list[str]]] = {}
            held: dict[str, tuple[Episode, set[str]]] = {}
            waits = []
            for (e, c), (outcome, wait) in zip(targets, outcomes, strict=True):
                if outcome == WON:
                    won.setdefault(e.case_id, (e, []))[1].append(c)
                elif outcome == HELD:
                    held.setdefault(e.case_id, (e, set()))[1].add(c)
                    waits.append(wait)
                else:
                    self._already.inc()
            if won:
                futures = []
                triggers = [_trigger(by_case.get(case_id, [])) for case_id in won]
                for (e, comps), trigger in zip(won.values(), triggers, strict=True):
                    data, attributes = episode_alert(e, comps, trigger)
                    futures.append(self._publisher.publish(self._topic, data, **attributes, alert_claim=token))
                message_ids = [f.result(timeout=PUBLISH_TIMEOUT_S) for f in futures]
                episodes.mark_alerted(
                    (e, comps, mid) for (e, comps), mid in zip(won.values(), message_ids, strict=True)
                )
                for (e, comps), trigger in zip(won.values(), triggers, strict=True):
                    metrics.case_alerted(e, comps, trigger)
                sent += len(won)
            if not held:
                break
            if time.monotonic() > deadline:
                first = next(iter(held))
                raise TimeoutError(f"{len(held)} case alert claim(s) neither confirmed nor expired; first {first}")
            self._taken.inc(len(held))
            time.sleep(min(max(min(waits), 0.05), 1.0))
            pending = [(e, frozenset(comps)) for e, comps in held.values()]
        return sent


def _trigger(members: list[Case]) -> Case | None:
    """The batch's member that stands for the alert: the highest error over threshold."""
    return max(members, key=lambda c: c.reconstruction_error / c.threshold if c.threshold else 0.0, default=None)


# The card path of every transaction (released after the cases its arrival made, or by the card step at once
# when it made none) and the TX_ANOMALY case of the transactions that have one.
_DELIVERED = (Part(CARD, ScoredTransaction), Part(TX_ANOMALY_CASE, ScoredTransaction, has_transaction_case))
DELIVERED_PARTS = tuple(p.name for p in _DELIVERED)


class DeliverCases(DurableSink):
    """PCollection[Case | Release] -> card-episode cases in Bigtable + one alert per escalation, ever; then acks.

    The durable idempotency records are the rows themselves (the card's pointer, the case row's claims,
    the members' id rows: :mod:`cases.episode_store`), so they hold across restarts, re-published
    messages and Dataflow workers alike.
    """

    def releases(self) -> tuple[Part, ...]:
        return _DELIVERED

    def __init__(
        self,
        resources: Resources,
        *,
        buckets: int = DEFAULT_BUCKETS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        lease_s: float = CLAIM_LEASE_S,
        episodes: EpisodeConfig | None = None,
        store_factory: Callable[[], Any] | None = None,
        publisher_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self._fn = _DeliverCasesFn(
            resources, buckets, batch_size, lease_s, episodes or EpisodeConfig(), store_factory, publisher_factory
        )

    def expand(self, cases: beam.PCollection) -> beam.PCollection:
        return cases | "DeliverCases" >> beam.ParDo(self._fn)
