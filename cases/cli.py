"""``fraudscore cases``: list, show, label and close the cases stored in Bigtable.

A case is one card's episode of flagged transactions (:mod:`cases.episodes`); cases written before
that (one transaction each, case id = transaction id) are listed as ``old-style``.

    fraudscore cases list [--card C | --since 2h [--until 1h]] [--status open] [--reason CARD_VELOCITY]
    fraudscore cases get CASE_ID                          # members with their scores and explanations
    fraudscore cases label CASE_ID --fraud --note "customer confirmed"   # or --legit: every member, closes
    fraudscore cases label --transaction TXID --legit     # one transaction (also an old-style case)
    fraudscore cases close CASE_ID

Lists are ordered by priority (:func:`cases.casebook.priority`): open and undecided first, then the higher
score band and score, more members, more money, the latest activity. Times are event times in UTC.
``--since``/``--until`` take a duration back from now (``90s``, ``15m``, ``2h``, ``7d``) or an ISO 8601
time. ``--json`` everywhere prints JSON for tools.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cases.casebook import Casebook, CaseDetail
    from cases.records import Decision, StoredCase

from cases.episode_rows import CLOSED, OLD_STYLE, OPEN, Episode
from fraudscore.config import add_resource_arguments

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
    add_resource_arguments(common)
    common.add_argument("--json", action="store_true", help="print JSON instead of text (for tools)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="list cases by priority, filtered")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--card", help="cases of this card id")
    which.add_argument("--since", help=f"cases opened from this time on: 15m, 2h, 7d or ISO 8601 (default {_SINCE})")
    listing.add_argument("--until", help="with --since: cases opened before this time (same formats)")
    listing.add_argument("--status", choices=(OPEN, CLOSED), help="only open or only closed cases")
    listing.add_argument("--reason", help="only cases with this reason code (TX_ANOMALY, CARD_VELOCITY, ...)")
    listing.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help="show at most this many cases (default %(default)s)"
    )

    get = actions.add_parser("get", parents=[common], help="show one case with its members and their explanations")
    get.add_argument("case_id", metavar="CASE_ID", help="case id (old-style cases: the transaction id)")

    label = actions.add_parser("label", parents=[common], help="record an analyst's verdict on every member of a case")
    target = label.add_mutually_exclusive_group(required=True)
    target.add_argument("case_id", metavar="CASE_ID", nargs="?", help="the case: labels every member and closes it")
    target.add_argument("--transaction", metavar="TXID", help="label this one transaction instead")
    verdict = label.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--fraud", dest="fraud", action="store_true", help="confirmed fraud")
    verdict.add_argument("--legit", dest="fraud", action="store_false", help="false positive: legitimate activity")
    label.add_argument("--note", default="", help="free-text note stored with the verdict")
    label.add_argument("--analyst", default=None, help="who decided (default $USER)")

    close = actions.add_parser("close", parents=[common], help="close an open case without a verdict")
    close.add_argument("case_id", metavar="CASE_ID", help="the case to close")
    close.add_argument("--analyst", default=None, help="who closed it (default $USER)")

    actions.add_parser(
        "reindex",
        parents=[common],
        help="rebuild the decision index (what the stream job's feedback gauges read) from the case rows: after "
        "decisions made by a version without it. The stream job indexes old cases once by itself",
    )


_SINCE = "24h"


def main(args: argparse.Namespace) -> int:
    # The Bigtable client warns on every connection to the emulator: noise on an analyst's terminal.
    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator", category=RuntimeWarning)
    from cases.casebook import Casebook, CaseError
    from cases.store import CaseNotFound, CaseStore
    from fraudscore.config import Resources

    res = Resources.from_args(args)
    try:
        with CaseStore(res) as store:
            book = Casebook(store)
            out = _ACTIONS[args.action](book, args)
            print(out)
    except (UsageError, CaseNotFound, CaseError) as exc:
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


def _list(book: Casebook, args: argparse.Namespace) -> str:
    if args.limit <= 0:
        raise UsageError(f"--limit must be positive, got {args.limit}")
    if args.until and args.card is not None:
        raise UsageError("--until goes with --since, not --card")
    if args.reason is not None and args.reason != args.reason.strip().upper():
        raise UsageError(f"--reason {args.reason!r}: reason codes are upper case, e.g. TX_ANOMALY")
    filters = {"status": args.status, "reason": args.reason}
    if args.card is not None:
        found = book.list_card(args.card, args.limit, **filters)
    else:
        now = datetime.now(UTC)
        start = parse_time(args.since or _SINCE, now)
        end = parse_time(args.until, now) if args.until else None
        if end is not None and end <= start:
            raise UsageError(f"--until ({end.isoformat()}) must be after --since ({start.isoformat()})")
        found = book.list_since(start, end, args.limit, **filters)
    from cases.casebook import priority

    ordered = sorted(found, key=priority)
    if args.json:
        return json.dumps([e.to_json_dict() for e in ordered], indent=2)
    more = f"\n(first {args.limit}; raise --limit or narrow the filters for more)" if len(found) == args.limit else ""
    return format_table(ordered) + more


def _get(book: Casebook, args: argparse.Namespace) -> str:
    detail = book.detail(args.case_id)
    if args.json:
        data = detail.episode.to_json_dict()
        data["decisions"] = [d.to_json_dict() for d in detail.episode.decisions]
        data["member_records"] = [m.to_json_dict() for m in detail.members]
        return json.dumps(data, indent=2)
    return format_detail(detail)


def _label(book: Casebook, args: argparse.Namespace) -> str:
    analyst = _analyst(args)
    if args.transaction is not None:
        decision = book.label_transaction(args.transaction, args.fraud, args.note, analyst)
        if args.json:
            return json.dumps(decision.to_json_dict())
        at = utc_text(decision.decided_at)
        return f"{args.transaction}: labelled {decision.verdict} by {decision.analyst} at {at}"
    decision, members = book.label(args.case_id, args.fraud, args.note, analyst)
    if args.json:
        return json.dumps(decision.to_json_dict() | {"case_id": args.case_id, "members": members})
    return (
        f"{args.case_id}: {members} member(s) labelled {decision.verdict} by {decision.analyst} "
        f"at {utc_text(decision.decided_at)}; case closed"
    )


def _close(book: Casebook, args: argparse.Namespace) -> str:
    analyst = _analyst(args)
    when = book.close(args.case_id, analyst)
    if args.json:
        return json.dumps({"case_id": args.case_id, "closed": when.isoformat(), "by": analyst})
    return f"{args.case_id}: closed by {analyst} at {utc_text(when)}"


def _reindex(book: Casebook, args: argparse.Namespace) -> str:
    indexed = book.backfill_index(force=True)
    if args.json:
        return json.dumps({"indexed": indexed})
    return f"decision index: {indexed} decided or closed case(s) indexed from the case rows"


def _analyst(args: argparse.Namespace) -> str:
    return str(args.analyst or os.environ.get("USER") or _login_name())


_ACTIONS = {"list": _list, "get": _get, "label": _label, "close": _close, "reindex": _reindex}


def _login_name() -> str:
    try:
        return getpass.getuser()  # LOGNAME, USERNAME or the password database when $USER is unset
    except (OSError, KeyError):
        return "unknown"


def utc_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _decision_text(decision: Decision | None) -> str:
    return f"{decision.verdict} ({decision.analyst})" if decision else "-"


def ms_text(ms: int) -> str:
    return utc_text(datetime.fromtimestamp(ms / 1000, UTC))


def format_table(cases: Sequence[Episode]) -> str:
    """Aligned columns, one case a line (old-style cases: one transaction, STATUS old-style)."""
    if not cases:
        return "no cases"
    header = ("CASE", "CARD", "OPENED (UTC)", "LAST ACTIVITY", "MEMBERS", "MAX SCORE", "REASONS", "STATUS", "DECISION")
    rows = []
    for e in cases:
        top = e.max_score
        score = f"{top.error:.5g} ({top.error / top.threshold:.1f}x)" if top and top.threshold else "-"
        status = OLD_STYLE if e.old_style else e.status
        rows.append(
            (
                e.case_id,
                e.card_id,
                ms_text(e.opened_ms),
                ms_text(e.last_activity_ms),
                str(len(e.members)),
                score,
                ",".join(e.reasons),
                status,
                _decision_text(e.decision),
            )
        )
    return _aligned(header, rows)


def _aligned(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    return "\n".join(lines)


def format_detail(detail: CaseDetail) -> str:
    """A case: its summary, decisions, and each member with its score and explanation."""
    e = detail.episode
    if e.old_style:
        return format_case(detail.members[0]) + (
            "\nstyle         old-style: one transaction, written before cases were card episodes"
            f" (label it with --transaction {e.case_id})"
        )
    top = e.max_score
    lines = [
        f"case          {e.case_id}",
        f"card          {e.card_id}",
        f"status        {e.status}"
        + (f" (closed {ms_text(e.closed_ms)} by {e.closed_by or 'unknown'})" if e.closed_ms is not None else ""),
        f"opened        {ms_text(e.opened_ms)}",
        f"last activity {ms_text(e.last_activity_ms)}",
        f"members       {len(e.members)}, total amount {e.total_amount:.2f}",
        f"reasons       {', '.join(e.reasons)}",
        f"max score     {top.error:.6f} ({top.error / top.threshold:.2f}x the threshold, band {e.band})"
        if top and top.threshold
        else "max score     -",
        f"alerted       {', '.join(sorted(e.alerted)) or 'nothing yet'}",
        f"row key       {e.key}",
    ]
    if not e.decisions:
        lines.append(f"decision      none yet (cases label {e.case_id} --fraud|--legit)")
    lines += _decision_lines(e.decisions)
    lines.append("")
    header = ("TIME (UTC)", "TRANSACTION", "AMOUNT", "SCORE", "REASONS", "TOP FEATURES", "LABEL")
    rows = [
        (
            utc_text(m.case.event_time),
            m.case.transaction_id,
            f"{m.case.amount:.2f}",
            f"{m.case.reconstruction_error:.5g} ({m.case.reconstruction_error / m.case.threshold:.1f}x)"
            if m.case.threshold
            else f"{m.case.reconstruction_error:.5g}",
            ",".join(m.case.reasons),
            ", ".join(f"{name} {share:.0%}" for name, share in m.case.top_features[:3]) or "-",
            _decision_text(m.decision),
        )
        for m in detail.members
    ]
    return "\n".join(lines) + "\n" + _aligned(header, rows)


def _decision_lines(decisions: Sequence[Decision]) -> list[str]:
    lines = []
    for i, d in enumerate(decisions):
        title = "decision     " if i == 0 else "  earlier    "
        note = f": {d.note}" if d.note else ""
        lines.append(f"{title} {d.verdict} by {d.analyst} at {utc_text(d.decided_at)}{note}")
    return lines


def format_case(stored: StoredCase) -> str:
    c = stored.case
    ratio = c.reconstruction_error / c.threshold if c.threshold else float("inf")
    lines = [
        f"transaction   {c.transaction_id}",
        f"card          {c.card_id}",
        f"merchant      {c.merchant_id}",
        f"event time    {utc_text(c.event_time)}",
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
    if c.envelope_text:
        lines.append(f"envelope      {c.envelope_text}")
    if c.top_features:
        lines.append("top features  " + ", ".join(f"{name} {share:.0%}" for name, share in c.top_features))
    if c.window_start and c.window_end:
        lines.append(f"window        {utc_text(c.window_start)} .. {utc_text(c.window_end)}")
    if c.window_stats:
        lines.append("window stats  " + ", ".join(f"{k}={v:g}" for k, v in sorted(c.window_stats.items())))
    if c.episode_id:
        lines.append(f"case          {c.episode_id}")
    lines.append(f"row key       {stored.row_key}")
    if not stored.decisions:
        lines.append("decision      none yet (cases label --transaction TXID --fraud|--legit)")
    lines += _decision_lines(stored.decisions)
    return "\n".join(lines)
