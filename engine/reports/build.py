"""Build a registration report from the open engine: the event log plus the store's current state.

    report = build_report(engine, ReportPeriod.parse("2026-11-01", "2026-12-01", partition="camp-a"))
    write_report(report, Path("out"))          # report.html (charts embedded), *.csv, report.json

Definitions (ISO/IEC 19795-1 in spirit, over operation attempts in the period):
- FTE (failure to enrol): enroll attempts refused for quality or because no biometric was found,
  over enroll attempts that got as far as the samples (invalid requests and server errors excluded);
- FTA (failure to acquire), per modality: samples of that modality whose capture failed, over samples
  of that modality presented to enroll, insert, identify or verify (calls that failed as invalid
  requests or server errors are left out of both, as for FTE). A call stops at its first failing
  sample, so a second bad sample in the same call is not counted (FTA is a lower bound).
Days and weeks are UTC (ISO weeks). Counts from 1 to ``min_cell - 1`` are suppressed (engine.reports.tables).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidInput
from engine.events import EventFilter, EventRow
from engine.reports.tables import Table, rate, suppress_count
from engine.store import reporting

if TYPE_CHECKING:
    from engine.engine import Engine

__all__ = ["ENROLL_OUTCOMES", "Report", "ReportPeriod", "build_report"]

ENROLL_OUTCOMES = ("enrolled", "pending", "refused_quality", "failed_capture", "invalid", "error")
_REFUSED = ("refused_quality", "failed_capture")
_CAPTURE_OPS = ("enroll", "insert", "identify", "verify")
_DAY = 86_400.0
AGE_BUCKETS = ((0, 1, "under 1 day"), (1, 3, "1-3 days"), (3, 7, "3-7 days"), (7, 30, "7-30 days"),
               (30, float("inf"), "30 days or more"))


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def day_of(ts: float) -> str:
    return _utc(ts).date().isoformat()


def week_of(ts: float) -> str:
    year, week, _ = _utc(ts).isocalendar()
    return f"{year}-W{week:02d}"


def iso(ts: float) -> str:
    return _utc(ts).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ReportPeriod:
    """[start, end) in epoch seconds, an optional partition, and the publication rules."""

    start: float
    end: float
    partition: str | None = None
    min_cell: int = 5
    details: bool = False  # detail tables with reference ids (investigators and admins only)
    stale_days: float = 14.0  # pending cases older than this are flagged

    @classmethod
    def parse(cls, start: str | None, end: str | None, *, now: float, partition: str | None = None,
              min_cell: int = 5, details: bool = False, stale_days: float = 14.0) -> ReportPeriod:
        """Dates as YYYY-MM-DD (UTC); ``end`` is inclusive of that day. Default: the last 30 days."""

        def parse_day(text: str, what: str) -> float:
            try:
                return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()
            except ValueError as exc:
                raise InvalidInput(f"{what} date {text!r} is not YYYY-MM-DD", reason="INVALID_DATE") from exc

        stop = parse_day(end, "--to") + _DAY if end else now
        begin = parse_day(start, "--from") if start else stop - 30 * _DAY
        if begin >= stop:
            raise InvalidInput("the report period is empty (--from must be before --to)",
                               reason="INVALID_PERIOD")
        if min_cell < 1:
            raise InvalidInput("the small-cell threshold must be at least 1", reason="INVALID_REQUEST")
        return cls(begin, stop, partition, min_cell, details, stale_days)

    def describe(self) -> str:
        last = _utc(self.end - 1).date().isoformat()
        return (f"{day_of(self.start)} to {last} (UTC) · partition: {self.partition or 'all'}")


@dataclass
class Report:
    period: ReportPeriod
    generated: float
    site: str
    tables: dict[str, Table] = field(default_factory=dict)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)  # title -> table names
    summary: dict[str, Any] = field(default_factory=dict)
    dropped_events: int = 0

    def add(self, section: str, table: Table) -> None:
        self.tables[table.name] = table
        for title, names in self.sections:
            if title == section:
                names.append(table.name)
                return
        self.sections.append((section, [table.name]))

    def as_json(self) -> dict[str, Any]:
        p = self.period
        return {
            "period": {"from": iso(p.start), "to": iso(p.end), "partition": p.partition,
                       "description": p.describe()},
            "generated": iso(self.generated), "site": self.site,
            "small_cell_threshold": p.min_cell, "details": p.details,
            "summary": _published_summary(self.summary, p.min_cell),
            "tables": {n: t.as_json(p.min_cell) for n, t in self.tables.items()
                       if p.details or not t.detail},
        }


def _published_summary(summary: dict[str, Any], min_cell: int) -> dict[str, Any]:
    """Summary counts follow the same small-cell rule as the tables (rates are bounded there)."""
    out: dict[str, Any] = {}
    attempts = summary.get("enroll_attempts")
    if isinstance(attempts, int) and 0 < attempts < min_cell and summary.get("fte_percent") is not None:
        summary = {**summary, "fte_percent": "suppressed"}  # a rate over fewer than min_cell attempts
    for k, v in summary.items():
        if isinstance(v, dict):
            out[k] = {kk: suppress_count(vv, min_cell) if isinstance(vv, int) else vv for kk, vv in v.items()}
        elif isinstance(v, int) and not isinstance(v, bool) and k != "events":
            out[k] = suppress_count(v, min_cell)
        else:
            out[k] = v
    return out


# -- the sections ------------------------------------------------------------------------------


def _enrollments(events: list[EventRow], report: Report) -> None:
    by_day: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    by_week: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for e in events:
        if e.op == "enroll":
            by_day[(day_of(e.time), e.partition)][e.outcome] += 1
            by_week[(week_of(e.time), e.partition)][e.outcome] += 1
    for name, title, groups, key in (("enrollments_daily", "Enrollments per day", by_day, "day"),
                                     ("enrollments_weekly", "Enrollments per week", by_week, "week")):
        t = Table(name, title, [key, "partition", *ENROLL_OUTCOMES, "total"],
                  counts=frozenset([*ENROLL_OUTCOMES, "total"]))
        for (when, part), c in sorted(groups.items()):
            t.add(when, part or "(none)", *(c[o] for o in ENROLL_OUTCOMES), sum(c.values()))
        report.add("Enrollments", t)
    totals = Counter(e.outcome for e in events if e.op == "enroll")
    report.summary["enroll_attempts"] = sum(totals.values())
    report.summary["enrolled"] = totals["enrolled"]
    report.summary["pending"] = totals["pending"]
    report.summary["refused"] = sum(totals[o] for o in _REFUSED)


def fte_by(events: Iterable[EventRow], key: str) -> dict[str, tuple[int, int]]:
    """{partition or station: (enroll attempts, refused)} — also used by the data-quality checks."""
    attempts: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for e in events:
        if e.op != "enroll" or e.outcome in ("invalid", "error"):
            continue
        k = getattr(e, key) or "(none)"
        attempts[k] += 1
        refused[k] += e.outcome in _REFUSED
    return {k: (attempts[k], refused[k]) for k in attempts}


def _failed_modality(e: EventRow) -> str | None:
    if e.outcome not in _REFUSED:
        return None
    first = e.reasons.split(",")[0] if e.reasons else ""
    return first.split(":", 1)[0] if ":" in first else None


def _fte_fta(events: list[EventRow], report: Report) -> None:
    for key in ("partition", "station"):
        t = Table(f"fte_by_{key}", f"Failure to enrol (FTE) by {key}",
                  [key, "enroll attempts", "refused", "FTE %"],
                  counts=frozenset({"enroll attempts", "refused"}),
                  rates={"FTE %": ("refused", "enroll attempts")})
        groups = fte_by(events, key)
        for k, (n, r) in sorted(groups.items()):
            t.add(k, n, r, rate(r, n))
        report.add("Failure to enrol and to acquire", t)
    attempts, refused = (sum(col) for col in zip(*groups.values(), strict=True)) if groups else (0, 0)
    report.summary["fte_percent"] = rate(refused, attempts)
    presented: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()
    for e in events:
        if e.op not in _CAPTURE_OPS or not e.modalities or e.outcome in ("invalid", "error"):
            continue
        bad = _failed_modality(e)
        for m in e.modalities.split(","):
            for group in ("all", e.partition or "(none)"):
                presented[(m, group)] += 1
                failed[(m, group)] += m == bad
        if bad is not None:
            for pair in e.reasons.split(","):
                if ":" in pair:
                    m, reason = pair.split(":", 1)
                    reasons[(m, reason)] += 1
    t = Table("fta_by_modality", "Failure to acquire (FTA) by modality and partition",
              ["modality", "partition", "samples", "failed", "FTA %"],
              counts=frozenset({"samples", "failed"}),
              rates={"FTA %": ("failed", "samples")})
    for (m, group), n in sorted(presented.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all", kv[0][1])):
        t.add(m, group, n, failed[(m, group)], rate(failed[(m, group)], n))
    report.add("Failure to enrol and to acquire", t)
    total = sum(reasons.values())
    t = Table("failures_by_reason", "Refused samples by modality and reason",
              ["modality", "reason", "samples", "share %"], counts=frozenset({"samples"}),
              note="share of all refused samples in the period")
    for (m, reason), n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        t.add(m, reason, n, rate(n, total))
    report.add("Failure to enrol and to acquire", t)


def _percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def _duplicates(events: list[EventRow], engine: Engine, report: Report) -> None:
    p = report.period
    suspected: Counter[str] = Counter(
        day_of(e.time) for e in events if e.op == "enroll" and e.outcome == "pending")
    found: Counter[str] = Counter()
    for e in events:
        if e.op == "dedup" and e.outcome == "ok":
            found[day_of(e.time)] += e.count
    t = Table("duplicates_daily", "Suspected duplicates per day",
              ["day", "suspected at enroll", "found by dedup jobs"],
              counts=frozenset({"suspected at enroll", "found by dedup jobs"}))
    for day in sorted(set(suspected) | set(found)):
        t.add(day, suspected[day], found[day])
    report.add("Duplicates and adjudication", t)
    with engine.gallery.store.db.read() as conn:
        cases = reporting.adjudication_cases(conn, p.partition)
        taken = reporting.decisions(conn, p.partition, p.start, p.end)
    open_cases = [c for c in cases if c["outcome"] is None and c["created"] < p.end]
    ages = [(p.end - c["created"]) / _DAY for c in open_cases]
    t = Table("backlog_age", "Adjudication backlog by age (open cases at the end of the period)",
              ["age", "open cases"], counts=frozenset({"open cases"}))
    for lo, hi, label in AGE_BUCKETS:
        t.add(label, sum(lo <= a < hi for a in ages))
    report.add("Duplicates and adjudication", t)
    turnaround = [(d["time"] - d["created"]) / 3600.0 for d in taken]
    decided = Counter(d["decision"] for d in taken)
    t = Table("decisions", "Adjudication decisions in the period",
              ["decision", "count", "turnaround p50 (hours)", "turnaround p95 (hours)"],
              counts=frozenset({"count"}))
    for decision in ("same", "distinct"):
        hours = [(d["time"] - d["created"]) / 3600.0 for d in taken if d["decision"] == decision]
        t.add(decision, decided[decision], round(_percentile(hours, 50), 1) if hours else None,
              round(_percentile(hours, 95), 1) if hours else None)
    report.add("Duplicates and adjudication", t)
    report.summary["backlog"] = len(open_cases)
    report.summary["backlog_oldest_days"] = round(max(ages), 1) if ages else None
    report.summary["turnaround_p50_hours"] = round(_percentile(turnaround, 50), 1) if turnaround else None
    if p.details:
        t = Table("stale_cases", f"Pending cases older than {p.stale_days:g} days",
                  ["reference id", "partition", "opened", "age (days)"], detail=True)
        for c, age in sorted(zip(open_cases, ages, strict=True), key=lambda x: -x[1]):
            if age >= p.stale_days:
                t.add(c["ref_id"], c["partition"], iso(c["created"]), round(age, 1))
        report.add("Duplicates and adjudication", t)


def _gallery(engine: Engine, report: Report) -> None:
    p = report.period
    with engine.gallery.store.db.read() as conn:
        statuses = reporting.records_by_status(conn, p.partition)
        per_record = reporting.modalities_per_record(conn, p.partition)
        models = reporting.templates_by_model(conn, p.partition)
        created = reporting.growth(conn, p.partition, p.end)
    t = Table("records_by_status", "Records by status (now)", ["status", "records"],
              counts=frozenset({"records"}))
    for status in ("active", "pending", "deleted"):
        t.add(status, statuses.get(status, 0))
    report.add("The gallery", t)
    t = Table("modalities_per_record", "Active records by number of modalities",
              ["modalities", "records"], counts=frozenset({"records"}))
    for k in sorted(per_record):
        t.add(k, per_record[k])
    report.add("The gallery", t)
    t = Table("model_versions", "Active templates by modality and model version",
              ["modality", "model", "templates"], counts=frozenset({"templates"}))
    for m, model, n in models:
        t.add(m, model, n)
    report.add("The gallery", t)
    per_day: Counter[str] = Counter(day_of(c) for c, _ in created if c >= p.start)
    before = sum(1 for c, _ in created if c < p.start)
    t = Table("growth", "Gallery growth (records created, any status)", ["day", "created", "cumulative"],
              counts=frozenset({"created", "cumulative"}),
              note="cumulative counts every record ever created, "
              "including those later erased")
    running = before
    for day in sorted(per_day):
        running += per_day[day]
        t.add(day, per_day[day], running)
    report.add("The gallery", t)
    report.summary["records"] = dict(statuses)


def _latency(events: list[EventRow], report: Report) -> None:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e.op in ("enroll", "insert", "identify", "verify", "adjudicate", "delete"):
            groups[(e.op, day_of(e.time))].append(e.latency_ms)
    t = Table("latency", "Latency per operation and day (server side, milliseconds)",
              ["operation", "day", "calls", "p50 ms", "p95 ms"], counts=frozenset({"calls"}))
    for (op, day), values in sorted(groups.items()):
        t.add(op, day, len(values), round(_percentile(values, 50), 1), round(_percentile(values, 95), 1))
    report.add("Latency", t)


def _jobs(events: list[EventRow], report: Report) -> None:
    t = Table("jobs", "Backups, transfers and de-duplication jobs",
              ["day", "job", "outcome", "runs", "records"], counts=frozenset({"runs", "records"}),
              note="records: what the runs handled (backed up, sent or received, found in duplicate "
              "clusters)")
    runs: Counter[tuple[str, str, str]] = Counter()
    handled: Counter[tuple[str, str, str]] = Counter()
    for e in events:
        if e.op in ("backup", "transfer_export", "transfer_import", "dedup", "restore", "check"):
            key = (day_of(e.time), e.op, e.outcome)
            runs[key] += 1
            handled[key] += e.count
    for key in sorted(runs):
        t.add(*key, runs[key], handled[key])
    report.add("Backups, transfers and jobs", t)


def load_events(engine: Engine, period: ReportPeriod) -> list[EventRow]:
    if engine.events is None:
        return []
    return list(engine.events.select(EventFilter(start=period.start, end=period.end,
                                                 partition=period.partition)))


def build_report(engine: Engine, period: ReportPeriod, *, now: float, site: str = "") -> Report:
    """Every table of the report (true values; suppression is applied when it is published)."""
    events = load_events(engine, period)
    report = Report(period, now, site, dropped_events=engine.events.dropped if engine.events else 0)
    report.summary["events"] = len(events)
    _enrollments(events, report)
    _fte_fta(events, report)
    _duplicates(events, engine, report)
    _gallery(engine, report)
    _latency(events, report)
    _jobs(events, report)
    _data_quality(engine, events, report)
    return report


def _data_quality(engine: Engine, events: list[EventRow], report: Report) -> None:
    from engine.reports.quality import data_quality  # quality builds on this module's helpers

    checks = data_quality(engine, report.period, events=events)
    t = Table("data_quality", "Data-quality checks", ["check", "found"], counts=frozenset({"found"}),
              note="`nasname report quality --details` lists the records behind each finding")
    for c in checks:
        t.add(c.title, c.count)
    report.add("Data quality", t)
    if report.period.details:
        d = Table("data_quality_details", "Data-quality findings (restricted)", ["check", "finding"],
                  detail=True)
        for c in checks:
            for item in c.items:
                d.add(c.name, "; ".join(f"{k}={v}" for k, v in item.items()))
        report.add("Data quality", d)
