"""How fast the analysts' console answers with many cases: ``python -m bench.console``.

On fresh Bigtable emulators (in-process ``Emulators``, port 0) the cases are written as the stream writes
them (``EpisodeStore.assign``): ``--open-cases`` (10,000) one-member open cases on as many cards, and one
card's case with ``--members`` (200) members. Then the real ``fraudscore console`` runs as a child process
(default ``--refresh`` and ``--full-rescan``, so its background rescans run during the measurement, as they
would in use: after the first full scan, incremental ones) and one logged-in HTTP client times, one request
at a time:

- the baseline: ``/health`` of the same server (the HTTP stack, Flask and waitress, no Bigtable, no template);
- the queue's first page (50 rows), the queue filtered by a reason and by a card, a late page;
- the 200-member case's page (every member with its explanation, the card's history, the audit trail);
- the queue's first page and the case page again from a console whose every rescan is a full one
  (``--full-rescan 0.001``: the console before incremental rescans), and from one that scans once and never
  again (``--refresh 3600``): how much of the tail is the background rescans' CPU on the shared cores;
- each console's CPU (with its scanning child) while idle for ``--idle-s`` seconds, as a share of one core.

p50 / p95 / max in ms per page, and each page's p95 as a multiple of the baseline's; the queue's full-scan
time as the console measured it (shown on the page). The goal: queue and case page p95 < 300 ms. The machine's
load averages at the start and the end are recorded (2 shared cores: a loaded run is slower).
Results: ``bench/results/console.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "console.json"
GOAL_MS = 300.0
TOKEN = "bench-console-token"


def write_cases(open_cases: int, members: int) -> tuple[str, float]:
    """Writes the cases through the stream's episode store; returns the big case's id and the seconds taken."""
    from cases.episode_store import EpisodeStore
    from cases.records import Case
    from cases.store import CaseStore
    from fraudscore.config import Resources

    start = datetime(2034, 1, 1, tzinfo=UTC)
    reasons = (("TX_ANOMALY",), ("CARD_VELOCITY",), ("TX_ANOMALY", "CARD_BURST"))

    def flagged(tx: str, card: str, when: datetime, error: float, i: int) -> Case:
        return Case(
            tx, card, f"m-{i % 97}", when, 10.0 + i % 500, error, 1.0, 1, reasons[i % 3],
            top_features=(("V14", 0.5), ("V4", 0.2), ("Amount", 0.1)),
            raw_features=(-8.0, 6.0, 10.0 + i % 500), feature_names=("V14", "V4", "Amount"),
        )  # fmt: skip

    began = time.monotonic()
    with CaseStore(Resources()) as store:
        episodes = EpisodeStore(store)
        batch = 500
        for first in range(0, open_cases, batch):
            rows = [
                flagged(f"tx-{i}", f"card-{i}", start + timedelta(seconds=i), 1.0 + (i * 7919 % 1000) / 100, i)
                for i in range(first, min(first + batch, open_cases))
            ]
            done, touched, _ = episodes.assign(rows)
            episodes.write_members(done, touched)
            episodes.mark_done(done, touched)
        big = [
            flagged(f"big-{i}", "card-big", start + timedelta(seconds=5 * i), 1.5 + i / 100, i) for i in range(members)
        ]
        done, touched, _ = episodes.assign(big)
        episodes.write_members(done, touched)
        episodes.mark_done(done, touched)
        (case_id,) = {c.episode_id for c in done}
    return case_id, time.monotonic() - began


def start_console(token_file: Path, env: dict[str, str], *flags: str) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "fraudscore.cli", "console", "--port", "0", "--token-file", str(token_file), *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the console exited with {proc.wait()}")
        match = re.search(r"console listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)


def timed(session: Any, url: str, n: int, expect: str = "") -> dict[str, float]:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        response = session.get(url, timeout=60)
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200 or (expect and expect not in response.text):
            raise RuntimeError(f"GET {url}: {response.status_code}, {expect!r} missing")
        times.append(elapsed)
    times.sort()
    return {
        "n": n,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(n - 1, int(0.95 * n))], 2),
        "max_ms": round(times[-1], 2),
        "bytes": len(response.content),
    }


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its descendants (the console's scanning child) have used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return total + sum(cpu_s(int(c)) for c in children)


def idle_cpu_share(console: int, emulator: int, seconds: float) -> dict[str, float]:
    """The shares of one core the console and the Bigtable emulator use while nobody asks the console anything:
    its rescans only (the emulator's share is the server side of them: the filters run there)."""
    pids = {"console": console, "bigtable emulator": emulator}
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: round((cpu_s(pid) - before[name]) / seconds, 3) for name, pid in pids.items()}


