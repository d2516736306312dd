"""Write a report: ``report.html`` (self-contained: inline CSS, charts as data: URIs, no script, no
external address, so it opens offline), one CSV per table and ``report.json``.

The CSV files are UTF-8 with a byte-order mark and one header row, so spreadsheet programs open them
with the right encoding and columns. The period and partition head every HTML section and are in
``report.json`` (``period``); the CSV files stay plain tables, written beside that JSON.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from engine.reports.build import Report, iso
from engine.reports.charts import charts

__all__ = ["render_html", "write_report"]

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#1b1b1b;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:2px solid #345}
h3{font-size:1.02em;margin:1.3em 0 .3em}
.period{color:#333;background:#eef2f5;padding:.35em .7em;border-radius:3px;display:inline-block}
table{border-collapse:collapse;margin:.4em 0 .8em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}
th{background:#e8ecef}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#444;font-size:.9em}.empty{color:#555;font-style:italic}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #bbb;border-radius:4px;padding:.5em .9em}
.card b{display:block;font-size:1.4em}img.chart{max-width:100%;height:auto}
summary{cursor:pointer;color:#1a4f7a;margin:.3em 0}
section{page-break-inside:avoid}@media print{section{page-break-before:always}}
"""


_FOLD_ROWS = 40
_LABELS = {"refused_quality": "refused (quality)", "failed_capture": "no biometric found",
           "invalid": "invalid request", "error": "server error"}


def _label(column: str) -> str:
    return _LABELS.get(column, column.replace("_", " "))


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _cell(v: Any) -> str:
    if v is None:
        return '<td class="num">—</td>'
    if isinstance(v, int | float) and not isinstance(v, bool):
        text = f"{v:,}" if isinstance(v, int) else f"{v:,.2f}".rstrip("0").rstrip(".")
        return f'<td class="num">{text}</td>'
    if isinstance(v, str) and (v.startswith("<") or v == "suppressed"):
        return f'<td class="num" title="small count suppressed">{_e(v)}</td>'
    return f"<td>{_e(v)}</td>"


def _summary_cards(report: Report, summary: dict[str, Any]) -> str:
    items = [("enroll attempts", summary.get("enroll_attempts")), ("enrolled", summary.get("enrolled")),
             ("pending adjudication", summary.get("pending")), ("refused", summary.get("refused")),
             ("FTE", None if summary.get("fte_percent") is None else f"{summary['fte_percent']}%"),
             ("open cases", summary.get("backlog")),
             ("oldest open case (days)", summary.get("backlog_oldest_days"))]
    cards = "".join(f'<div class="card">{_e(label)}<b>{_e("—" if v is None else v)}</b></div>'
                    for label, v in items)
    return f'<div class="cards">{cards}</div>'


def render_html(report: Report) -> str:
    data = report.as_json()
    p = report.period
    pngs = charts(report)
    header = f'<p class="period">{_e(p.describe())}</p>'
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>nasname registration report — {_e(p.describe())}</title><style>{_CSS}</style></head><body>",
        f"<h1>Registration report{' — site ' + _e(report.site) if report.site else ''}</h1>",
        header,
        f"<p class=note>Generated {_e(iso(report.generated))}. Counts from 1 to {p.min_cell - 1} are "
        "shown as "
        f"&lt;{p.min_cell} (small-cell suppression); a rate whose count is suppressed is shown as an upper "
        "bound. Suppression is applied cell by cell: where a row also shows a total, a suppressed cell can "
        "sometimes be worked out by subtraction, so share the tables with that in mind. No reference id "
        "appears in an aggregate table"
        + ("; this report includes detail tables with reference ids (restricted)." if p.details else ".")
        + "</p>",
        _summary_cards(report, data["summary"]),
    ]
    if report.dropped_events:
        parts.append(f"<p class=note><b>{report.dropped_events} operation events could not be recorded "
                     "since the service started</b> (the event queue was full): figures may be low.</p>")
    for title, names in report.sections:
        shown = [n for n in names if n in data["tables"]]
        if not shown:
            continue
        parts.append(f"<section><h2>{_e(title)}</h2>{header}")
        for name in shown:
            t = data["tables"][name]
            parts.append(f"<h3>{_e(t['title'])}</h3>")
            if name in pngs:  # the picture first, the exact figures below it
                uri = "data:image/png;base64," + base64.b64encode(pngs[name]).decode()
                parts.append(f'<img class="chart" src="{uri}" alt="chart: {_e(t["title"])}">')
            if not t["rows"]:
                parts.append('<p class="empty">Nothing recorded in this period.</p>')
            else:
                head = "".join(f"<th scope=col>{_e(_label(c))}</th>" for c in t["columns"])
                body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in t["rows"])
                table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                if len(t["rows"]) > _FOLD_ROWS:  # long tables fold away (no script needed)
                    table = (f"<details><summary>Show all {len(t['rows']):,} rows (also in {_e(name)}.csv)"
                             f"</summary>{table}</details>")
                parts.append(table)
            if t["note"]:
                parts.append(f'<p class="note">{_e(t["note"])}</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _private_write(path: Path, data: bytes) -> None:
    """Reports may hold detail rows: written 0600, like everything else nasname writes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def csv_text(columns: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def report_files(report: Report) -> dict[str, bytes]:
    """The report as files: ``report.html``, ``report.json`` and ``<table>.csv`` (published values)."""
    data = report.as_json()
    files = {"report.html": render_html(report).encode(),
             "report.json": json.dumps(data, indent=2, ensure_ascii=False).encode()}
    for name, t in data["tables"].items():
        files[f"{name}.csv"] = csv_text(t["columns"], t["rows"]).encode("utf-8-sig")
    return files


def write_files(files: dict[str, bytes], out: Path) -> list[Path]:
    """Write report files into ``out`` (created 0700, files 0600); names must be plain file names."""
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    for name, content in files.items():
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"refusing report file name {name!r}")
        path = out / name
        _private_write(path, content)
        written.append(path)
    return written


def write_report(report: Report, out: Path) -> list[Path]:
    """Write the HTML, the JSON and the CSV tables into ``out``; returns the paths (HTML first)."""
    return write_files(report_files(report), out)
