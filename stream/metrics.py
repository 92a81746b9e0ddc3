"""The stream job's metrics, counted twice: Beam Metrics and Prometheus.

Beam Metrics (namespace ``fraudscore``) are what Dataflow shows and what
``PipelineResult.metrics()`` returns on any runner. Prometheus series are what
the local dashboard scrapes from ``fraudscore stream`` (DirectRunner runs the
DoFns in that process; on Dataflow the Prometheus objects are simply never
served). The Prometheus names below are a contract with deploy/ dashboards.

Beam counters have no labels, so a label value becomes part of the Beam
metric name (``transactions_anomaly``, ``flagged_CARD_BURST``...). Beam
distributions are integers: errors are recorded in millionths, lags in ms.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from apache_beam.metrics import Metrics
from prometheus_client import Counter, Gauge, Histogram

from cases.episode_rows import Episode
from cases.episodes import REASON_PREFIX
from cases.records import Case
from fraudscore.telemetry import RECONSTRUCTION_ERROR_BUCKETS
from stream import direct_runner

NAMESPACE = "fraudscore"

TRANSACTIONS = Counter(
    "fraudscore_stream_transactions_total",
    "Transactions seen by the stream job, by outcome (normal, anomaly, invalid, score_error).",
    ["outcome"],
)
FLAGGED = Counter("fraudscore_stream_flagged_total", "Cases emitted after de-duplication, by reason code.", ["reason"])
ALERTS = Counter(
    "fraudscore_stream_alerts_published_total",
    "Alerts confirmed published to the alerts topic: one per case opened, one per escalation (cases/episodes.py).",
)
CASES_OPENED = Counter(
    "fraudscore_stream_cases_opened_total",
    "Card-episode cases opened, by the opening transaction's first reason code: what an analyst must look at.",
    ["reason"],
)
CASES_ESCALATED = Counter(
    "fraudscore_stream_cases_escalated_total",
    "Alerts on an already alerted case, by what escalated: a new reason code, or BAND (a higher score band).",
    ["reason"],
)
CASE_MEMBERS = Counter(
    "fraudscore_stream_case_members_total",
    "Flagged transactions written as members of a case (over cases opened: members per case).",
)
DEAD_LETTERS = Counter(
    "fraudscore_stream_dead_letters_total", "Messages sent to the dead-letter topic, by reason code.", ["reason"]
)
ERRORS = Histogram(
    "fraudscore_reconstruction_error",
    "Reconstruction error of scored transactions.",
    buckets=RECONSTRUCTION_ERROR_BUCKETS,
)
EVENT_LAG = Histogram(
    "fraudscore_stream_event_lag_seconds",
    "Processing time minus the transaction's event time, when parsed.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 86400.0),
)
STAGE_LAG = Histogram(
    "fraudscore_stream_stage_lag_seconds",
    "Processing time minus the transaction's event time as it leaves a stage: scored, case (flagged, after "
    "de-duplication) and alert (publish confirmed). With event_lag (parsed), where alerts wait.",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 86400.0),
)
OUT_OF_RANGE = Counter(
    "fraudscore_out_of_range_features_total", "Features outside the training range (clipped by the transform)."
)
# Local runner only (stream.direct_runner): keys it holds state or timers for, summed over the stateful steps.
# Bounded by the cards active within the windows' lateness and the de-duplication TTL, not by cards ever seen.
RUNNER_KEYS = Gauge(
    "fraudscore_stream_runner_keyed_states",
    "Keys the local (Direct) runner holds state or timers for, over all stateful steps (0 on other runners).",
)
RUNNER_KEYS.set_function(direct_runner.keys_held)
MODEL_INFO = Gauge(
    "fraudscore_model_info", "1 for the model version the stream job is scoring with.", ["model", "version"]
)

# Analysts' feedback (stream.label_metrics): a periodic scan of the cases of a trailing window by event time.
LABELLED_CASES = Gauge(
    "fraudscore_labelled_cases",
    "Cases of the trailing label window (by event time) by the analysts' latest verdict (fraud, legit).",
    ["verdict"],
)
WINDOW_CASES = Gauge("fraudscore_label_window_cases", "Cases (alerts) of the trailing label window, labelled or not.")
LABELLED_PRECISION = Gauge(
    "fraudscore_labelled_precision",
    "Share of the label window's labelled cases confirmed fraud (NaN while none is labelled).",
)
ALERTS_CONFIRMED = Gauge(
    "fraudscore_alerts_confirmed_ratio",
    "Share of the label window's cases (alerts) that analysts confirmed fraud, unlabelled ones included.",
)
CASES_CLOSED = Gauge(
    "fraudscore_cases_closed",
    "Cases of the trailing label window (by opening time) that are closed, by the opening reason code.",
    ["reason"],
)
CASE_DECISION_SECONDS = Gauge(
    "fraudscore_case_first_decision_seconds",
    "Seconds from a case's opening to its close (an analyst's first decision closes it), over the label window's "
    "closed cases, by quantile (0.5, 0.9).",
    ["quantile"],
)
LABEL_SCAN = Gauge("fraudscore_label_scan_timestamp_seconds", "When the label metrics were last computed (Unix time).")
LABEL_SCAN_SECONDS = Gauge(
    "fraudscore_label_scan_seconds",
    "Wall seconds of the last label scan, by part: decisions (the decision index's decided cases of the window), "
    "count (the window's cases). "
    "They run in a niced child process of the job (stream.label_scan), against Bigtable.",
    ["part"],
)
LABEL_SCANNER_RSS = Gauge(
    "fraudscore_label_scanner_rss_bytes",
    "Resident memory of the process that ran the last label scan (the job's child), as the scan ended: the "
    "job's memory is its own process_resident_memory_bytes plus this.",
)

_beam_counters: dict[str, object] = {}


def _inc(name: str, n: int = 1) -> None:
    counter = _beam_counters.get(name)
    if counter is None:
        counter = _beam_counters.setdefault(name, Metrics.counter(NAMESPACE, name))
    counter.inc(n)  # type: ignore[attr-defined]


_ERROR_DIST = Metrics.distribution(NAMESPACE, "reconstruction_error_micros")
_LAG_DIST = Metrics.distribution(NAMESPACE, "event_lag_ms")


def parsed(lag_seconds: float) -> None:
    EVENT_LAG.observe(max(lag_seconds, 0.0))
    _LAG_DIST.update(int(max(lag_seconds, 0.0) * 1000))


def dead_letter(code: str, *, stage: str = "parse") -> None:
    outcome = "invalid" if stage == "parse" else "score_error"
    TRANSACTIONS.labels(outcome).inc()
    DEAD_LETTERS.labels(code).inc()
    _inc(f"transactions_{outcome}")
    _inc(f"dead_letters_{code}")


def stage_lag(stage: str, lag_seconds: float) -> None:
    STAGE_LAG.labels(stage).observe(max(lag_seconds, 0.0))


def scored(error: float, is_anomaly: bool, out_of_range: int) -> None:
    outcome = "anomaly" if is_anomaly else "normal"
    TRANSACTIONS.labels(outcome).inc()
    ERRORS.observe(error)
    _inc(f"transactions_{outcome}")
    _ERROR_DIST.update(int(error * 1e6))
    if out_of_range:
        OUT_OF_RANGE.inc(out_of_range)
        _inc("out_of_range_features", out_of_range)


def scored_batch(errors: Sequence[float], anomalies: Sequence[bool], out_of_range: Sequence[int]) -> None:
    """``scored`` for a whole RunInference batch: counters once per batch, the distributions per value."""
    n_anomalies = sum(1 for a in anomalies if a)
    for outcome, n in (("anomaly", n_anomalies), ("normal", len(errors) - n_anomalies)):
        if n:
            TRANSACTIONS.labels(outcome).inc(n)
            _inc(f"transactions_{outcome}", n)
    observe = ERRORS.observe
    for error in errors:
        observe(error)
        _ERROR_DIST.update(int(error * 1e6))
    total_out_of_range = sum(out_of_range)
    if total_out_of_range:
        OUT_OF_RANGE.inc(total_out_of_range)
        _inc("out_of_range_features", total_out_of_range)


def stage_lags(stage: str, lags_seconds: Iterable[float]) -> None:
    """``stage_lag`` for many transactions at once (one label lookup)."""
    observe = STAGE_LAG.labels(stage).observe
    for lag in lags_seconds:
        observe(max(lag, 0.0))


def flagged(reasons: tuple[str, ...]) -> None:
    for reason in reasons:
        FLAGGED.labels(reason).inc()
        _inc(f"flagged_{reason}")


def case_emitted(reasons: tuple[str, ...], event_seconds: float) -> None:
    """A case passed de-duplication: counted by reason, with its event-time lag at this stage."""
    flagged(reasons)
    stage_lag("case", time.time() - event_seconds)


def alerts_published(n: int) -> None:
    ALERTS.inc(n)
    _inc("alerts_published", n)


def members_already_done(n: int) -> None:
    """Flagged transactions skipped by the case sink: already members (redelivered or re-published)."""
    _inc("case_members_already_done", n)


def case_members(members: Sequence[Case], opened: Iterable[Episode]) -> None:
    """A batch's members written, and the cases it opened (by the opening transaction's first reason)."""
    CASE_MEMBERS.inc(len(members))
    _inc("case_members", len(members))
    for episode in opened:
        reason = episode.reasons[0] if episode.reasons else "UNKNOWN"
        CASES_OPENED.labels(reason).inc()
        _inc(f"cases_opened_{reason}")


def case_alerted(episode: Episode, components: Sequence[str], trigger: Case | None) -> None:
    """An alert of a case is published: an opening, or an escalation counted by what escalated."""
    if episode.alerted:  # something was alerted (or snoozed) before: this one escalates
        for component in components:
            reason = component.removeprefix(REASON_PREFIX) if component.startswith(REASON_PREFIX) else "BAND"
            CASES_ESCALATED.labels(reason).inc()
            _inc(f"cases_escalated_{reason}")
    if trigger is not None:
        stage_lag("alert", time.time() - trigger.event_time.timestamp())


def dead_letters_published(n: int) -> None:
    _inc("dead_letters_published", n)


def _children(gauge: Gauge) -> list[dict[str, str]]:
    """The labels of every child of a labelled gauge, through prometheus-client's public ``collect``."""
    return [dict(sample.labels) for metric in gauge.collect() for sample in metric.samples]


