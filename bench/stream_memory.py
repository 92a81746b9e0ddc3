"""Memory soak of the stream job (issue 21): ``python -m bench.stream --memory-soak``.

Paced traffic at ``rate`` tx/s for ``seconds`` over a population of ``cards`` cards, the traffic of
:func:`bench.stream_soak.send`: each transaction's card drawn uniformly from the population (so a card's
transactions are a Poisson count: at 500 tx/s for 30 minutes over 1,000,000 cards, 900,000 transactions
on ~593,000 distinct cards, 62% of them seen once, 28% twice, 10% three times or more; most of a card's
repeats come after its windows closed), plus ``busy`` cards paying every ``busy_every_s`` seconds. The
job runs with the default windows (10-minute windows every minute, 5 minutes of allowed lateness), so a
card's state can be freed 15-16 minutes after its last transaction (:func:`stream.card_state.last_close`), and
is, up to a minute later (:func:`stream.card_state.cleanup_spread`):
from then on the cards active within that horizon are about constant, and so should the job's memory be.

Measured, against the real job on the emulators:

- the job's RSS (its ``process_resident_memory_bytes`` plus the RSS of its label-scan child process,
  ``fraudscore_label_scanner_rss_bytes``; both are kept in the samples) every ``every_s`` seconds, with
  the distinct cards sent so far, the cards active within the horizon and the keys the runner holds state for
  (``fraudscore_stream_runner_keyed_states``, where the job has it);
- RSS growth from ``growth_from_s`` (default minute 15) to the end of the sending (goal <= 10%), and
  per new distinct card over that span;
- MB per 100,000 active cards: (RSS at the end - RSS before the traffic) per active card;
- scored/s while sending over sent/s (goal >= 0.98), publish -> alert p99 of the alerts opening a
  TX_ANOMALY case (goal < 2 s);
- the 1/5/15-minute load averages with each sample (the machine is shared).

``job_code`` runs the job from another checkout (the baseline: main's code, same traffic, same run).
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import numpy as np

from stream.windows import WindowConfig

MEMORY_RESULTS = Path(__file__).resolve().parent / "results" / "stream_memory.json"
RUNNER_KEYS = "fraudscore_stream_runner_keyed_states"
# The label scans' child process (stream.label_scan): its RSS counts as the job's (0 for code without it).
SCANNER_RSS = "fraudscore_label_scanner_rss_bytes"


def horizon_s(windows: WindowConfig | None = None) -> float:
    """How long after its last transaction a card's windows can still change: window size + allowed lateness."""
    w = windows or WindowConfig()
    return float(w.size_s + w.allowed_lateness_s)


