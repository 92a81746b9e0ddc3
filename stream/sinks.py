"""PublishAlerts and PublishDeadLetters: Pub/Sub sinks that work in streaming and replay.

Beam's WriteToPubSub only runs in streaming pipelines, and replay is a bounded
one, so both sinks are a DoFn around the official PublisherClient: the client
is made in setup() and closed in teardown(); publishes are asynchronous and
finish_bundle() waits for all of them, so a bundle commits only once Pub/Sub
has every message (a failure raises and the runner retries the bundle).
Alerts are keyed by case id upstream, so a retry can repeat an alert only
when the job itself fails over; consumers de-duplicate on ``case_id``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

import apache_beam as beam

from cases.episode_rows import Episode
from cases.records import Case
from fraudscore.config import Resources
from stream import ingest, metrics
from stream.ack_parts import DEAD_LETTER, DurableSink, Part
from stream.clients import per_process
from stream.records import DeadLetter

PUBLISH_TIMEOUT_S = 60.0

# An element -> (data, attributes).
Encoder = Callable[[Any], tuple[bytes, dict[str, str]]]


def alert_message(case: Case) -> tuple[bytes, dict[str, str]]:
    return case.to_alert(), {
        "case_id": case.case_id,
        "card_id": case.card_id,
        "reasons": ",".join(case.reasons),
        "model_version": str(case.model_version),
    }


def episode_alert(episode: Episode, components: Iterable[str], trigger: Case | None) -> tuple[bytes, dict[str, str]]:
    """The alert of a card-episode case's escalation: the case so far, what escalated, the member behind it.

    ``kind`` is ``opened`` for a case's first alert, ``escalated`` for a later one. The triggering member
    carries the scores, the top contributing features, the model version and the threshold.
    """
    comps = sorted(components)
    first = not episode.alerted  # nothing alerted (nor snoozed) before these
    data = episode.to_json_dict() | {
        "kind": "opened" if first else "escalated",
        "escalation": comps,
        "transaction": trigger.to_json_dict() if trigger else None,
        "model_version": trigger.model_version if trigger else None,
        "top_features": [{"name": n, "share": s} for n, s in trigger.top_features] if trigger else [],
    }
    attributes = {
        "case_id": episode.case_id,
        "card_id": episode.card_id,
        "reasons": ",".join(episode.reasons),
        "kind": data["kind"],
        "escalation": ",".join(comps),
        "model_version": str(data["model_version"]),
        "transaction_id": trigger.transaction_id if trigger else "",  # the member behind it (latency checks)
    }
    return json.dumps(data, sort_keys=True).encode("utf-8"), attributes


def dead_letter_message(dead: DeadLetter) -> tuple[bytes, dict[str, str]]:
    return dead.payload, dead.dlq_attributes()


PUBLISH_BATCH_LATENCY_S = 0.002


def new_publisher() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    # The sinks publish a bundle's messages in one loop and then wait for them all, on the DirectRunner's
    # single worker thread: the client's default 10 ms wait for more messages to batch was pure delay.
    return pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(max_latency=PUBLISH_BATCH_LATENCY_S))


def _alert_lag(case: Case) -> None:
    metrics.stage_lag("alert", time.time() - case.event_time.timestamp())


class _PublishFn(beam.DoFn):
    def __init__(
        self,
        topic_path: str,
        encode: Encoder,
        on_published: Callable[[int], None],
        on_each: Callable[[Any], None] | None = None,
        part: str | None = None,
    ) -> None:
        self._topic_path = topic_path
        self._part = part  # the acknowledgement part released once an element's publish is confirmed
        self._encode = encode
        self._on_published = on_published
        self._on_each = on_each  # called per element once its publish is confirmed
        self._client: Any = None
        self._pending: list[tuple[Future[str], Any]] = []

    def setup(self) -> None:
        # One client per process, shared by every instance of the DoFn: the DirectRunner re-creates
        # DoFns per bundle, and a new PublisherClient each time was a measurable share of the streaming job's CPU.
        self._client = per_process("pubsub-publisher", new_publisher)

    def start_bundle(self) -> None:
        self._pending = []

    def process(self, element: Any) -> None:
        data, attributes = self._encode(element)
        self._pending.append((self._client.publish(self._topic_path, data, **attributes), element))

    def finish_bundle(self) -> None:
        pending, self._pending = self._pending, []
        for future, element in pending:
            future.result(timeout=PUBLISH_TIMEOUT_S)
            if self._on_each is not None:
                self._on_each(element)
        if pending:
            self._on_published(len(pending))
            if self._part is not None:  # published: this part of the messages behind them is done (pulled ingest)
                ingest.release(self._part, (a for _, element in pending for a in element.ack_ids))

    def teardown(self) -> None:
        self._client = None  # shared; its batches are flushed by finish_bundle's waits


class PublishAlerts(DurableSink):
    """PCollection[Case] -> the alerts topic, one JSON message (Case.to_alert()) per case (acknowledges nothing)."""

    def releases(self) -> tuple[Part, ...]:
        return ()

    def __init__(self, resources: Resources) -> None:
        super().__init__()
        self._topic = resources.topic_path(resources.alerts_topic)

    def expand(self, cases: beam.PCollection) -> beam.PCollection:
        return cases | "Publish" >> beam.ParDo(
            _PublishFn(self._topic, alert_message, metrics.alerts_published, _alert_lag)
        )


class PublishDeadLetters(DurableSink):
    """PCollection[DeadLetter] -> the dead-letter topic: original payload, reason/field/stage attributes."""

    def releases(self) -> tuple[Part, ...]:
        return (Part(DEAD_LETTER, DeadLetter),)

    def __init__(self, resources: Resources) -> None:
        super().__init__()
        self._topic = resources.topic_path(resources.dlq_topic)

    def expand(self, dead: beam.PCollection) -> beam.PCollection:
        return dead | "Publish" >> beam.ParDo(
            _PublishFn(self._topic, dead_letter_message, metrics.dead_letters_published, part=DEAD_LETTER)
        )
