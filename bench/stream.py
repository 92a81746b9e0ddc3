"""Stream job benchmark: replay cost per element, DirectRunner streaming ceiling, alert latency.

    .venv/bin/python -m bench.stream --model-base models/creditcard [--rows 20000] [--backlog 2000] [--only-replay]

Everything runs against the local emulators started here, with baselines measured in the same run:

- replay: the bounded pipeline (parse + score + windows + rules + Bigtable writes + alerts) over
  generated CSVs of two sizes; tx/s from the difference (start-up and model load cancel out), and tx
  per CPU-second of this process (the FnApiRunner runs the DoFns here); next to LoadedModel.score's
  in-process rows/s at the handler's batch size;
- streaming: time for ``fraudscore stream`` (DirectRunner, pulled ingest: acknowledged once durable)
  to score a backlog, next to a bare ReadFromPubSub -> count pipeline (Beam's DirectRunner read:
  10 messages a pull, acknowledged at once) on the same kind of backlog;
- paced: publishing at the goal's rates (500 and 1,000 tx/s) for ``--latency-seconds``: event time ->
  alert received for TX_ANOMALY cases, and whether the job kept up (scored/s while sending, backlog
  left at the end, time to catch up).

Results go to bench/results/stream.json. ``--soak`` runs only the card-episode soak (bench/stream_soak.py:
busy cards among a large card population; alerts per case, none suppressed, opening-alert latency) and
writes bench/results/stream_soak.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraudscore.dev.processes import free_port, stop_group

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "stream.json"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def model_rows_per_s(model_base: Path, batch: int = 512, seconds: float = 3.0) -> float:
    from fraudscore import model as fmodel
    from fraudscore.dev.generate import generate_frame

    loaded = fmodel.load(model_base)
    rows = generate_frame(batch, seed=3)[list(loaded.features)].to_numpy(np.float32)
    loaded.score(rows)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loaded.score(rows)
        n += batch
    return n / (time.perf_counter() - start)


def replay(model_base: Path, csv: Path, res: Any) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one bounded replay run."""
    from stream.pipeline import StreamConfig, run_with

    wall, cpu = time.perf_counter(), _cpu()
    state = run_with(StreamConfig(model_base=str(model_base), resources=res, replay=str(csv))).wait_until_finish()
    assert str(state).endswith("DONE"), state
    return time.perf_counter() - wall, _cpu() - cpu


def _metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return -1.0
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def _start(argv: list[str], log: Path, code: Path = ROOT) -> subprocess.Popen[bytes]:
    """Starts ``argv`` in a session of its own, importing the project from ``code`` (another checkout: a baseline)."""
    env = os.environ | {"PYTHONPATH": str(code)} if code != ROOT else None
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=code, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _transactions(n: int, seed: int, prefix: str) -> list[Any]:
    from fraudscore import schema
    from fraudscore.dev.generate import generate_frame

    # A large card population: seconds of traffic hold about one transaction per card, as in production.
    frame = generate_frame(n, fraud_rate=0.05, seed=seed, cards=max(n, 1))
    now = datetime.now(UTC)
    txs = []
    for i, row in enumerate(frame.to_dict("records")):
        tx = schema.from_csv_row({k: str(v) for k, v in row.items()} | {"Time": "0"}, row_number=i, epoch=now)
        tx.transaction_id = f"{prefix}-{i}"
        txs.append(tx)
    return txs


def _publish(res: Any, txs: list[Any], rate: float | None = None) -> dict[str, float]:
    """Publishes (stamping event_time = now when paced); returns transaction id -> event time."""
    from google.cloud import pubsub_v1

    from fraudscore import schema

    client = pubsub_v1.PublisherClient()
    topic = res.topic_path(res.transactions_topic)
    sent: dict[str, float] = {}
    futures = []
    start = time.perf_counter()
    for i, tx in enumerate(txs):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            tx.event_time.FromDatetime(datetime.now(UTC))
        sent[tx.transaction_id] = tx.event_time.ToDatetime(tzinfo=UTC).timestamp()
        futures.append(client.publish(topic, schema.to_json(tx), transaction_id=tx.transaction_id))
    for f in futures:
        f.result(timeout=60)
    return sent