class Sampler:
    """Samples the job's RSS, transactions scored, runner keys and the load average every ``every_s`` seconds."""

    def __init__(self, port: int, every_s: float) -> None:
        self.port = port
        self.every_s = every_s
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.start = 0.0

    def __enter__(self) -> Sampler:
        self.start = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # the end of the sending

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> None:
        from bench.stream_soak import _metric_sum, _rss_mb, _scrape

        try:
            job = _rss_mb(self.port)
            scanner = _metric_sum(self.port, SCANNER_RSS) / 2**20
            scored = _metric_sum(self.port, "fraudscore_stream_transactions_total")
            keys = _metric_sum(self.port, RUNNER_KEYS) if RUNNER_KEYS in _scrape(self.port) else None
        except OSError:
            return  # a scrape that timed out on a loaded machine: the next one counts
        self.samples.append(
            {
                "t_s": round(time.time() - self.start, 1),
                "rss_mb": job + scanner if job is not None else None,
                "job_process_rss_mb": job,
                "scanner_rss_mb": scanner,
                "scored": scored,
                "runner_keys": keys,
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        )


def card_counts(sent: dict[str, float], card_of: dict[str, str], at: list[float], horizon: float) -> list[list[int]]:
    """For each absolute time in ``at``: [distinct cards sent so far, cards with a transaction in the horizon]."""
    order = sorted(sent, key=sent.__getitem__)
    times = [sent[k] for k in order]
    first: dict[str, float] = {}
    for k in order:
        first.setdefault(card_of[k], sent[k])
    first_times = sorted(first.values())
    out = []
    for t in at:
        lo, hi = bisect_right(times, t - horizon), bisect_right(times, t)
        out.append([bisect_right(first_times, t), len({card_of[k] for k in order[lo:hi]})])
    return out


def opening_latency(alerts: list[dict[str, Any]], sent: dict[str, float]) -> dict[str, Any]:
    """Event (publish) time -> alert received, for the alerts opening a TX_ANOMALY case of a transaction sent."""
    lags, to_publish = [], []
    for a in alerts:
        attributes = a["attributes"]
        tx = attributes.get("transaction_id")
        if attributes.get("kind") == "opened" and "TX_ANOMALY" in attributes.get("reasons", "") and tx in sent:
            lags.append(a["received"] - sent[tx])
            to_publish.append(a["published"] - sent[tx])
    q = np.array(lags)
    return {
        "alerts": len(alerts),
        "opening_alerts_measured": len(lags),
        "opening_alert_p50_s": float(np.percentile(q, 50)) if len(q) else None,
        "opening_alert_p99_s": float(np.percentile(q, 99)) if len(q) else None,
        "opening_alert_max_s": float(q.max()) if len(q) else None,
        "opening_to_publish_p99_s": float(np.percentile(to_publish, 99)) if to_publish else None,
    }


def memory_figures(
    samples: list[dict[str, Any]], sent_per_s: float, send_s: float, growth_from_s: float
) -> dict[str, Any]:
    """Growth of RSS over the soak's second part, memory per active card, throughput ratio (see the module)."""
    during = [s for s in samples if s["t_s"] <= send_s + 5]
    base, end = during[0], during[-1]
    later = [s for s in during if s["t_s"] >= growth_from_s]
    mid = later[0] if later else end
    new_cards = end["distinct_cards"] - mid["distinct_cards"]
    x = np.array([s["distinct_cards"] for s in during], dtype=float)
    y = np.array([s["rss_mb"] for s in during], dtype=float)
    slope = float(np.polyfit(x, y, 1)[0]) if len(during) > 2 else None
    return {
        "rss_mb_before_traffic": base["rss_mb"],
        "rss_mb_at_end": end["rss_mb"],
        "growth_from_s": mid["t_s"],
        "rss_mb_at_growth_from": mid["rss_mb"],
        "rss_growth_from_growth_from_to_end": end["rss_mb"] / mid["rss_mb"] - 1,
        "kb_per_new_distinct_card_from_growth_from": (end["rss_mb"] - mid["rss_mb"]) * 1024 / new_cards
        if new_cards
        else None,
        "kb_per_distinct_card_fit_whole_run": slope * 1024 if slope is not None else None,
        "active_cards_at_end": end["active_cards"],
        "mb_per_100k_active_cards": (end["rss_mb"] - base["rss_mb"]) / end["active_cards"] * 100_000,
        "scored_over_sent": None,  # filled in by memory_soak
    }


def memory_soak(
    argv: list[str],
    port: int,
    res: Any,
    log: Path,
    *,
    seconds: float,
    rate: float,
    cards: int,
    busy: int,
    busy_every_s: float,
    every_s: float = 30.0,
    growth_from_s: float = 900.0,
    job_code: Path | None = None,
    windows: WindowConfig | None = None,
) -> dict[str, Any]:
    from bench.stream import ROOT, paced, read_alerts
    from bench.stream_soak import _metric_sum, send

    card_of: dict[str, str] = {}
    sampler = Sampler(port, every_s)

    def traffic() -> dict[str, float]:
        with sampler:
            sent, cards_sent = send(res, seconds, rate, cards, busy, busy_every_s)
        card_of.update(cards_sent)
        return sent

    def at_end() -> dict[str, Any]:
        return {"alerts_published": _metric_sum(port, "fraudscore_stream_alerts_published_total")}

    sent, figures, alerts_file = paced(
        argv, port, res, log, traffic, catch_up_s=120, settle_s=5, at_end=at_end, job_code=job_code or ROOT
    )
    samples = sampler.samples
    counts = card_counts(sent, card_of, [sampler.start + s["t_s"] for s in samples], horizon_s(windows))
    for s, (distinct, active) in zip(samples, counts, strict=True):
        s["distinct_cards"], s["active_cards"] = distinct, active
    latency = opening_latency(read_alerts(alerts_file), sent)
    memory = memory_figures(samples, len(sent) / figures["send_s"], figures["send_s"], growth_from_s)
    memory["scored_over_sent"] = figures["scored_per_s_while_sending"] / (len(sent) / figures["send_s"])
    return {
        "job_code": str(job_code or ROOT),
        "rate_tx_per_s": rate,
        "seconds": seconds,
        "cards_drawn_from": cards,
        "card_distribution": "uniform over the population (Poisson counts per card) + busy cards",
        "busy_cards": busy,
        "busy_every_s": busy_every_s,
        "horizon_s": horizon_s(windows),
        "job_args": argv[argv.index("--card-aggregation=state") + 1 :] if "--card-aggregation=state" in argv else [],
        **figures,
        "distinct_cards": len(set(card_of.values())),
        **memory,
        **latency,
        "samples": samples,
    }
