"""The stream job: Pub/Sub (or a replayed file) -> parse -> score -> per-card windows -> cases + alerts.

::

    PullTransactions (local) | ReadTransactions (Dataflow) | ReplayTransactions   PubsubMessage
      -> ParseTransactions                      Transaction (event-time stamped) | DeadLetter
      -> ScoreTransactions (RunInference)       ScoredTransaction                | DeadLetter
      -> FlagCases (TX_ANOMALY now -> DedupeCases; card rules: CardStateCases, one stateful
                    DoFn per card (default), or CardWindows -> DedupeCases with --card-aggregation=windows)
      -> DeliverCases: claim + record (Bigtable, check-and-mutate), index, alert (fraud-alerts), alerted
    ScoredTransaction (hash-sampled at --sample-rate) -> WriteSample (Bigtable traffic-sample, stream.sampling)
    all DeadLetters -> PublishDeadLetters (transactions-dlq)

With PullTransactions (runners that auto-acknowledge, i.e. the DirectRunner) a message is
acknowledged by the sinks once its effects are durable (stream.ingest).

Streaming and replay share every step but the source: replay reads Kaggle or
generated CSVs (``.csv``, ``.csv.gz``, Kaggle's ``.zip``) or JSON lines (anything else) as a bounded
pipeline and scores with the model version current at launch.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from cases.episodes import EpisodeConfig, add_episode_arguments, episode_config
from fraudscore import csvfiles, internals, schema
from fraudscore.config import DEFAULT_PROJECT, Resources
from stream.ack_parts import AckPlan, check_sinks
from stream.case_sink import DeliverCases
from stream.flag_cases import AGGREGATIONS, FlagCases
from stream.inference import ScoreTransactions, latest_version_uri
from stream.ingest import PullTransactions
from stream.parse import ParseCsvFiles, ParseTransactions, json_line_message
from stream.rules import RuleConfig, add_rule_arguments, rule_thresholds
from stream.sample_sink import WriteSample
from stream.sampling import DEFAULT_SAMPLE_RATE, check_rate
from stream.sinks import PublishDeadLetters
from stream.windows import WindowConfig

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamConfig:
    """Everything the job needs besides the runner's own options."""

    model_base: str
    resources: Resources = field(default_factory=Resources)
    windows: WindowConfig = field(default_factory=WindowConfig)
    rules: RuleConfig = field(default_factory=RuleConfig)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)  # when a card's case ends; a legit close's snooze
    replay: str | None = None  # file pattern; None = read the transactions subscription
    epoch: datetime = schema.DEFAULT_EPOCH  # Time 0 of replayed CSVs
    model_refresh_s: float = 10.0
    model_refresh: str = "poll"  # or "side-input" (runners other than the Python DirectRunner)
    max_batch_size: int = 512
    id_label: str | None = None  # Pub/Sub de-duplication attribute, where the runner supports it
    card_aggregation: str = "state"  # streaming card windows: "state" (stateful DoFn) or "windows" (Beam)
    ingest: str = "auto"  # "pull" (ack once durable), "read" (ReadFromPubSub), "auto": read on Dataflow only
    sample_rate: float = DEFAULT_SAMPLE_RATE  # share of scored traffic kept in the durable sample (0: none)

    def __post_init__(self) -> None:
        check_rate(self.sample_rate)


