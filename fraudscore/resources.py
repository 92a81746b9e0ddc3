"""Creating the resources the services share (topics, subscriptions, Bigtable tables), and closing a Bigtable client.

Shared runtime, not a development tool: ``fraudscore emulators`` and the demo call
:func:`create_resources` against the local emulators, ``docker compose``'s init service and
``deploy/dataflow/create_resources.sh`` against Google Cloud, and :mod:`cases.store` closes
its client with :func:`close_bigtable_client`. It uses only the official clients, which find
emulators through ``PUBSUB_EMULATOR_HOST`` / ``BIGTABLE_EMULATOR_HOST`` or else talk to Google
Cloud with Application Default Credentials. The names come from :mod:`fraudscore.config`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fraudscore.config import ColumnFamily, Resources

if TYPE_CHECKING:
    from google.cloud.bigtable.column_family import GarbageCollectionRule

ACK_DEADLINE_SECONDS = 60


@dataclass
class ResourceReport:
    """What :func:`create_resources` did, by resource path."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # column families whose GC rule was changed


def gc_rule(family: ColumnFamily) -> GarbageCollectionRule:
    """The family's Bigtable GC rule.

    Both settings are limits, so a cell goes as soon as it breaks either (a union):
    beyond ``max_versions`` newer versions, or older than ``max_age_days``.
    """
    from datetime import timedelta

    from google.cloud.bigtable import column_family as cf

    versions = cf.MaxVersionsGCRule(family.max_versions)
    if family.max_age_days is None:
        return versions
    return cf.GCRuleUnion([versions, cf.MaxAgeGCRule(timedelta(days=family.max_age_days))])


def create_resources(resources: Resources, *, ack_deadline_seconds: int = ACK_DEADLINE_SECONDS) -> ResourceReport:
    """Creates the topics, their subscriptions and the Bigtable tables; idempotent.

    Uses only the official clients, which find the emulators through the
    environment (:meth:`Emulators.exported_env`) or else talk to Google Cloud
    with Application Default Credentials. The Bigtable instance must exist
    (any name does on the emulator). Existing tables get missing column
    families added and GC rules brought up to date.
    """
    report = ResourceReport()
    _create_pubsub(resources, ack_deadline_seconds, report)
    _create_bigtable(resources, report)
    return report


def _create_pubsub(resources: Resources, ack_deadline_seconds: int, report: ResourceReport) -> None:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    with PublisherClient() as publisher, SubscriberClient() as subscriber:
        for topic, subscription in resources.topic_subscriptions.items():
            topic_path = resources.topic_path(topic)
            try:
                publisher.create_topic(request={"name": topic_path})
                report.created.append(topic_path)
            except AlreadyExists:
                report.existing.append(topic_path)
            sub_path = resources.subscription_path(subscription)
            try:
                subscriber.create_subscription(
                    request={"name": sub_path, "topic": topic_path, "ack_deadline_seconds": ack_deadline_seconds}
                )
                report.created.append(sub_path)
            except AlreadyExists:
                report.existing.append(sub_path)


def _create_bigtable(resources: Resources, report: ResourceReport) -> None:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import bigtable

    # The client warns "Connecting to Bigtable emulator" whenever it builds a channel; here that is the point.
    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator", category=RuntimeWarning)
    client = bigtable.Client(project=resources.project, admin=True)
    try:
        instance = client.instance(resources.bigtable_instance)
        for name, families in resources.tables.items():
            table = instance.table(name)
            wanted = {family.name: gc_rule(family) for family in families}
            try:
                table.create(column_families=wanted)
                report.created.append(table.name)
                continue
            except AlreadyExists:
                report.existing.append(table.name)
            current = table.list_column_families()
            for family_name, rule in wanted.items():
                family = table.column_family(family_name, gc_rule=rule)
                if family_name not in current:
                    family.create()
                    report.created.append(f"{table.name}/columnFamilies/{family_name}")
                elif current[family_name].gc_rule != rule:
                    family.update()
                    report.updated.append(f"{table.name}/columnFamilies/{family_name}")
    finally:
        close_bigtable_client(client)


def close_bigtable_client(client: Any) -> None:
    """Closes a ``google.cloud.bigtable.Client`` completely.

    google-cloud-bigtable 2.50's ``Client.close()`` closes only its HTTP session; the gRPC clients it
    builds lazily (the data client also runs a thread pool) would stay open in a long-lived process.
    """
    from fraudscore import internals

    # Private fields, read so that closing builds nothing: guarded in fraudscore.internals.
    internals.require("bigtable-lazy-data-client")
    internals.require("bigtable-lazy-admin-client")
    data_client = getattr(client, "_table_data_client", None)
    if data_client is not None:
        data_client.close()
    admin_client = getattr(client, "_table_admin_client", None)
    if admin_client is not None:
        admin_client.transport.close()
    client.close()


def describe_resources(resources: Resources) -> list[str]:
    """One line per resource, for status output."""
    lines = [f"topic {topic:<20} subscription {sub}" for topic, sub in resources.topic_subscriptions.items()]
    for table, families in resources.tables.items():
        described = ", ".join(
            f"{f.name} (max {f.max_versions} version{'s' if f.max_versions != 1 else ''}"
            + (f", {f.max_age_days} days)" if f.max_age_days is not None else ")")
            for f in families
        )
        lines.append(f"table {resources.bigtable_instance}/{table}: {described}")
    return lines