def drain_time(argv: list[str], port: int, metric: str, res: Any, n: int, log: Path) -> float:
    """Seconds for a job to count ``n`` messages of a backlog published once it is up."""
    proc = _start(argv, log)
    try:
        deadline = time.monotonic() + 180
        while _metric(port, metric) < 0:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        # Warm-up message so model loading is not part of the measurement.
        _publish(res, _transactions(1, 99, f"warm-{port}"))
        while _metric(port, metric) < 1:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        base = _metric(port, metric)
        _publish(res, _transactions(n, 5, f"drain-{port}"))
        start = time.perf_counter()
        while _metric(port, metric) < base + n:
            assert time.monotonic() < deadline + 600, log.read_text()[-2000:]
            time.sleep(0.1)
        return time.perf_counter() - start
    finally:
        stop_group(proc)


_BARE_COUNTER: Any = None


def count_message(_: Any) -> None:
    """Counts one message; a module-level function so Beam pickles it by reference (the counter stays live)."""
    global _BARE_COUNTER
    if _BARE_COUNTER is None:
        from prometheus_client import Counter

        _BARE_COUNTER = Counter("bench_bare_messages_total", "messages read")
    _BARE_COUNTER.inc()


def bare_reader(subscription: str, port: int) -> None:
    """ReadFromPubSub -> count, the DirectRunner's ceiling (run as ``--bare-reader``)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from prometheus_client import start_http_server

    from bench.stream import count_message as count  # importable, not __main__: pickled by reference

    count(None)  # registers the series (value 1: the drain waits for base + n from here)
    start_http_server(port)
    options = PipelineOptions([f"--project={subscription.split('/')[1]}"])
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        _ = p | beam.io.ReadFromPubSub(subscription=subscription) | beam.Map(count)


def alert_reader(subscription: str, out: Path) -> None:
    """Pulls alerts and appends one JSON line per alert to ``out``: its attributes, when it was received and
    when Pub/Sub accepted it (run as ``--alert-reader``).

    A process of its own: read inside the benchmark process, the alerts waited for the paced publisher's
    thread (the GIL) and the streaming-pull client's machinery, which added seconds to the measured p99.
    """
    from google.cloud import pubsub_v1

    sub = pubsub_v1.SubscriberClient()
    with out.open("a", buffering=1) as lines:
        while True:
            response = sub.pull(
                request={"subscription": subscription, "max_messages": 1000, "return_immediately": True}
            )
            now = time.time()
            received = list(response.received_messages)
            if not received:
                time.sleep(0.005)
                continue
            for m in received:
                attributes = dict(m.message.attributes)
                published = m.message.publish_time.timestamp()
                lines.write(json.dumps({"attributes": attributes, "received": now, "published": published}) + "\n")
            sub.acknowledge(request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]})


def read_alerts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_lags(port: int) -> dict[str, float]:
    """Mean event-time lag (s) as transactions leave each stage of the job (all of them, from its histograms)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("fraudscore_stream_event_lag_seconds_", "fraudscore_stream_stage_lag_seconds_")):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    out = {}
    for stage, prefix, labels in [
        ("parsed", "fraudscore_stream_event_lag_seconds", ""),
        *[(st, "fraudscore_stream_stage_lag_seconds", f'{{stage="{st}"}}') for st in ("scored", "case", "alert")],
    ]:
        count = values.get(f"{prefix}_count{labels}", 0.0)
        if count:
            out[stage] = values[f"{prefix}_sum{labels}"] / count
    return out


