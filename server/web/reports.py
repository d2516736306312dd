"""The registration report (``engine.reports``, built by ``Engine.report_files``) in the console: what the
reports page shows of it, and how its files are sent.

``report.html`` is self-contained with inline styles and charts as ``data:`` images. It is sent with its
own narrow policy (inline styles and data: images only, no script, no form, ``sandbox``) and shown in a
sandboxed frame of the reports page, so the console's strict policy stays as it is everywhere else.
CSV and JSON files are downloads. Everything stays ``no-store`` (the middleware adds it).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from starlette.responses import Response

__all__ = ["REPORT_CSP", "BuiltReport", "download_prefix", "file_response"]

REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; "
              "base-uri 'none'; frame-ancestors 'self'; sandbox")
_TYPES = {".html": "text/html; charset=utf-8", ".csv": "text/csv; charset=utf-8",
          ".json": "application/json"}


@dataclass(frozen=True)
class BuiltReport:
    """What the page says of one built report (its figures are in the frame): period and files."""

    report_id: str
    period: str
    generated: str
    details: bool
    files: list[tuple[str, int]]  # (name, bytes): report.html, report.json, then the CSV tables

    @classmethod
    def of(cls, report_id: str, files: dict[str, bytes]) -> BuiltReport:
        doc = json.loads(files["report.json"])
        names = sorted(files, key=lambda n: (n != "report.html", n != "report.json", n))
        return cls(report_id, str(doc["period"]["description"]), str(doc["generated"]), bool(doc["details"]),
                   [(n, len(files[n])) for n in names])

    @property
    def tables(self) -> int:
        return sum(1 for name, _ in self.files if name.endswith(".csv"))


def file_response(name: str, content: bytes, *, download: bool, prefix: str) -> Response:
    """``name`` of a built report as a response: HTML inline (for the frame) unless ``download``,
    CSV and JSON always as attachments named ``<prefix><name>``."""
    kind = name[name.rfind("."):]
    headers: dict[str, str] = {}
    if kind == ".html":
        headers["content-security-policy"] = REPORT_CSP
        headers["x-frame-options"] = "SAMEORIGIN"
    if download or kind != ".html":
        headers["content-disposition"] = f'attachment; filename="{prefix}{name}"'
    return Response(content, media_type=_TYPES.get(kind, "application/octet-stream"), headers=headers)


def download_prefix(files: dict[str, bytes]) -> str:
    """``nasname-report-<from>_<to>-``: downloads of several periods do not overwrite each other."""
    period = json.loads(files["report.json"])["period"]
    last = dt.datetime.fromisoformat(str(period["to"]).replace("Z", "+00:00")) - dt.timedelta(seconds=1)
    return f"nasname-report-{str(period['from'])[:10]}_{last.date().isoformat()}-"
