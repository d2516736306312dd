"""`nasname report` on a local data directory: files written, summary in words, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from server.cli import main
from tests.unit.reports.conftest import FakeFaceExtractor, bad, image


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    eng = Engine.open(EngineConfig(data_dir=d, modalities=("face",), snapshot_every=0),
                      extractors=lambda kind: FakeFaceExtractor())
    try:
        for i in range(7):
            eng.insert(f"P{i}", image(400 + i), partition="camp-a")
        with pytest.raises(Exception, match="quality"):
            eng.enroll(None, bad("dark"), partition="camp-a")
    finally:
        eng.close()
    return d


def test_report_writes_files_and_states_the_period(data_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["report", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Report for" in text and "partition: all" in text and "report.html" in text
    assert (out / "report.html").is_file() and (out / "enrollments_daily.csv").is_file()
    doc = json.loads((out / "report.json").read_text())
    assert doc["summary"]["refused"] == "<5"  # one refusal: suppressed
    assert doc["summary"]["fte_percent"] == "suppressed"  # a rate over a single enroll attempt


def test_query_and_quality(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = tmp_path / "events.csv"
    argv = ["report", "query", "--data-dir", str(data_dir), "--op", "insert", "--out", str(csv_path)]
    assert main(argv) == 0
    lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("time,op,outcome") and len(lines) == 8
    assert lines[1].split(",")[1:3] == ["insert", "inserted"] and lines[1].split(",")[0].endswith("Z")
    capsys.readouterr()
    # the default configuration expects both irises too: all 7 face-only records are findings (exit 3)
    assert main(["report", "quality", "--data-dir", str(data_dir), "--json"]) == 3
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["missing_modality"]["count"] == 14 and "items" not in checks["missing_modality"]
    assert all(c["passed"] for n, c in checks.items() if n != "missing_modality")


def test_bad_dates_are_a_clear_error(data_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--data-dir", str(data_dir), "--from", "yesterday", "--out", str(tmp_path)]) == 1
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_check_data_quality_is_the_same_checks(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--data-quality", "--data-dir", str(data_dir), "--json"]) == 3
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["missing_modality"]["count"] == 14 and checks["stale_cases"]["passed"]
    assert main(["check", "--data-quality", "--data-dir", str(data_dir), "--details"]) == 3
    out = capsys.readouterr().out
    assert "Active records missing an expected modality" in out and "reference_id=P0" in out