def paced(
    argv: list[str],
    port: int,
    res: Any,
    log: Path,
    send: Callable[[], dict[str, float]],
    *,
    catch_up_s: float = 60.0,
    settle_s: float = 5.0,
    at_end: Callable[[], dict[str, Any]] | None = None,
    job_code: Path = ROOT,
) -> tuple[dict[str, float], dict[str, Any], Path]:
    """Runs the job and an alert reader, calls ``send()`` (paced publishing: transaction id -> event time), and
    measures whether the job kept up. Returns what was sent, the figures, and the reader's alerts file.

    ``scored_per_s_while_sending`` is what the job scored during the send window over its length;
    ``behind_at_end`` how many sent transactions were not yet scored when the last one was sent;
    ``caught_up_after_s`` how long after that every one was scored (None: not within ``catch_up_s``).
    ``at_end()`` runs after the settle time, while the job is still up (its metrics). The job runs the
    project's code from ``job_code`` (default: this checkout).
    """
    import threading

    proc = _start(argv, log, job_code)
    path = res.subscription_path(res.alerts_subscription)
    alerts_file = log.with_suffix(".alerts")
    alerts_file.unlink(missing_ok=True)
    reader = _start(
        [sys.executable, "-m", "bench.stream", "--alert-reader", path, str(alerts_file)], log.with_suffix(".reader")
    )
    metric = "fraudscore_stream_transactions_total"
    try:
        deadline = time.monotonic() + 180
        while _metric(port, metric) < 0:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        _publish(res, _transactions(1, 98, "warm"))  # model loading is not part of the measurement
        while _metric(port, metric) < 1:
            time.sleep(0.2)
        base = _metric(port, metric)
        sent: dict[str, float] = {}
        sender = threading.Thread(target=lambda: sent.update(send()))
        load_start = list(os.getloadavg())
        start = time.perf_counter()
        sender.start()
        sender.join()
        send_s = time.perf_counter() - start
        scored_by_end = _metric(port, metric) - base
        load_end = list(os.getloadavg())
        caught_up: float | None = None
        while time.perf_counter() - start - send_s < catch_up_s:
            if _metric(port, metric) - base >= len(sent):
                caught_up = time.perf_counter() - start - send_s
                break
            time.sleep(0.2)
        time.sleep(settle_s)
        figures = {
            "sent": len(sent),
            "send_s": send_s,
            "scored_per_s_while_sending": scored_by_end / send_s,
            "behind_at_end": len(sent) - scored_by_end,
            "caught_up_after_s": caught_up,
            "mean_lag_by_stage_s": stage_lags(port),
            "load_average_while_sending": {"start": load_start, "end": load_end},
            **(at_end() if at_end else {}),
        }
        return sent, figures, alerts_file
    finally:
        stop_group(proc)
        stop_group(reader)


