"""``fraudscore stream``: run the Beam job locally (DirectRunner) or on Dataflow.

The job's own flags come from :func:`stream.pipeline.add_app_arguments`; the
Beam runner flags most runs need are declared here so ``--help`` shows them,
and ``--beam-arg`` passes anything else to Beam verbatim. Prometheus metrics
are served from this process (``--metrics-port``), which is where the
DirectRunner executes the DoFns.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import Any

from stream.label_metrics import DEFAULT_INTERVAL_S, DEFAULT_WINDOW_HOURS

_LOG = logging.getLogger(__name__)
DEFAULT_METRICS_PORT = 9465

# Beam/Dataflow options shown in --help (dest -> help); passed on as --<dest>=<value>.
_BEAM_FLAGS = {
    "runner": "Beam runner: DirectRunner (default, local emulators) or DataflowRunner",
    "region": "Dataflow region, e.g. europe-west1",
    "temp_location": "gs:// path for Dataflow temp files",
    "staging_location": "gs:// path for Dataflow staging (default: temp_location)",
    "job_name": "Dataflow job name",
    "setup_file": "setup.py that installs this package on Dataflow workers (e.g. ./setup.py)",
    "requirements_file": "requirements file installed on Dataflow workers",
    "sdk_container_image": "custom worker container image with the dependencies preinstalled",
    "max_num_workers": "Dataflow autoscaling limit",
    "machine_type": "Dataflow worker machine type",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stream.pipeline import add_app_arguments

    add_app_arguments(parser)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="serve Prometheus /metrics on this port (0: off)",
    )
    parser.add_argument(
        "--label-metrics-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="seconds between scans of the analysts' labels for the feedback metrics (labelled-case precision, "
        "share of alerts confirmed) served on --metrics-port; 0: off (default %(default)s)",
    )
    parser.add_argument(
        "--label-window-hours",
        type=float,
        default=DEFAULT_WINDOW_HOURS,
        help="the feedback metrics count the cases of this trailing window, by event time (default %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="stop a streaming job after this many seconds (default: run on)"
    )
    for dest, help_text in _BEAM_FLAGS.items():
        parser.add_argument(f"--{dest}", help=help_text)
    parser.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra Beam option, e.g. --beam-arg=--num_workers=3",
    )


def beam_argv(args: argparse.Namespace) -> list[str]:
    argv = [f"--{dest}={getattr(args, dest)}" for dest in _BEAM_FLAGS if getattr(args, dest, None) is not None]
    return [*argv, f"--project={args.project}", *args.beam_arg]


def main(args: argparse.Namespace) -> int:
    from stream.pipeline import config_from_args, run_with

    config = config_from_args(args)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
        _LOG.info("Prometheus metrics on :%d/metrics", args.metrics_port)
    result = run_with(config, beam_argv(args))
    if config.replay:
        state = result.wait_until_finish()
        _LOG.info("replay finished: %s", state)
        _print_counters(result)
        return 0 if str(state).endswith("DONE") else 1
    _LOG.info("streaming job started; SIGTERM or Ctrl-C stops it gracefully")
    feedback = _label_metrics(config, args)
    try:
        return _run_until_stopped(result, args.timeout)
    finally:
        if feedback is not None:
            feedback.stop()


def _label_metrics(config: Any, args: argparse.Namespace) -> Any:
    """The periodic label scan behind the feedback gauges (stream.label_metrics), when metrics are served."""
    if not args.metrics_port or args.label_metrics_interval <= 0:
        return None
    import functools
    from datetime import timedelta

    from cases.store import CaseStore
    from stream.label_metrics import LabelMetrics
    from stream.label_scan import ScanProcess

    return LabelMetrics(
        ScanProcess(functools.partial(CaseStore, config.resources)),
        interval_s=args.label_metrics_interval,
        window=timedelta(hours=args.label_window_hours),
    ).start()


DRAIN_TIMEOUT_S = 60.0


def _run_until_stopped(result: Any, timeout: float | None) -> int:
    """Runs the streaming job until SIGTERM/SIGINT (or ``timeout``), then stops gracefully.

    Graceful: no more pulls; everything pulled is finished and acknowledged (``stream.ingest``) within
    DRAIN_TIMEOUT_S; then the runner is cancelled. Exit 0 when drained, 1 if messages were left
    in flight (Pub/Sub redelivers them) or the job failed by itself.
    """
    from stream import ingest

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    finished = threading.Event()
    failure: list[BaseException] = []

    def wait() -> None:
        try:
            result.wait_until_finish()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            finished.set()

    threading.Thread(target=wait, name="wait-for-job", daemon=True).start()
    deadline = time.monotonic() + timeout if timeout else float("inf")
    while not (stop.is_set() or finished.is_set()) and time.monotonic() < deadline:
        stop.wait(0.5)
    if finished.is_set():
        _LOG.error("the streaming job ended by itself: %s", failure[0] if failure else result.state)
        return 1
    _LOG.info("stopping: no more pulls, finishing what is in flight")
    tracker = ingest.current()
    drained = True
    if tracker is not None:
        tracker.stop_pulling()
        drained = tracker.wait_idle(DRAIN_TIMEOUT_S)
        _LOG.info(
            "stopped pulling; %d message(s) acknowledged in all, %d left in flight",
            tracker.acknowledged,
            tracker.in_flight(),
        )
    result.cancel()
    _print_counters(result)
    return 0 if drained else 1


def _print_counters(result: object) -> None:
    try:
        from apache_beam.metrics.metric import MetricsFilter

        counters = result.metrics().query(MetricsFilter().with_namespace("fraudscore"))["counters"]  # type: ignore[attr-defined]
    except Exception as exc:  # a runner without metrics support must not hide the job's outcome
        _LOG.warning("no metrics from the runner: %s", exc)
        return
    totals: dict[str, int] = {}
    for c in counters:
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(c.committed or c.attempted or 0)
    for name in sorted(totals):
        print(f"{name:40s} {totals[name]:>12,}")