def login(session: Any, url: str) -> None:
    page = session.get(url + "login", timeout=30).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    reply = session.post(url + "login", data={"analyst": "bench", "token": TOKEN, "csrf_token": csrf.group(1)})
    reply.raise_for_status()


def measure(
    url: str, case_id: str, args: argparse.Namespace, only: tuple[str, ...] = ()
) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Times every page, one request at a time; returns them and the queue's scan time the page shows."""
    import requests

    with requests.Session() as http:
        login(http, url)
        http.get(url, timeout=120)  # the first scan: the page waits for it
        first = http.get(url, timeout=60).text
        match = re.search(r"open <b id=\"count-open\">(\d+)</b>", first)
        assert match and int(match.group(1)) >= args.open_cases + 1, "the queue lacks cases"
        scan = re.search(r"in ([\d.]+) s", first)
        wanted = {
            "health (baseline)": (url + "health", ""),
            "queue, first page": (url, "count-open"),
            "queue, reason filter": (url + "?reason=CARD_BURST", ""),
            "queue, card search": (url + "?card=card-12", ""),
            "queue, page 100": (url + "?page=100", ""),
            f"case page, {args.members} members": (url + f"cases/{case_id}", case_id),
        }
        pages = {
            name: timed(http, page, args.requests, expect)
            for name, (page, expect) in wanted.items()
            if not only or name in only
        }
    return pages, float(scan.group(1)) if scan else None


def results_header(load_start: list[float]) -> dict[str, Any]:
    """What a results file opens with: the machine, when, and its load averages at the start and now."""
    return {
        "machine": f"{os.cpu_count()} cores",
        "when": datetime.now(UTC).isoformat(),
        "load_avg_start": load_start,
        "load_avg_end": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    from fraudscore.config import EmulatorConfig, Resources
    from fraudscore.dev.emulators import Emulators
    from fraudscore.resources import create_resources

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--open-cases", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100, help="timed requests per page")
    parser.add_argument("--idle-s", type=float, default=30.0, help="seconds the console's idle CPU is measured")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    load_start = list(os.getloadavg())
    resources = Resources()
    emulators = Emulators(EmulatorConfig(pubsub_port=0, bigtable_port=0), project=resources.project)
    with emulators as emu, emu.exported_env(), tempfile.TemporaryDirectory() as tmp:
        create_resources(resources)
        assert emu.bigtable is not None
        bigtable_pid = emu.bigtable.pid
        case_id, write_s = write_cases(args.open_cases, args.members)
        print(f"wrote {args.open_cases:,} open cases and a {args.members}-member case in {write_s:.1f} s")
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        proc, url = start_console(token_file, dict(os.environ))
        try:
            pages, scan_s = measure(url, case_id, args)
            idle = {"incremental rescans": idle_cpu_share(proc.pid, bigtable_pid, args.idle_s)}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        compared = ("queue, first page", f"case page, {args.members} members")
        # Every rescan a full one (the console before incremental rescans): the same pages and idle cost.
        proc, url = start_console(token_file, dict(os.environ), "--full-rescan", "0.001")
        try:
            full, _ = measure(url, case_id, args, only=compared)
            idle["full rescans"] = idle_cpu_share(proc.pid, bigtable_pid, args.idle_s)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # The same pages from a console that scans once and never again: what the rescans cost the answers.
        proc, url = start_console(token_file, dict(os.environ), "--refresh", "3600")
        try:
            paused, _ = measure(url, case_id, args, only=compared)
            idle["no rescans"] = idle_cpu_share(proc.pid, bigtable_pid, args.idle_s)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        pages.update({f"{name} (full rescans)": page for name, page in full.items()})
        pages.update({f"{name} (no rescans)": page for name, page in paused.items()})
    base = pages["health (baseline)"]["p95_ms"]
    for page in pages.values():
        page["p95_vs_baseline"] = round(page["p95_ms"] / base, 1) if base else None
    queue_p95 = pages["queue, first page"]["p95_ms"]
    case_p95 = pages[f"case page, {args.members} members"]["p95_ms"]
    results = {
        **results_header(load_start),
        "open_cases": args.open_cases,
        "big_case_members": args.members,
        "write_s": round(write_s, 1),
        "queue_scan_s": scan_s,
        "idle_s": args.idle_s,
        "idle_cpu_share_of_a_core": idle,
        "pages": pages,
        "goal_ms": GOAL_MS,
        "queue_p95_under_goal": queue_p95 < GOAL_MS,
        "case_p95_under_goal": case_p95 < GOAL_MS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for name, page in pages.items():
        print(f"{name:32s} p50 {page['p50_ms']:7.1f} ms  p95 {page['p95_ms']:7.1f} ms  ({page['p95_vs_baseline']}x)")
    print(f"idle CPU (share of a core) {idle}")
    print(f"queue scan {results['queue_scan_s']} s; load {load_start} -> {results['load_avg_end']}; {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
