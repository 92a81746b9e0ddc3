"""What the stream job's label metrics cost as the label window fills: ``python -m bench.label_scan``.

The stream job refreshes the analysts' feedback gauges every minute (``stream.label_metrics``), over a week of
cases by default, so whatever a refresh costs grows with the cases of the window. It runs in a niced child
process of the job (``stream.label_scan``) and in the Bigtable server, on the cores the job uses.
On fresh Bigtable emulators (in-process ``Emulators``, port 0) open cases are
written as the stream writes them (``bench.console.write_cases``), one in ``--closed-every`` (100) is closed
as an analyst would (``Casebook.close``), and at each size of ``--sizes`` every part of a refresh is timed
``--repeat`` times (median), in this process's CPU seconds (what the scanning process spends: the
interpreter and the client's threads) and in wall seconds:

- **the baseline**: the closed cases as the job found them before, every case of the window read in full
  and the closed ones kept (``Casebook.list_since`` without a status, filtered here);
- **closed cases now**: ``Casebook.list_since(status="closed")``, where Bigtable finds the rows with a close
  or a label and only those are read in full (both must list the same cases, checked);
- the other parts of a refresh, unchanged: the window's count (``CaseStore.count_since``, a keys-only scan
  of the time index) and the labelled cases (``CaseStore.labelled``, a server-filtered scan of the table).

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

from stream.label_scan import CLOSED_SCAN as SCAN

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


def measure(store: Any, start: datetime, repeat: int) -> dict[str, Any]:
    from cases.casebook import Casebook

    book = Casebook(store)
    baseline, every = timed(
        lambda: [e for e in book.list_since(start, limit=SCAN, scan=SCAN) if e.status == "closed"], repeat
    )
    now, closed = timed(lambda: book.list_since(start, limit=SCAN, scan=SCAN, status="closed"), repeat)
    assert sorted(e.case_id for e in closed) == sorted(e.case_id for e in every), "not the same closed cases"
    count, cases = timed(lambda: store.count_since(start), repeat)
    labelled, _ = timed(lambda: list(store.labelled()), repeat)
    return {
        "cases_in_window": cases,
        "closed": len(closed),
        "closed_cases_baseline_read_all": baseline,
        "closed_cases_now": now,
        "cpu_ratio_now_to_baseline": round(now["cpu_s"] / baseline["cpu_s"], 3) if baseline["cpu_s"] else None,
        "window_count": count,
        "labelled_scan": labelled,
    }


def main(argv: list[str] | None = None) -> int:
    from bench.console import results_header, write_cases
    from cases.casebook import Casebook
    from cases.store import CaseStore
    from fraudscore.config import EmulatorConfig, Resources
    from fraudscore.dev.emulators import Emulators
    from fraudscore.resources import create_resources

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="2000,8000,20000", help="cases in the window at each measurement")
    parser.add_argument("--closed-every", type=int, default=100, help="one case in this many is closed")
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
                open_ = [e for e in book.list_since(start, limit=SCAN, scan=SCAN) if e.status == "open"]
                for e in open_[:: args.closed_every]:
                    book.close(e.case_id, "bench")
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