def latency(
    argv: list[str], port: int, res: Any, seconds: float, rate: float, log: Path, job_code: Path = ROOT
) -> dict[str, Any]:
    """At ``rate`` tx/s for ``seconds``: event time -> alert received for TX_ANOMALY cases; whether the job kept up.
    The job runs the project's code from ``job_code`` (default: this checkout)."""
    txs = _transactions(int(seconds * rate), 21, f"lat{int(rate)}")
    sent, figures, alerts_file = paced(argv, port, res, log, lambda: _publish(res, txs, rate), job_code=job_code)
    received: dict[str, float] = {}
    published: dict[str, float] = {}  # when Pub/Sub accepted the alert: the job's part of the latency
    for alert in read_alerts(alerts_file):
        if alert["attributes"].get("reasons") == "TX_ANOMALY":  # single-transaction flags: the goal's scope
            tx = alert["attributes"].get("transaction_id", "")  # the member behind the alert
            received.setdefault(tx, alert["received"])
            published.setdefault(tx, alert["published"])
    alerts = sorted((k for k in received if k in sent), key=sent.__getitem__)  # in the order sent
    lags = np.array([received[k] - sent[k] for k in alerts])
    tenths = [chunk for chunk in np.array_split(lags, 10) if len(chunk)]
    to_publish = np.array([published[k] - sent[k] for k in alerts])
    return {
        "rate_tx_per_s": rate,
        "seconds": seconds,
        **figures,
        "alerts": float(len(lags)),
        "p50_s": float(np.percentile(lags, 50)) if len(lags) else float("nan"),
        "p99_s": float(np.percentile(lags, 99)) if len(lags) else float("nan"),
        "max_s": float(lags.max()) if len(lags) else float("nan"),
        # Whether alerts fell behind as the run went on: p99 over each tenth of the alerts, in send order.
        "p99_by_tenth_s": [float(np.percentile(chunk, 99)) for chunk in tenths],
        # Event time -> the alert's Pub/Sub publish time: the job's share, without the delivery to the reader.
        "to_publish_p50_s": float(np.percentile(to_publish, 50)) if len(lags) else float("nan"),
        "to_publish_p99_s": float(np.percentile(to_publish, 99)) if len(lags) else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base", type=Path, required=False, help="model base with a trained version")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the larger replay file")
    parser.add_argument("--backlog", type=int, default=2_000, help="messages for the streaming drain runs")
    parser.add_argument("--latency-seconds", type=float, default=300.0, help="duration of each paced run (goal: 300)")
    parser.add_argument(
        "--rates",
        default="500,1000",
        help="paced runs of the default aggregation, tx/s, each optionally :seconds (else --latency-seconds); "
        "goal: p99 < 2 s at 500, sustained at 1,000",
    )
    parser.add_argument(
        "--aggregations",
        default="state,windows",
        help="card aggregations to measure in streaming (the first is the default one, also run paced)",
    )
    parser.add_argument("--skip-replay", action="store_true", help="only the streaming and latency runs")
    parser.add_argument(
        "--only-replay",
        action="store_true",
        help="only the model baseline and the replay runs; prints them and leaves bench/results/stream.json alone",
    )
    parser.add_argument(
        "--soak",
        action="store_true",
        help="only the card-episode soak (bench/stream_soak.py): writes bench/results/stream_soak.json",
    )
    parser.add_argument(
        "--paced-only",
        action="store_true",
        help="only the paced runs of --rates (default aggregation), into bench/results/stream_paced.json",
    )
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="soak duration (goal: >= 600)")
    parser.add_argument("--soak-rate", type=float, default=500.0, help="soak tx/s (goal: 500)")
    parser.add_argument("--soak-cards", type=int, default=213_000, help="card population of the soak's traffic")
    parser.add_argument("--soak-busy", type=int, default=20, help="busy cards, each paying every 10 s")
    parser.add_argument(
        "--memory-soak",
        action="store_true",
        help="only the memory soak (bench/stream_memory.py): RSS over a large card population, into "
        "bench/results/stream_memory.json under --memory-label",
    )
    parser.add_argument("--memory-seconds", type=float, default=1800.0, help="memory soak duration (goal: >= 1800)")
    parser.add_argument("--memory-cards", type=int, default=1_000_000, help="card population of the memory soak")
    parser.add_argument(
        "--memory-growth-from", type=float, default=900.0, help="RSS growth is measured from here to the end, s"
    )
    parser.add_argument(
        "--memory-job-args",
        default="",
        help="extra flags for the memory soak's job, e.g. '--window-size 60 --window-period 60 --allowed-lateness 30'",
    )
    parser.add_argument("--memory-label", default="this-checkout", help="the memory soak's key in its results file")
    parser.add_argument(
        "--job-code", type=Path, default=ROOT, help="run the job from this checkout (a baseline, e.g. main's)"
    )
    parser.add_argument("--bare-reader", nargs=2, metavar=("SUBSCRIPTION", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--alert-reader", nargs=2, metavar=("SUBSCRIPTION", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alert_reader:
        alert_reader(args.alert_reader[0], Path(args.alert_reader[1]))
        return 0
    if args.bare_reader:
        bare_reader(args.bare_reader[0], int(args.bare_reader[1]))
        return 0
    if args.model_base is None:
        parser.error("--model-base is required")
    if args.only_replay and args.skip_replay:
        parser.error("--only-replay and --skip-replay leave nothing to run")

    from fraudscore.config import EmulatorConfig, Resources
    from fraudscore.dev.emulators import Emulators, with_suffix
    from fraudscore.dev.generate import generate_frame, write_csv
    from fraudscore.resources import create_resources

    work = ROOT / ".cache" / "bench-stream"
    work.mkdir(parents=True, exist_ok=True)
    if args.soak or args.paced_only:
        return run_soak(args, work)
    if args.memory_soak:
        return run_memory_soak(args, work)
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "when": datetime.now(UTC).isoformat()}
    # The machine may be shared: its 1/5/15-minute load averages at the start and the end of the run.
    results["load_average"] = {"start": list(os.getloadavg())}
    emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0), project=Resources().project)
    with emulators as em, em.exported_env():
        results["model_rows_per_s_batch512"] = model_rows_per_s(args.model_base)
        aggregations = args.aggregations.split(",")
        small, large = work / "small.csv", work / "large.csv"
        write_csv(generate_frame(args.rows // 10, seed=8), small)
        write_csv(generate_frame(args.rows, seed=9), large)
        res = with_suffix(Resources(), "bench-replay")
        create_resources(res)
        if not args.skip_replay:
            t_small, c_small = replay(args.model_base, small, res)
            t_large, c_large = replay(args.model_base, large, res)
            n = args.rows - args.rows // 10
            results["replay"] = {
                "rows": [args.rows // 10, args.rows],
                "wall_s": [t_small, t_large],
                "cpu_s": [c_small, c_large],
                "tx_per_s": n / (t_large - t_small),
                "tx_per_cpu_s": n / (c_large - c_small),
            }
            results["replay"]["ratio_to_model"] = (
                results["replay"]["tx_per_cpu_s"] / results["model_rows_per_s_batch512"]
            )

        if args.only_replay:
            print(json.dumps(results, indent=2))
            return 0

        bare_res = with_suffix(Resources(), "bench-bare")
        create_resources(bare_res)
        port = free_port()
        bare_argv = [sys.executable, "-m", "bench.stream", "--bare-reader",
                     bare_res.subscription_path(bare_res.transactions_subscription), str(port)]  # fmt: skip
        t_bare = drain_time(bare_argv, port, "bench_bare_messages_total", bare_res, args.backlog, work / "bare.log")
        results["streaming"] = {"backlog": args.backlog, "bare_read_count_msg_per_s": args.backlog / t_bare}
        for aggregation in aggregations:
            job_res = with_suffix(Resources(), f"bench-job-{aggregation}")
            create_resources(job_res)
            port = free_port()
            t_job = drain_time(
                stream_argv(args.model_base, job_res, port, aggregation), port,
                "fraudscore_stream_transactions_total", job_res, args.backlog, work / f"job-{aggregation}.log",
            )  # fmt: skip
            results["streaming"][f"stream_job_{aggregation}"] = {
                "msg_per_s": args.backlog / t_job,
                "ratio_to_bare": t_bare / t_job,
            }
        # The goal's rates, paced, for the default aggregation.
        for rate, seconds in rate_specs(args):
            aggregation = aggregations[0]
            lat_res = with_suffix(Resources(), f"bench-latency-{int(rate)}-{aggregation}")
            create_resources(lat_res)
            port = free_port()
            results.setdefault(f"paced_{int(rate)}_per_s", {})[aggregation] = latency(
                stream_argv(args.model_base, lat_res, port, aggregation), port, lat_res, seconds, rate,
                work / f"latency-{int(rate)}-{aggregation}.log",
            )  # fmt: skip
    results["load_average"]["end"] = list(os.getloadavg())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


def rate_specs(args: argparse.Namespace) -> list[tuple[float, float]]:
    """``--rates`` as (tx/s, seconds) pairs: ``RATE[:SECONDS]`` each, SECONDS defaulting to --latency-seconds."""
    specs = []
    for spec in [r for r in args.rates.split(",") if r]:
        rate_text, _, seconds_text = spec.partition(":")
        specs.append((float(rate_text), float(seconds_text or args.latency_seconds)))
    return specs


def stream_argv(model_base: Path, r: Any, port: int, aggregation: str = "state") -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(r).items() if k != "project"]
    return [sys.executable, "-m", "fraudscore.cli", "stream", f"--model-base={model_base}",
            *flags, f"--metrics-port={port}", f"--card-aggregation={aggregation}"]  # fmt: skip


@contextlib.contextmanager
def _soak_run() -> Iterator[dict[str, Any]]:
    """A soak's results header (machine, start time, load at start and end) around fresh emulators."""
    from fraudscore.config import EmulatorConfig, Resources
    from fraudscore.dev.emulators import Emulators

    run: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "when": datetime.now(UTC).isoformat()}
    run["load_average"] = {"start": list(os.getloadavg())}
    with (
        Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0), project=Resources().project) as em,
        em.exported_env(),
    ):
        yield run
    run["load_average"]["end"] = list(os.getloadavg())


