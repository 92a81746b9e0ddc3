"""The overview chart: cases opened per hour, and the labelled precision per day, as SVG (matplotlib, no JS).

Both come from the queue's snapshot (every case's opening time and latest decision). The hours end at the
newest case's opening, not at the wall clock: a replay of old traffic (the demo's publisher) has event times
in the past, and its cases still show. Precision of a day is the share of fraud among the cases labelled
that day (labelled by decision time): what ``calibrate`` estimates from the same labels.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cases.episode_rows import Episode

HOURS = 72
DAYS = 14


@dataclass(frozen=True)
class Series:
    hours: tuple[datetime, ...]
    opened: tuple[int, ...]
    days: tuple[datetime, ...]
    precision: tuple[float | None, ...]  # None: nothing labelled that day
    labelled: tuple[int, ...]


def series(cases: Sequence[Episode], hours: int = HOURS, days: int = DAYS) -> Series:
    if cases:
        newest = max(e.opened_ms for e in cases)
        end = datetime.fromtimestamp(newest / 1000, UTC).replace(minute=0, second=0, microsecond=0)
    else:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first_hour = end - timedelta(hours=hours - 1)
    per_hour: Counter[int] = Counter()
    for e in cases:
        index = int((e.opened_ms / 1000 - first_hour.timestamp()) // 3600)
        if 0 <= index < hours:
            per_hour[index] += 1
    decided = [e.decision for e in cases if e.decision is not None]
    last_day = max((d.decided_at for d in decided), default=end).astimezone(UTC).date()
    day_list = [last_day - timedelta(days=days - 1 - i) for i in range(days)]
    fraud: Counter[object] = Counter()
    total: Counter[object] = Counter()
    for d in decided:
        day = d.decided_at.astimezone(UTC).date()
        total[day] += 1
        fraud[day] += d.verdict == "fraud"
    return Series(
        hours=tuple(first_hour + timedelta(hours=i) for i in range(hours)),
        opened=tuple(per_hour[i] for i in range(hours)),
        days=tuple(datetime(d.year, d.month, d.day, tzinfo=UTC) for d in day_list),
        precision=tuple(fraud[d] / total[d] if total[d] else None for d in day_list),
        labelled=tuple(total[d] for d in day_list),
    )


_render_lock = threading.Lock()  # pyplot's state is global; the server's threads take turns


def chart_svg(data: Series) -> str:
    """Two panels, one SVG document: the hourly openings as bars, the daily precision as points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    with _render_lock:
        fig = Figure(figsize=(9, 4.6))
        top, bottom = fig.subplots(2, 1)
        top.bar(data.hours, data.opened, width=1 / 24, align="edge", color="#4a6fa5")
        top.set_title(f"cases opened per hour (the {len(data.hours)} hours up to the newest case, UTC)", fontsize=10)
        top.set_ylabel("cases")
        known = [(d, p) for d, p in zip(data.days, data.precision, strict=True) if p is not None]
        if known:
            bottom.plot([d for d, _ in known], [p for _, p in known], "o-", color="#b5452b")
        bottom.set_ylim(-0.05, 1.05)
        bottom.set_xlim(data.days[0] - timedelta(hours=12), data.days[-1] + timedelta(hours=12))
        bottom.set_title("labelled precision per day (fraud / labelled, by decision day)", fontsize=10)
        bottom.set_ylabel("precision")
        top.xaxis.set_major_formatter(DateFormatter("%m-%d %H:00"))
        bottom.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
        for axis in (top, bottom):
            axis.tick_params(labelsize=8)
            axis.tick_params(axis="x", labelrotation=20)
            axis.grid(alpha=0.3)
        fig.tight_layout()
        out = io.StringIO()
        fig.savefig(out, format="svg")
    svg = out.getvalue()
    return svg[svg.index("<svg") :]  # inline in the page: without the XML prologue and DOCTYPE