INGESTS = ("auto", "pull", "read")


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's own flags (Beam's, like --runner, are parsed by Beam)."""
    defaults = Resources()
    w, r = WindowConfig(), RuleConfig()
    parser.add_argument("--model-base", required=True, help="model base directory (local or gs://) with versions")
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="Google Cloud project of Pub/Sub and Bigtable")
    for f in dataclasses.fields(Resources):
        if f.name != "project":
            flag = "--" + f.name.replace("_", "-")
            parser.add_argument(flag, default=getattr(defaults, f.name), help=f"{f.name} (default %(default)s)")
    parser.add_argument(
        "--subscription",
        dest="transactions_subscription",
        default=argparse.SUPPRESS,
        help="alias of --transactions-subscription",
    )
    parser.add_argument(
        "--replay",
        metavar="FILE",
        help="bounded run over a CSV (.csv, .csv.gz, .zip) or JSON-lines file (glob allowed)",
    )
    parser.add_argument("--epoch", default=schema.DEFAULT_EPOCH.isoformat(), help="event time of CSV Time=0")
    parser.add_argument("--window-size", type=int, default=w.size_s, help="card window size, seconds")
    parser.add_argument("--window-period", type=int, default=w.period_s, help="card window period, seconds")
    parser.add_argument("--early-fire", type=int, default=w.early_fire_s, help="early firing delay, seconds")
    parser.add_argument("--early-fire-count", type=int, default=w.early_fire_count, help="early firing after N txs")
    parser.add_argument("--allowed-lateness", type=int, default=w.allowed_lateness_s, help="seconds")
    add_rule_arguments(parser, r)
    parser.add_argument("--dedupe-ttl", type=int, default=r.dedupe_ttl_s, help="seconds a case id is remembered")
    add_episode_arguments(parser)
    parser.add_argument("--model-watch", type=float, default=10.0, help="seconds between checks for a new model")
    parser.add_argument(
        "--model-refresh",
        choices=("poll", "side-input"),
        default="poll",
        help="how a new model version is picked up: poll in the model handler (any runner) or RunInference's "
        "model side input (Dataflow; the Python DirectRunner cannot run it)",
    )
    parser.add_argument(
        "--card-aggregation",
        choices=AGGREGATIONS,
        default="state",
        help="streaming card windows: one stateful DoFn and timer per card, cases at once (state, default) or "
        "Beam sliding windows with early/on-time/late triggers and per-case de-duplication (windows)",
    )
    parser.add_argument(
        "--ingest",
        choices=INGESTS,
        default="auto",
        help="how Pub/Sub is read: pull (acknowledge each message once its effects are durable; for runners "
        "that acknowledge on read, like the DirectRunner), read (Beam's ReadFromPubSub, which acknowledges "
        "after Dataflow's checkpoint), auto (read on Dataflow, pull elsewhere)",
    )
    parser.add_argument("--max-batch-size", type=int, default=512, help="RunInference batch size limit")
    parser.add_argument(
        "--sample-rate",
        type=float,
        default=DEFAULT_SAMPLE_RATE,
        help="share of ALL scored transactions written to the durable traffic sample (table --sample-table), "
        "chosen by a hash of the transaction id so a redelivery decides the same; used by `fraudscore calibrate "
        "--budget` and as the second stage's presumed-legit negatives; 0 turns it off (default %(default)s)",
    )
    parser.add_argument(
        "--id-label", default=None, help="Pub/Sub attribute to de-duplicate on (Dataflow only; e.g. transaction_id)"
    )


def config_from_args(args: argparse.Namespace) -> StreamConfig:
    resource_names = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(Resources) if getattr(args, f.name, None)
    }
    return StreamConfig(
        model_base=args.model_base,
        resources=Resources(**resource_names),
        windows=WindowConfig(
            size_s=args.window_size,
            period_s=args.window_period,
            early_fire_s=args.early_fire,
            early_fire_count=args.early_fire_count,
            allowed_lateness_s=args.allowed_lateness,
        ),
        rules=RuleConfig(**rule_thresholds(args), dedupe_ttl_s=args.dedupe_ttl),
        episodes=episode_config(args),
        replay=args.replay,
        epoch=datetime.fromisoformat(args.epoch),
        model_refresh_s=args.model_watch,
        model_refresh=args.model_refresh,
        max_batch_size=args.max_batch_size,
        id_label=args.id_label,
        card_aggregation=args.card_aggregation,
        ingest=args.ingest,
        sample_rate=args.sample_rate,
    )


class ReadTransactions(beam.PTransform):
    """PBegin -> PCollection[PubsubMessage] from the transactions subscription (attributes kept)."""

    def __init__(self, subscription_path: str, id_label: str | None = None) -> None:
        super().__init__()
        self._subscription = subscription_path
        self._id_label = id_label

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return pbegin | "ReadFromPubSub" >> beam.io.ReadFromPubSub(
            subscription=self._subscription, with_attributes=True, id_label=self._id_label
        )


class ReplayTransactions(beam.PTransform):
    """PBegin -> {transactions, dead_letters} from files: CSV (Kaggle or generated) or JSON lines."""

    def __init__(self, pattern: str, epoch: datetime = schema.DEFAULT_EPOCH) -> None:
        super().__init__()
        self._pattern = pattern
        self._epoch = epoch

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        if csvfiles.is_csv_name(self._pattern):
            return (
                pbegin
                | "MatchFiles" >> fileio.MatchFiles(self._pattern)
                | "ReadMatches" >> fileio.ReadMatches()
                | "ParseCsv" >> ParseCsvFiles(self._epoch)
            )
        source = self._pattern
        return (
            pbegin
            | "ReadLines" >> beam.io.ReadFromText(self._pattern)
            | "AsMessages" >> beam.Map(json_line_message, source)
            | "ParseTransactions" >> ParseTransactions()
        )


def build(pipeline: beam.Pipeline, config: StreamConfig) -> AckPlan:
    """Adds the whole job to ``pipeline``; returns the acknowledgement plan derived from its sinks.

    The durable sinks are made first: what a pulled message owes before it is acknowledged is the union of
    the parts they declare (:mod:`stream.ack_parts`), told to the tracker upstream of all of them. At the
    end every sink of the built pipeline must be one of them (:func:`stream.ack_parts.check_sinks`).
    """
    res = config.resources
    deliver_cases = DeliverCases(res, episodes=config.episodes)
    write_sample = WriteSample(res, config.sample_rate) if config.sample_rate > 0 else None
    publish_dead_letters = PublishDeadLetters(res)
    plan = AckPlan.of(s for s in (deliver_cases, write_sample, publish_dead_letters) if s is not None)
    if config.replay:
        parsed = pipeline | "ReplayTransactions" >> ReplayTransactions(config.replay, config.epoch)
        version_uri = latest_version_uri(config.model_base)
        score = ScoreTransactions(
            config.model_base,
            version_uri=version_uri,
            max_batch_size=config.max_batch_size,
            plan=plan,
        )
    else:
        subscription = res.subscription_path(res.transactions_subscription)
        if config.ingest == "pull":
            messages = pipeline | "PullTransactions" >> PullTransactions(subscription)
        else:
            messages = pipeline | "ReadTransactions" >> ReadTransactions(subscription, config.id_label)
        parsed = messages | "ParseTransactions" >> ParseTransactions()
        score = ScoreTransactions(
            config.model_base,
            refresh_s=config.model_refresh_s,
            side_input=config.model_refresh == "side-input",
            max_batch_size=config.max_batch_size,
            plan=plan,
        )
    scored, score_dead = parsed.transactions | "ScoreTransactions" >> score
    cases = scored | "FlagCases" >> FlagCases(
        config.windows, config.rules, streaming=not config.replay, aggregation=config.card_aggregation
    )
    _ = cases | "DeliverCases" >> deliver_cases
    if write_sample is not None:
        _ = scored | "WriteSample" >> write_sample
    _ = (
        (parsed.dead_letters, score_dead)
        | "AllDeadLetters" >> beam.Flatten()
        | "DeadLettersOwe" >> beam.Map(plan.owe)  # upstream of every sink of dead letters
        | "PublishDeadLetters" >> publish_dead_letters
    )
    check_sinks(pipeline, plan)
    return plan


def run_with(
    config: StreamConfig,
    beam_argv: Sequence[str] = (),
    save_main_session: bool = True,
    test_pipeline: beam.Pipeline | None = None,
) -> beam.runners.runner.PipelineResult:
    """Builds and starts the job; streaming unless ``config.replay``. Returns without waiting."""
    if latest_version_uri(config.model_base) is None:
        raise SystemExit(f"no complete model version under {config.model_base}: train one first")
    options = PipelineOptions(list(beam_argv))
    options.view_as(SetupOptions).save_main_session = save_main_session
    options.view_as(StandardOptions).streaming = not config.replay
    if "--project" not in beam_argv:
        from apache_beam.options.pipeline_options import GoogleCloudOptions

        options.view_as(GoogleCloudOptions).project = config.resources.project
    if config.ingest == "auto":
        runner = str(options.view_as(StandardOptions).runner or "")
        config = dataclasses.replace(config, ingest="read" if "Dataflow" in runner else "pull")
    if config.ingest == "pull":
        # The local path: the DirectRunner's read and its per-key costs, replaced after checking that Beam's
        # internals are the ones the replacements were written for (the one place that patches anything).
        try:
            internals.install_local_runner()
        except internals.InternalsChanged as exc:
            raise SystemExit(f"the local runner's patches do not fit the installed libraries:\n{exc}") from exc
    pipeline = test_pipeline or beam.Pipeline(options=options)
    build(pipeline, config)
    return pipeline.run()


def run(
    argv: Sequence[str] | None = None,
    save_main_session: bool = True,
    test_pipeline: beam.Pipeline | None = None,
) -> beam.runners.runner.PipelineResult:
    """Parses app flags (Beam's pass through), builds and starts the job."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_app_arguments(parser)
    args, beam_argv = parser.parse_known_args(argv)
    config = config_from_args(args)
    return run_with(config, [*beam_argv, "--project", config.resources.project], save_main_session, test_pipeline)
