"""``nasname report``: registration statistics, ad hoc event queries and data-quality checks.

    nasname report [--from 2026-11-01] [--to 2026-11-30] [--partition camp-a] --out DIR
    nasname report query [--from D] [--to D] [--partition P] [--station T] [--op enroll]
                         [--outcome refused_quality] --out events.csv
    nasname report quality [--stale-days 14] [--details] [--json]

Each works on the local data directory (``--data-dir`` or ``$NASNAME_DATA_DIR``) while no server runs
on it; while ``nasname serve`` runs, ``nasname report --remote --out DIR`` asks the server for the
report (GetReport RPC, investigator or admin token).

Exit codes: 0 success (``quality``: no finding), 1 error, 2 usage, 3 (``quality`` only) findings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from engine.errors import NasnameError, Unavailable

__all__ = ["main"]

EXIT_FINDINGS = 3


def _period_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", metavar="YYYY-MM-DD",
                   help="first day of the period, UTC (default: 30 days before --to)")
    p.add_argument("--to", dest="end", metavar="YYYY-MM-DD",
                   help="last day of the period, inclusive, UTC (default: now)")
    p.add_argument("--partition", help="only this partition (camp, site or programme)")
    p.add_argument("--data-dir", type=Path, help="data directory (default $NASNAME_DATA_DIR)")
    p.add_argument("--config", type=Path, help="TOML config file (default $NASNAME_CONFIG)")


def _parser() -> argparse.ArgumentParser:
    from server.cli_client import add_connection_options

    parser = argparse.ArgumentParser(
        prog="nasname report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Registration statistics from the operations event log and the gallery.",
        epilog="exit codes: 0 success (quality: no finding), 1 error, 2 usage, 3 quality findings")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser("build", help="the report: report.html with charts, one CSV per table, report.json "
                       "(the default action: `nasname report --out DIR`)")
    q = sub.add_parser("query", help="ad hoc: the operation events matching filters, as CSV")
    c = sub.add_parser("quality", help="data-quality checks (counts; lists with --details)")
    _period_options(r)
    r.add_argument("--out", type=Path, required=True,
                   help="folder for report.html, the CSV tables and report.json")
    r.add_argument("--min-cell", type=int, default=5,
                   help="counts under this are shown as '<N' (small-cell suppression; default 5)")
    r.add_argument("--details", action="store_true",
                   help="add detail tables with reference ids (restricted: keep the output safe)")
    r.add_argument("--remote", action="store_true",
                   help="ask a running server (GetReport RPC, investigator or admin token)")
    add_connection_options(r)  # also --json: the summary as JSON
    _period_options(q)
    q.add_argument("--station", help="only this station (API token id)")
    q.add_argument("--op", help="only this operation (enroll, insert, identify, verify, adjudicate, "
                   "delete, ...)")
    q.add_argument("--outcome", help="only this outcome (enrolled, pending, refused_quality, "
                   "failed_capture, ...)")
    q.add_argument("--out", type=Path, required=True, help="CSV file to write")
    _period_options(c)
    c.add_argument("--stale-days", type=float, default=14.0, help="pending cases older than this are flagged")
    c.add_argument("--details", action="store_true", help="list the records behind each finding")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _open_engine(args: argparse.Namespace) -> Any:
    from engine.config import EngineConfig
    from engine.engine import Engine

    if args.data_dir is not None:
        os.environ["NASNAME_DATA_DIR"] = str(args.data_dir)
    try:
        return Engine.open(EngineConfig.load(args.config), extractors=_no_extractor)
    except Unavailable as exc:
        raise Unavailable(f"{exc}; stop `nasname serve` first (reports read the data directory directly)",
                          reason=exc.reason) from exc


def _no_extractor(kind: str) -> Any:
    raise NasnameError(f"reports never extract {kind} samples", reason="INTERNAL")


def _remote_files(args: argparse.Namespace) -> dict[str, bytes]:
    from server.cli_client import connect

    with connect(args) as client:
        return client.get_report(from_date=args.start or "", to_date=args.end or "",
                                 partition=args.partition or "", min_cell=args.min_cell,
                                 details=args.details)


def _report(args: argparse.Namespace) -> int:
    from engine.reports import ReportPeriod, build_report, report_files, write_files

    now = time.time()
    period = ReportPeriod.parse(args.start, args.end, now=now, partition=args.partition,
                                min_cell=args.min_cell, details=args.details)
    if args.remote:
        files = _remote_files(args)
    else:
        engine = _open_engine(args)
        try:
            files = report_files(build_report(engine, period, now=now))
        finally:
            engine.close()
    paths = write_files(files, args.out)
    data = json.loads(files["report.json"])
    if args.json:
        print(json.dumps({"period": data["period"], "summary": data["summary"],
                          "files": [str(p) for p in paths]}, indent=2))
        return 0
    s = data["summary"]
    csvs = sum(1 for p in paths if p.suffix == ".csv")
    print(f"Report for {data['period']['description']}")
    print(f"  written: {paths[0]}  (+ report.json and {csvs} CSV tables in {args.out})")
    rows = [("enroll attempts", s.get("enroll_attempts")), ("enrolled", s.get("enrolled")),
            ("pending adjudication", s.get("pending")), ("refused (quality or capture)", s.get("refused")),
            ("FTE %", s.get("fte_percent")), ("open adjudication cases", s.get("backlog"))]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {'—' if v is None else v}")
    if data["details"]:
        print("  this report holds reference ids: share it only with investigators")
    return 0


def _query(args: argparse.Namespace) -> int:
    from engine.events import EventFilter
    from engine.reports.build import ReportPeriod, iso
    from engine.reports.render import csv_text
    from engine.store.events import COLUMNS

    period = ReportPeriod.parse(args.start, args.end, now=time.time(), partition=args.partition)
    engine = _open_engine(args)
    try:
        assert engine.events is not None
        rows = [[iso(e.time), *e.as_tuple()[1:]] for e in engine.events.select(EventFilter(
            start=period.start, end=period.end, partition=args.partition, station=args.station,
            op=args.op, outcome=args.outcome))]
    finally:
        engine.close()
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(csv_text(list(COLUMNS), rows).encode("utf-8-sig"))
    print(f"{len(rows)} events from {period.describe()} written to {args.out}")
    return 0


def quality_command(data_dir: Path | None, config: Path | None, *, details: bool, stale_days: float,
                    as_json: bool, start: str | None = None, end: str | None = None,
                    partition: str | None = None) -> int:
    """Run the data-quality checks on a local data directory and print them (``nasname report quality``
    and ``nasname check --data-quality``). Exit 0 when nothing is found, 3 when something is."""
    return _quality(argparse.Namespace(data_dir=data_dir, config=config, details=details,
                                       stale_days=stale_days, json=as_json, start=start, end=end,
                                       partition=partition))


def _quality(args: argparse.Namespace) -> int:
    from engine.reports import ReportPeriod, data_quality

    period = ReportPeriod.parse(args.start, args.end, now=time.time(), partition=args.partition,
                                details=args.details, stale_days=args.stale_days)
    engine = _open_engine(args)
    try:
        checks = data_quality(engine, period)
    finally:
        engine.close()
    if args.json:
        print(json.dumps({"period": period.describe(), "checks": [c.as_json(args.details) for c in checks]},
                         indent=2))
    else:
        print(f"Data-quality checks — {period.describe()}")
        width = max(len(c.title) for c in checks)
        for c in checks:
            verdict = "ok" if c.passed else f"{c.count} found"
            print(f"  {c.title:<{width}}  {verdict}")
            if args.details:
                for item in c.items:
                    print("      " + ", ".join(f"{k}={v}" for k, v in item.items()))
        if any(not c.passed for c in checks) and not args.details:
            print("  (add --details to list them)")
    return 0 if all(c.passed for c in checks) else EXIT_FINDINGS


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in {"build", "query", "quality", "-h", "--help"}:
        argv = ["build", *argv]
    args = _parser().parse_args(argv)
    try:
        return {"build": _report, "query": _query, "quality": _quality}[args.action](args)
    except NasnameError as exc:
        print(f"nasname report: {exc} [{exc.reason}]", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        from server.client import error_info

        info = error_info(exc)
        reason = f" [{info.reason}]" if info is not None else ""
        print(f"nasname report: {exc.code().name}{reason}: {exc.details()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"nasname report: {exc}", file=sys.stderr)
        return 1