def run_soak(args: argparse.Namespace, work: Path) -> int:
    """The soak (``--soak``) or the paced runs alone (``--paced-only``), each into a results file of its own."""
    from bench.stream_soak import SOAK_RESULTS, soak
    from fraudscore.config import Resources
    from fraudscore.dev.emulators import with_suffix
    from fraudscore.resources import create_resources

    job_code = args.job_code.resolve()
    with _soak_run() as results:
        for spec in [r for r in args.rates.split(",") if r] if args.paced_only else []:
            rate_text, _, seconds_text = spec.partition(":")
            rate, seconds = float(rate_text), float(seconds_text or args.latency_seconds)
            lat_res = with_suffix(Resources(), f"bench-paced-{int(rate)}")
            create_resources(lat_res)
            port = free_port()
            results[f"paced_{int(rate)}_per_s"] = latency(
                stream_argv(args.model_base, lat_res, port),
                port,
                lat_res,
                seconds,
                rate,
                work / f"paced-{int(rate)}.log",
                job_code=job_code,
            )
        if args.soak:
            res = with_suffix(Resources(), "bench-soak")
            create_resources(res)
            port = free_port()
            results["soak"] = soak(
                stream_argv(args.model_base, res, port), port, res, work / "soak.log",
                seconds=args.soak_seconds, rate=args.soak_rate, cards=args.soak_cards, busy=args.soak_busy,
                busy_every_s=10.0,
            )  # fmt: skip
    results["job_code_commit"] = _commit(job_code)
    # A baseline's paced runs (--job-code another checkout) go beside this checkout's, not over them.
    paced_name = "stream_paced.json" if job_code == ROOT else "stream_paced_baseline.json"
    out = SOAK_RESULTS if args.soak else SOAK_RESULTS.with_name(paced_name)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


