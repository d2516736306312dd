"""Reports over a seeded event log and gallery with known answers: every figure is asserted, the
small-cell rule is tested, and the HTML opens with no network access (nothing external in it)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import InvalidInput
from engine.records import AdjudicationDecision
from engine.reports import ReportPeriod, build_report, data_quality, write_report
from engine.reports.tables import Table
from engine.store.events import EventRow
from tests.unit.reports.conftest import image

DAY = 86_400.0
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC).timestamp()  # a Monday, ISO week 45


def seed_events(engine: Engine) -> None:
    """Day 1 camp-a: 12 enrolled, 3 pending, 6 refused (4 TOO_DARK, 2 NO_FACE); day 1 camp-b: 2 enrolled;
    day 8 camp-a: 8 enrolled, 1 error; identify: 10 with face, 1 refused BLURRED. Station s1 does
    camp-a, s2 camp-b."""
    assert engine.events is not None
    rows: list[EventRow] = []

    def add(n: int, day: int, op: str, outcome: str, part: str, st: str, reasons: str = "",
            latency: float = 10.0) -> None:
        rows.extend(EventRow(T0 + day * DAY + i, op, outcome, part, st, "face", reasons, latency + i)
                    for i in range(n))

    add(12, 0, "enroll", "enrolled", "camp-a", "s1")
    add(3, 0, "enroll", "pending", "camp-a", "s1")
    add(4, 0, "enroll", "refused_quality", "camp-a", "s1", "face:TOO_DARK")
    add(2, 0, "enroll", "failed_capture", "camp-a", "s1", "face:NO_FACE")
    add(2, 0, "enroll", "enrolled", "camp-b", "s2")
    add(8, 7, "enroll", "enrolled", "camp-a", "s1")
    add(1, 7, "enroll", "error", "camp-a", "s1")
    add(10, 7, "identify", "candidates", "camp-a", "s1")
    add(1, 7, "identify", "refused_quality", "camp-a", "s1", "face:BLURRED")
    rows.append(EventRow(T0 + 7 * DAY, "dedup", "ok", "", "inv", count=6))
    rows.append(EventRow(T0 + 40 * DAY, "enroll", "enrolled", "camp-a", "s1"))  # outside the period
    for r in rows:
        engine.events.record(r)
    engine.events.flush()


def period(**kw: object) -> ReportPeriod:
    return ReportPeriod.parse("2026-11-01", "2026-11-30", now=T0 + 60 * DAY, **kw)  # type: ignore[arg-type]


def table(report: object, name: str, min_cell: int = 1) -> list[list[object]]:
    return report.tables[name].published(min_cell)  # type: ignore[attr-defined,no-any-return]


def test_enrollment_tables_and_rates_have_the_known_values(engine: Engine) -> None:
    seed_events(engine)
    report = build_report(engine, period(), now=T0 + 60 * DAY)
    assert table(report, "enrollments_daily") == [
        ["2026-11-02", "camp-a", 12, 3, 4, 2, 0, 0, 21], ["2026-11-02", "camp-b", 2, 0, 0, 0, 0, 0, 2],
        ["2026-11-09", "camp-a", 8, 0, 0, 0, 0, 1, 9]]
    assert table(report, "enrollments_weekly") == [
        ["2026-W45", "camp-a", 12, 3, 4, 2, 0, 0, 21], ["2026-W45", "camp-b", 2, 0, 0, 0, 0, 0, 2],
        ["2026-W46", "camp-a", 8, 0, 0, 0, 0, 1, 9]]
    # FTE: errors are not attempts that reached the samples; camp-a 6 refused of 29
    assert table(report, "fte_by_partition") == [["camp-a", 29, 6, 20.69], ["camp-b", 2, 0, 0.0]]
    assert table(report, "fte_by_station") == [["s1", 29, 6, 20.69], ["s2", 2, 0, 0.0]]
    # FTA: face samples presented to calls that reached them: 31 enroll + 11 identify; 7 failed
    fta = {(r[0], r[1]): r[2:] for r in table(report, "fta_by_modality")}
    assert fta[("face", "all")] == [42, 7, 16.67]
    assert fta[("face", "camp-b")] == [2, 0, 0.0]
    assert table(report, "failures_by_reason") == [["face", "TOO_DARK", 4, 57.14],
                                                   ["face", "NO_FACE", 2, 28.57],
                                                   ["face", "BLURRED", 1, 14.29]]
    assert table(report, "duplicates_daily") == [["2026-11-02", 3, 0], ["2026-11-09", 0, 6]]
    assert report.summary["enroll_attempts"] == 32 and report.summary["fte_percent"] == 19.35
    lat = {(r[0], r[1]): r[2:] for r in table(report, "latency")}
    assert lat[("enroll", "2026-11-09")][0] == 9 and lat[("identify", "2026-11-09")][0] == 11


def test_small_cells_are_suppressed_everywhere_they_leave(engine: Engine, tmp_path: Path) -> None:
    seed_events(engine)
    report = build_report(engine, period(), now=T0 + 60 * DAY)
    daily = table(report, "enrollments_daily", 5)
    assert daily[0] == ["2026-11-02", "camp-a", 12, "<5", "<5", "<5", 0, 0, 21]
    assert daily[1] == ["2026-11-02", "camp-b", "<5", 0, 0, 0, 0, 0, "<5"]
    fte = table(report, "fte_by_partition", 5)
    assert fte == [["camp-a", 29, 6, 20.69], ["camp-b", "<5", 0, "suppressed"]]
    reasons = table(report, "failures_by_reason", 5)
    assert reasons[0][2] == "<5"
    write_report(report, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["summary"]["pending"] == "<5" and doc["small_cell_threshold"] == 5
    with (tmp_path / "out" / "enrollments_daily.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["day", "partition", "enrolled"] and rows[2][2] == "<5"
    assert "<td class=\"num\" title=\"small count suppressed\">&lt;5</td>" in (
        tmp_path / "out" / "report.html").read_text()


def test_rate_with_a_suppressed_numerator_is_an_upper_bound() -> None:
    t = Table("x", "x", ["k", "n", "bad", "%"], counts=frozenset({"n", "bad"}), rates={"%": ("bad", "n")})
    t.add("a", 200, 3, 1.5)
    t.add("b", 200, 0, 0.0)
    assert t.published(5) == [["a", 200, "<5", "<2.50"], ["b", 200, 0, 0.0]]
    assert t.published(1) == [["a", 200, 3, 1.5], ["b", 200, 0, 0.0]]


def test_gallery_and_adjudication_sections_from_the_store(engine: Engine) -> None:
    for i in range(6):
        engine.enroll(f"P{i}", image(100 + i), partition="camp-a")
    engine.enroll("D1", image(100), partition="camp-a")  # exact copy of P0: pending
    engine.enroll("D2", image(101), partition="camp-a")
    engine.adjudicate("D2", AdjudicationDecision.DISTINCT, actor="adj")
    now = engine.gallery.get("D2", with_templates=False).updated + 1
    report = build_report(engine, ReportPeriod.parse(None, None, now=now), now=now)
    assert table(report, "records_by_status") == [["active", 7], ["pending", 1], ["deleted", 0]]
    assert table(report, "modalities_per_record") == [[1, 7]]
    assert table(report, "model_versions") == [["face", "synthetic-face@1", 7]]
    assert table(report, "growth")[-1][2] == 8
    assert [r[1] for r in table(report, "backlog_age")] == [1, 0, 0, 0, 0]
    assert table(report, "decisions")[1][:2] == ["distinct", 1]
    assert "stale_cases" not in report.tables  # detail tables only when asked for


def test_html_is_self_contained_with_period_on_every_section(engine: Engine, tmp_path: Path) -> None:
    seed_events(engine)
    engine.enroll("P1", image(5), partition="camp-a")
    report = build_report(engine, period(partition="camp-a"), now=T0 + 60 * DAY)
    paths = write_report(report, tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    # opens offline: no external reference of any kind, charts are data: URIs
    assert not re.search(r"(?:src|href)\s*=\s*[\"'](?!data:)", html)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count("data:image/png;base64,") >= 3
    sections = html.count("<section>")
    assert sections >= 5 and html.count("2026-11-01 to 2026-11-30 (UTC) · partition: camp-a") >= sections + 1
    assert all(p.stat().st_mode & 0o077 == 0 for p in paths)


def test_period_parsing_errors_are_clear() -> None:
    with pytest.raises(InvalidInput, match="not YYYY-MM-DD"):
        ReportPeriod.parse("01/11/2026", None, now=T0)
    with pytest.raises(InvalidInput, match="empty"):
        ReportPeriod.parse("2026-11-30", "2026-11-01", now=T0)


def test_data_quality_checks_find_the_planted_problems(engine: Engine) -> None:
    engine.insert("A1", image(300), partition="camp-a")
    engine.insert("A2", image(300), partition="camp-a")  # same capture filed twice
    engine.insert("LOW", image(301, quality=0.2), partition="camp-a")
    engine.enroll("PEND", image(301), partition="camp-a")  # pending against LOW
    checks = {c.name: c for c in data_quality(engine, period(details=True, stale_days=0))}
    # the config expects face and iris_left: every active record misses iris_left
    assert checks["missing_modality"].count == 3
    assert checks["low_quality"].items == [{"reference_id": "LOW", "modality": "face", "quality": 0.2}]
    assert checks["identical_templates"].items == [{"reference_ids": ["A1", "A2"]}]
    assert [i["reference_id"] for i in checks["stale_cases"].items] == ["PEND"]
    assert checks["fte_outliers"].count == 0
    assert "items" not in checks["low_quality"].as_json(details=False)
