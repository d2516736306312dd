"""Charts for the HTML report, drawn with matplotlib (Agg, no display) and embedded as PNG.

Charts show published values only: a suppressed small count is drawn as zero and the caption says so,
so a picture never reveals what a table withholds.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.reports.build import Report

__all__ = ["charts"]

_OUTCOME_COLOURS = {"enrolled": "#2f7d4f", "pending": "#d08c1d", "refused_quality": "#b03a2e",
                    "failed_capture": "#7d3c98", "invalid": "#7f8c8d", "error": "#34495e"}


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 3.4))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _dates(days: list[str]) -> list[dt.date]:
    """Day labels as dates, so the axis places a few readable ticks instead of one per day."""
    return [dt.date.fromisoformat(d) for d in days]


def _date_axis(fig: Any, ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=12)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _week_start(label: str) -> str:
    year, week = label.split("-W")
    return dt.date.fromisocalendar(int(year), int(week), 1).isoformat()


def _enrollments(report: Report) -> bytes | None:
    # a long period is drawn per week (a year of daily bars is unreadable and slow to draw)
    weekly = report.period.end - report.period.start > 92 * 86_400
    table = report.tables["enrollments_weekly" if weekly else "enrollments_daily"]
    rows = [[_week_start(str(r[0])) if weekly else r[0], *r[1:]]
            for r in table.published(report.period.min_cell)]
    if not rows:
        return None
    days = sorted({str(r[0]) for r in rows})
    outcomes = table.columns[2:-1]
    per: dict[str, defaultdict[str, float]] = {o: defaultdict(float) for o in outcomes}
    for r in rows:
        for i, o in enumerate(outcomes, start=2):
            per[o][str(r[0])] += _num(r[i])
    unit = "week" if weekly else "day"
    fig, ax = _figure(f"Enrollments per {unit} by outcome — {report.period.describe()}",
                      f"{unit} (UTC{', week starting' if weekly else ''})", "enroll attempts")
    bottom = [0.0] * len(days)
    x = _dates(days)
    for o in outcomes:
        values = [per[o][d] for d in days]
        if any(values):
            ax.bar(x, values, bottom=bottom, width=5.6 if weekly else 0.8, label=o.replace("_", " "),
                   color=_OUTCOME_COLOURS.get(o))
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    _date_axis(fig, ax)
    if any(bottom):
        ax.legend(fontsize=8, ncols=3)
    else:
        ax.text(0.5, 0.5, f"every count is under {report.period.min_cell} (suppressed)",
                transform=ax.transAxes, ha="center")
    return _png(fig)


def _fte(report: Report) -> bytes | None:
    rows = report.tables["fte_by_partition"].published(report.period.min_cell)
    if not rows:
        return None
    fig, ax = _figure(f"Failure to enrol by partition — {report.period.describe()}", "partition", "FTE (%)")
    ax.bar([str(r[0]) for r in rows], [_num(r[3]) for r in rows], color="#b03a2e")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _png(fig)


def _reasons(report: Report) -> bytes | None:
    rows = report.tables["failures_by_reason"].published(report.period.min_cell)[:12]
    if not rows:
        return None
    fig, ax = _figure(f"Refused samples by reason — {report.period.describe()}", "refused samples",
                      "modality: reason")
    labels = [f"{r[0]}: {r[1]}" for r in rows][::-1]
    ax.barh(labels, [_num(r[2]) for r in rows][::-1], color="#7d3c98")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _backlog(report: Report) -> bytes | None:
    rows = report.tables["backlog_age"].published(report.period.min_cell)
    if not any(_num(r[1]) for r in rows):
        return None
    fig, ax = _figure(f"Adjudication backlog by age — {report.period.describe()}", "age of the open case",
                      "open cases")
    ax.bar([str(r[0]) for r in rows], [_num(r[1]) for r in rows], color="#d08c1d")
    return _png(fig)


def _latency(report: Report) -> bytes | None:
    rows = report.tables["latency"].published(report.period.min_cell)
    if not rows:
        return None
    fig, ax = _figure(f"Latency per day (p50 solid, p95 dashed) — {report.period.describe()}", "day (UTC)",
                      "milliseconds")
    by_op: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for r in rows:
        by_op[str(r[0])].append((str(r[1]), _num(r[3]), _num(r[4])))
    for op, points in sorted(by_op.items()):
        x = _dates([p[0] for p in points])
        marker = "o" if len(points) < 40 else None
        line = ax.plot(x, [p[1] for p in points], marker=marker, label=f"{op} p50")[0]
        ax.plot(x, [p[2] for p in points], linestyle="--", color=line.get_color(), label=f"{op} p95")
    _date_axis(fig, ax)
    ax.legend(fontsize=7, ncols=3)
    return _png(fig)


def _growth(report: Report) -> bytes | None:
    rows = report.tables["growth"].published(report.period.min_cell)
    if not rows:
        return None
    fig, ax = _figure(f"Gallery growth — {report.period.describe()}", "day (UTC)",
                      "records created (cumulative)")
    ax.plot(_dates([str(r[0]) for r in rows]), [_num(r[2]) for r in rows],
            marker="o" if len(rows) < 40 else None, color="#2f7d4f")
    _date_axis(fig, ax)
    return _png(fig)


# table name -> the chart drawn after it
_CHARTS = {"enrollments_daily": _enrollments, "fte_by_partition": _fte, "failures_by_reason": _reasons,
           "backlog_age": _backlog, "latency": _latency, "growth": _growth}


def charts(report: Report) -> dict[str, bytes]:
    """PNG bytes keyed by the table each chart follows (tables with no data get no chart)."""
    out = {}
    for name, draw in _CHARTS.items():
        if name in report.tables:
            png = draw(report)
            if png is not None:
                out[name] = png
    return out
