"""A registration report over a large event log (target: 1M events render in 30 s or less).

    .venv/bin/pytest benchmarks/bench_report.py -m "not slow"    # 100k events
    .venv/bin/pytest benchmarks/bench_report.py                  # 100k and 1M events

Events are seeded straight into a real store (a year of enroll, identify and verify attempts across
8 partitions and 40 stations, 3% refused with reasons); the timed part is what `nasname report`
does: read the period from SQLite, build every table, draw the charts and write HTML, CSV and JSON.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.reports import ReportPeriod, build_report, write_report
from engine.store import events as sql
from engine.store.events import EventRow

DAY = 86_400.0
_engines: dict[int, tuple[Engine, float]] = {}


def _seed(engine: Engine, n: int, end: float) -> None:
    rng = np.random.default_rng(7)
    times = np.sort(end - rng.uniform(0, 365 * DAY, n))
    ops = rng.choice(["enroll", "identify", "verify"], n, p=[0.5, 0.3, 0.2])
    refused = rng.random(n) < 0.03
    parts = rng.integers(0, 8, n)
    stations = rng.integers(0, 40, n)
    latency = rng.lognormal(np.log(80), 0.4, n)
    outcome_ok = {"enroll": "enrolled", "identify": "no_candidate", "verify": "match"}
    reasons = ["face:TOO_DARK", "face:BLURRED", "iris_left:OCCLUDED", "iris_right:NO_IRIS"]
    rows = [EventRow(float(times[i]), str(ops[i]),
                     "refused_quality" if refused[i] else outcome_ok[str(ops[i])],
                     f"camp-{parts[i]}", f"tok{stations[i]:02d}", "face,iris_left,iris_right",
                     reasons[i % 4] if refused[i] else "", float(latency[i]), "m@1")
            for i in range(n)]
    db = engine.gallery.store.db
    for start in range(0, n, 100_000):
        with db.write() as conn:
            sql.insert_many(conn, rows[start:start + 100_000])


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("report")
    for engine, _ in _engines.values():
        engine.close()


def _engine(tmp: Path, n: int) -> tuple[Engine, float]:
    if n not in _engines:
        engine = Engine.open(EngineConfig(data_dir=tmp / f"data{n}", modalities=("face",)),
                             extractors=lambda kind: None)  # type: ignore[arg-type,return-value]
        end = time.time()
        _seed(engine, n, end)
        _engines[n] = (engine, end)
    return _engines[n]


@pytest.mark.parametrize("n", [100_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
def test_report_over_events(benchmark: Any, tmp: Path, n: int) -> None:
    engine, end = _engine(tmp, n)
    period = ReportPeriod(end - 366 * DAY, end + 1)

    def run() -> int:
        return len(write_report(build_report(engine, period, now=end), tmp / f"out{n}"))

    files = benchmark.pedantic(run, rounds=1 if n >= 1_000_000 else 3, iterations=1)
    benchmark.extra_info["events"] = n
    assert files > 10
