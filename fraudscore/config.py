"""Typed configuration, built once from flags and the environment.

No other module reads the environment: entry points build these objects and
pass them down. The official Google client libraries themselves read
``PUBSUB_EMULATOR_HOST`` / ``BIGTABLE_EMULATOR_HOST``, which is why the same
code talks to the local emulators and to Google Cloud without branching.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

# Beam rejects Pub/Sub project ids outside 6-30 characters ("demo" fails).
DEFAULT_PROJECT = "fraud-local"
DEFAULT_BIGTABLE_INSTANCE = "fraud-local"
SAMPLE_MAX_AGE_DAYS = 90  # how long a row of the traffic sample is kept


TOKEN_ENV = "FRAUDSCORE_TOKEN"


class ConfigError(ValueError):
    """A flag combination or file that cannot be used; the message names the flag."""


def read_file(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from None


def read_token(token_file: str | None, env: Mapping[str, str]) -> str | None:
    """The shared secret from ``--token-file`` (else env FRAUDSCORE_TOKEN), stripped; None when neither is set.

    The scorer's bearer token and the console's login token are read alike.
    """
    token = read_file(token_file, "--token-file").decode().strip() if token_file else env.get(TOKEN_ENV)
    if token is not None and not token:
        raise ConfigError(f"empty bearer token ({'--token-file' if token_file else TOKEN_ENV})")
    return token


@dataclass(frozen=True)
class ColumnFamily:
    """A Bigtable column family and its garbage-collection rule."""

    name: str
    max_versions: int = 1
    max_age_days: int | None = None


@dataclass(frozen=True)
class Resources:
    """Names of the Pub/Sub and Bigtable resources the services share."""

    project: str = DEFAULT_PROJECT
    transactions_topic: str = "transactions"
    transactions_subscription: str = "transactions-stream"
    alerts_topic: str = "fraud-alerts"
    alerts_subscription: str = "fraud-alerts-watch"
    dlq_topic: str = "transactions-dlq"
    dlq_subscription: str = "transactions-dlq-watch"
    bigtable_instance: str = DEFAULT_BIGTABLE_INSTANCE
    # Cases keyed for "all cases of card X, newest first" (see cases/store.py).
    cases_table: str = "flagged"
    # Secondary index keyed for "cases in a time range" without a hotspot.
    cases_by_time_table: str = "flagged-by-time"
    # A uniform, hash-chosen sample of all scored traffic (stream/sampling.py): the alert-rate estimate behind
    # `calibrate --budget` and the presumed-legit negatives of the second stage.
    sample_table: str = "traffic-sample"

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    @property
    def topic_subscriptions(self) -> dict[str, str]:
        """Each topic with the subscription the project reads it through."""
        return {
            self.transactions_topic: self.transactions_subscription,
            self.alerts_topic: self.alerts_subscription,
            self.dlq_topic: self.dlq_subscription,
        }

    @property
    def tables(self) -> dict[str, tuple[ColumnFamily, ...]]:
        """Each Bigtable table with its column families."""
        return {
            self.cases_table: (
                ColumnFamily("case", max_versions=1),  # the flagged transaction and its scores; a case's header
                ColumnFamily("member", max_versions=1),  # a card-episode case's members, one cell each (cases/)
                ColumnFamily("decision", max_versions=5),  # analyst labels, newest first
                ColumnFamily("audit", max_versions=1),  # who did what to a case, one column per action (cases/)
            ),
            self.cases_by_time_table: (ColumnFamily("ref", max_versions=1),),
            # Sampled rows expire after SAMPLE_MAX_AGE_DAYS: the estimate follows recent traffic.
            self.sample_table: (ColumnFamily("sample", max_versions=1, max_age_days=SAMPLE_MAX_AGE_DAYS),),
        }

    @property
    def bigtable_location(self) -> str:
        """``project/instance``, as messages name where the tables are."""
        return f"{self.project}/{self.bigtable_instance}"

    def at(self, project: str | None, instance: str | None) -> Resources:
        """These resources in another project and Bigtable instance, where given (a CLI's overrides)."""
        return replace(self, project=project or self.project, bigtable_instance=instance or self.bigtable_instance)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Resources:
        """The environment's resources with the ``--project``/``--instance`` of :func:`add_resource_arguments`."""
        return cls.from_env(env).at(args.project, args.instance)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Resources:
        env = os.environ if env is None else env
        return cls(
            project=env.get("FRAUDSCORE_PROJECT", DEFAULT_PROJECT),
            bigtable_instance=env.get("FRAUDSCORE_BIGTABLE_INSTANCE", DEFAULT_BIGTABLE_INSTANCE),
        )


def add_resource_arguments(parser: argparse.ArgumentParser) -> None:
    """``--project`` and ``--instance`` of a command on the shared Bigtable tables (:meth:`Resources.from_args`)."""
    parser.add_argument("--project", default=None, help="Google Cloud project (default $FRAUDSCORE_PROJECT)")
    parser.add_argument("--instance", default=None, help="Bigtable instance (default $FRAUDSCORE_BIGTABLE_INSTANCE)")


@dataclass(frozen=True)
class EmulatorConfig:
    """Where the local emulators listen; port 0 picks a free port."""

    host: str = "127.0.0.1"
    pubsub_port: int = 8085
    bigtable_port: int = 8086
    # Directory of the emulator binaries built by `make` (deploy/emulators/bin).
    bin_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent / "deploy/emulators/bin")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EmulatorConfig:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            host=env.get("FRAUDSCORE_EMULATOR_HOST", default.host),
            pubsub_port=int(env.get("FRAUDSCORE_PUBSUB_PORT", default.pubsub_port)),
            bigtable_port=int(env.get("FRAUDSCORE_BIGTABLE_PORT", default.bigtable_port)),
            bin_dir=Path(env.get("FRAUDSCORE_EMULATOR_BIN", default.bin_dir)),
        )
