"""``fraudscore cases``: list, show and label the flagged cases stored in Bigtable.

    fraudscore cases list --card card-000042            # one card, newest first
    fraudscore cases list --since 15m [--until 5m]       # a time range, oldest first
    fraudscore cases get TXID
    fraudscore cases label TXID --fraud --note "customer confirmed"   # or --legit

Times are event times in UTC. ``--since``/``--until`` take a duration back from
now (``90s``, ``15m``, ``2h``, ``7d``) or an ISO 8601 time.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cases.records import StoredCase
    from cases.store import CaseStore

DEFAULT_LIMIT = 50
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """A flag value that cannot be used; the message says which and why."""


def parse_time(text: str, now: datetime) -> datetime:
    """A duration back from ``now`` (``15m``) or an ISO 8601 time (UTC if no zone is given)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{text!r}: expected a duration such as 15m, 2h, 7d or an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", default=None, help="Google Cloud project (default $FRAUDSCORE_PROJECT)")
    common.add_argument("--instance", default=None, help="Bigtable instance (default $FRAUDSCORE_BIGTABLE_INSTANCE)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="list cases of a card or of a time range")
    which = listing.add_mutually_exclusive_group(required=True)
    which.add_argument("--card", help="cases of this card id, newest first")
    which.add_argument("--since", help="cases from this time on, oldest first: 15m, 2h, 7d or ISO 8601")
    listing.add_argument("--until", help="with --since: cases before this time (same formats; default now and later)")
    listing.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help="show at most this many cases (default %(default)s)"
    )

    get = actions.add_parser("get", parents=[common], help="show one case with its decision history")
    get.add_argument("transaction_id", metavar="TXID", help="transaction id of the case")

    label = actions.add_parser("label", parents=[common], help="record an analyst's verdict on a case")
    label.add_argument("transaction_id", metavar="TXID", help="transaction id of the case")
    verdict = label.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--fraud", dest="fraud", action="store_true", help="confirmed fraud")
    verdict.add_argument("--legit", dest="fraud", action="store_false", help="false positive: a legitimate transaction")
    label.add_argument("--note", default="", help="free-text note stored with the verdict")
    label.add_argument("--analyst", default=None, help="who decided (default $USER)")


def main(args: argparse.Namespace) -> int:
    from cases.store import CaseNotFound, CaseStore
    from fraudscore.config import Resources

    res = Resources.from_env().at(args.project, args.instance)
    try:
        with CaseStore(res) as store:
            if args.action == "list":
                cases = _list(store, args, now=datetime.now(UTC))
                print(json.dumps([c.to_json_dict() for c in cases], indent=2) if args.json else format_table(cases))
                if not args.json and len(cases) == args.limit:
                    print(f"(first {args.limit}; raise --limit or narrow the range for more)", file=sys.stderr)
            elif args.action == "get":
                stored = store.get(args.transaction_id)
                print(json.dumps(stored.to_json_dict(), indent=2) if args.json else format_case(stored))
            else:
                analyst = args.analyst or os.environ.get("USER") or _login_name()
                decision = store.label(args.transaction_id, args.fraud, args.note, analyst)
                if args.json:
                    print(json.dumps(decision.to_json_dict()))
                else:
                    print(
                        f"{args.transaction_id}: labelled {decision.verdict} by {decision.analyst} "
                        f"at {_when(decision.decided_at)}"
                    )
    except (UsageError, CaseNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.NotFound):
            print(
                f"error: Bigtable table not found in {res.bigtable_location} ({exc.message}); "
                "start `fraudscore emulators` or create the tables",
                file=sys.stderr,
            )
            return 1
        if isinstance(exc, gexc.GoogleAPIError):
            print(f"error: Bigtable {res.bigtable_location}: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


def _list(store: CaseStore, args: argparse.Namespace, *, now: datetime) -> list[StoredCase]:
    if args.limit <= 0:
        raise UsageError(f"--limit must be positive, got {args.limit}")
    if args.card is not None:
        if args.until:
            raise UsageError("--until goes with --since, not --card")
        return store.list_by_card(args.card, args.limit)
    start = parse_time(args.since, now)
    end = parse_time(args.until, now) if args.until else None
    if end is not None and end <= start:
        raise UsageError(f"--until ({end.isoformat()}) must be after --since ({start.isoformat()})")
    return store.list_since(start, end, args.limit)


def _login_name() -> str:
    try:
        return getpass.getuser()  # LOGNAME, USERNAME or the password database when $USER is unset
    except (OSError, KeyError):
        return "unknown"


def _when(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _decision_text(stored: StoredCase) -> str:
    d = stored.decision
    return f"{d.verdict} ({d.analyst})" if d else "-"


def format_table(cases: Sequence[StoredCase]) -> str:
    """Aligned columns: time, card, tx, score, threshold, reasons, decision."""
    if not cases:
        return "no cases"
    header = ("TIME (UTC)", "CARD", "TRANSACTION", "SCORE", "THRESHOLD", "REASONS", "DECISION")
    rows = [
        (
            _when(s.case.event_time),
            s.case.card_id,
            s.case.transaction_id,
            f"{s.case.reconstruction_error:.5g}",
            f"{s.case.threshold:.5g}",
            ",".join(s.case.reasons),
            _decision_text(s),
        )
        for s in cases
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    return "\n".join(lines)


def format_case(stored: StoredCase) -> str:
    c = stored.case
    ratio = c.reconstruction_error / c.threshold if c.threshold else float("inf")
    lines = [
        f"transaction   {c.transaction_id}",
        f"card          {c.card_id}",
        f"merchant      {c.merchant_id}",
        f"event time    {_when(c.event_time)}",
        f"amount        {c.amount:.2f}",
        f"score         {c.reconstruction_error:.6f} (threshold {c.threshold:.6f}, {ratio:.2f}x)",
        f"fraud prob.   {c.fraud_probability:.4f}"
        if c.fraud_probability is not None
        else "fraud prob.   - (no second stage)",
        f"raw features  {len(c.raw_features)} kept"
        if c.has_raw_features
        else "raw features  none (case older than raw features)",
        f"model version {c.model_version}",
        f"reasons       {', '.join(c.reasons)}",
    ]
    if c.top_features:
        lines.append("top features  " + ", ".join(f"{name} {share:.0%}" for name, share in c.top_features))
    if c.window_start and c.window_end:
        lines.append(f"window        {_when(c.window_start)} .. {_when(c.window_end)}")
    if c.window_stats:
        lines.append("window stats  " + ", ".join(f"{k}={v:g}" for k, v in sorted(c.window_stats.items())))
    lines.append(f"row key       {stored.row_key}")
    if not stored.decisions:
        lines.append("decision      none yet (cases label TXID --fraud|--legit)")
    for i, d in enumerate(stored.decisions):
        title = "decision     " if i == 0 else "  earlier    "
        note = f": {d.note}" if d.note else ""
        lines.append(f"{title} {d.verdict} by {d.analyst} at {_when(d.decided_at)}{note}")
    return "\n".join(lines)
