"""What a refresh of the stream job's label metrics costs as the label window fills: ``python -m bench.label_scan``.

The stream job refreshes the analysts' feedback gauges every minute (``stream.label_metrics``), over a week of
cases by default. It runs in a niced child process of the job (``stream.label_scan``) and in the Bigtable
server, on the cores the job uses. On fresh Bigtable emulators (in-process ``Emulators``, port 0) open cases
are written as the stream writes them (``bench.console.write_cases``); one in ``--closed-every`` (100) is
closed and another labelled (which closes it too) as analysts would (``Casebook``). At each size of
``--sizes`` a refresh is timed ``--repeat`` times (median), in this process's CPU seconds (the scanning
process: the interpreter and the client's threads) and in wall seconds:

- **the baseline**, a refresh as it read the case rows before the decision index: every labelled row of the
  table (``CaseStore.labelled``, a server-filtered scan of all of ``flagged``), the closed cases among at most
  20,000 of the window's (``Casebook.list_since(status="closed")``) and the window's count;
- **now** (``stream.label_scan.scan``): one range scan of the decision index (``cases.decision_index``) and
  the same count. Both must find the same labels and closes (checked), the baseline while it still sees the
  whole window;
- the window's count alone (``CaseStore.count_since``, a keys-only scan of the time index), part of both.

Results: ``bench/results/label_scan.json``; the machine's load averages at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCAN = 20_000  # the baseline looked for the closed cases among at most this many of the window's

RESULTS = Path(__file__).resolve().parent / "results" / "label_scan.json"


def timed(fn: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    """Median CPU and wall seconds of ``repeat`` calls, and the last call's result."""
    cpu, wall, result = [], [], None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_s": round(statistics.median(cpu), 3), "wall_s": round(statistics.median(wall), 3)}, result


def baseline_refresh(store: Any, start: datetime) -> tuple[int, int, int, dict[str, int], list[float]]:
    """A refresh as it was before the decision index: the case rows (see the module)."""
    from cases.casebook import Casebook

    latest: dict[str, Any] = {}
    for case, decisions in store.labelled():
        if case is None or case.event_time < start:
            continue
        held = latest.get(case.case_id)
        if held is None or decisions[0].decided_at > held.decided_at:
            latest[case.case_id] = decisions[0]
    closed: dict[str, int] = {}
    seconds = []
    for e in Casebook(store).list_since(start, limit=SCAN, scan=SCAN, status="closed"):
        if e.closed_ms is not None:
            closed[e.reasons[0]] = closed.get(e.reasons[0], 0) + 1
            seconds.append(max(e.closed_ms - e.opened_ms, 0) / 1000)
    fraud = sum(d.verdict == "fraud" for d in latest.values())
    return store.count_since(start), fraud, len(latest) - fraud, closed, seconds


def measure(store: Any, start: datetime, repeat: int) -> dict[str, Any]:
    from stream.label_scan import scan

    baseline, old = timed(lambda: baseline_refresh(store, start), repeat)
    now, new = timed(lambda: scan(store, start), repeat)
    if new.counts.cases <= SCAN:  # past SCAN cases the baseline no longer saw every close
        found = (new.counts.cases, new.counts.fraud, new.counts.legit, new.closed_by_reason)
        assert old[:4] == found and sorted(old[4]) == sorted(new.decision_seconds), "not the same labels and closes"
    count, cases = timed(lambda: store.count_since(start), repeat)
    return {
        "cases_in_window": cases,
        "closed": sum(new.closed_by_reason.values()),
        "labelled": new.counts.fraud + new.counts.legit,
        "baseline_closed_seen": sum(old[3].values()),
        "refresh_baseline_case_rows": baseline,
        "refresh_now_decision_index": now,
        "cpu_ratio_now_to_baseline": round(now["cpu_s"] / baseline["cpu_s"], 3) if baseline["cpu_s"] else None,
        "wall_ratio_now_to_baseline": round(now["wall_s"] / baseline["wall_s"], 3) if baseline["wall_s"] else None,
        "window_count_alone": count,
    }


def main(argv: list[str] | None = None) -> int:
    from bench.console import results_header, write_cases
    from cases.casebook import Casebook
    from cases.store import CaseStore
    from fraudscore.config import EmulatorConfig, Resources
    from fraudscore.dev.emulators import Emulators
    from fraudscore.resources import create_resources

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="2000,8000,20000,40000", help="cases in the window at each measurement")
    parser.add_argument(
        "--closed-every", type=int, default=100, help="one case in this many is closed, another labelled"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per part and size (median)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")]
    load_start = list(os.getloadavg())
    resources = Resources()
    emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0), project=resources.project)
    runs = []
    with emulators, emulators.exported_env():
        create_resources(resources)
        with CaseStore(resources) as store:
            start = datetime(2034, 1, 1, tzinfo=UTC) - timedelta(days=1)
            book = Casebook(store)
            for size in sizes:
                write_cases(size, 1)  # idempotent keys: each size rewrites the earlier cases and adds the rest
                open_ = [e for e in book.list_since(start, limit=size + 1, scan=size + 1) if e.status == "open"]
                for e in open_[:: args.closed_every]:
                    book.close(e.case_id, "bench")
                for e in open_[1 :: args.closed_every]:
                    book.label(e.case_id, fraud=len(e.case_id) % 2 == 0, note="", analyst="bench")
                run = measure(store, start, args.repeat)
                print(json.dumps(run), flush=True)
                runs.append(run)
    results = {
        **results_header(load_start),
        "closed_every": args.closed_every,
        "repeat": args.repeat,
        "runs": runs,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