def _commit(code: Path) -> str:
    """The commit checked out at ``code`` (with ``+changes`` if its tree differs from it)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=code, capture_output=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _windows_of(job_args: str) -> Any:
    """The WindowConfig the job gets from these flags (the soak's horizon for active cards)."""
    from stream.pipeline import add_app_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_app_arguments(parser)
    return config_from_args(parser.parse_known_args(["--model-base", "-", *job_args.split()])[0]).windows


def run_memory_soak(args: argparse.Namespace, work: Path) -> int:
    """The memory soak (``--memory-soak``), added to bench/results/stream_memory.json under ``--memory-label``."""
    from bench.stream_memory import MEMORY_RESULTS, memory_soak
    from fraudscore.config import Resources
    from fraudscore.dev.emulators import with_suffix
    from fraudscore.resources import create_resources

    with _soak_run() as run:
        res = with_suffix(Resources(), "bench-memory")
        create_resources(res)
        port = free_port()
        run["soak"] = memory_soak(
            [*stream_argv(args.model_base.resolve(), res, port), *args.memory_job_args.split()], port, res,
            work / f"memory-{args.memory_label}.log",
            seconds=args.memory_seconds, rate=args.soak_rate, cards=args.memory_cards, busy=args.soak_busy,
            busy_every_s=10.0, growth_from_s=args.memory_growth_from, job_code=args.job_code.resolve(),
            windows=_windows_of(args.memory_job_args),
        )  # fmt: skip
    results = json.loads(MEMORY_RESULTS.read_text()) if MEMORY_RESULTS.exists() else {}
    results[args.memory_label] = run
    MEMORY_RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in run["soak"].items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