def model_loaded(model: str, version: int) -> None:
    """Marks ``version`` as the one in use (previous versions drop to 0)."""
    for labels in _children(MODEL_INFO):
        if labels["model"] == model:
            MODEL_INFO.labels(**labels).set(0)
    MODEL_INFO.labels(model, str(version)).set(1)
    _inc(f"model_loads_v{version}")


def duplicate_case() -> None:
    _inc("duplicate_cases_suppressed")


def closed_cases(by_reason: dict[str, int], seconds: Sequence[float]) -> None:
    """The label scan's closed cases (:func:`stream.label_scan.closed_cases`)."""
    for labels in _children(CASES_CLOSED):  # a reason no longer closed in the window drops to 0
        CASES_CLOSED.labels(**labels).set(0)
    for reason, n in by_reason.items():
        CASES_CLOSED.labels(reason).set(n)
    ordered = sorted(seconds)
    for q in (0.5, 0.9):
        CASE_DECISION_SECONDS.labels(str(q)).set(
            ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")
        )


def label_counts(cases: int, fraud: int, legit: int, at: float) -> None:
    """The label scan's result (:mod:`stream.label_metrics`)."""
    LABELLED_CASES.labels("fraud").set(fraud)
    LABELLED_CASES.labels("legit").set(legit)
    WINDOW_CASES.set(cases)
    LABELLED_PRECISION.set(fraud / (fraud + legit) if fraud + legit else float("nan"))
    ALERTS_CONFIRMED.set(fraud / cases if cases else float("nan"))
    LABEL_SCAN.set(at)
