"""The bench harness on a tiny grid: raw records, derived figures, report; no timing assertions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.bench import main
from engine.bench.analysis import compute_figures
from engine.bench.contenders import FaissIris, NumpyFace, NumpyIris
from engine.bench.grids import GRIDS, ContenderSpec
from engine.bench.report import markdown, terminal_table
from engine.bench.runner import run_grid
from engine.bench.synthetic import face_data, iris_data

TINY = replace(
    GRIDS["quick"], face_sizes=(300,), iris_sizes=(200,), queries=12, concurrent_queries=8, callers=4,
    budget_s=5.0, gallery_sizes=(),
    face=(ContenderSpec("numpy brute force", "numpy-face"),
          ContenderSpec("FAISS IndexFlatIP (defaults)", "faiss-face", {"kind": "flat"}),
          ContenderSpec("too big", "numpy-face", max_size=100),
          ContenderSpec("broken", "no-such-contender", role="engine")),
    iris=(ContenderSpec("numpy brute force (masked HD)", "numpy-iris", {"shifts": 15}),),
)


def test_synthetic_face_mates_have_the_planted_similarity() -> None:
    d = face_data(500, 40, 64, seed=1)
    mated = d.mate >= 0
    assert mated.sum() == 20
    cos = (d.xq[mated] * d.xb[d.mate[mated]]).sum(1)
    assert cos.min() >= 0.6 - 1e-4 and cos.max() <= 0.9 + 1e-4
    assert np.allclose(np.linalg.norm(d.xq, axis=1), 1.0, atol=1e-5)


def test_iris_baselines_find_planted_rotated_mates() -> None:
    d = iris_data(300, 20, seed=2)  # engine generator: captures rotated up to +-7 columns each
    for c in (NumpyIris(shifts=15), FaissIris(shifts=15)):
        c.fit(d)
        c.prepare(d)
        for j in np.flatnonzero(d.mate >= 0):
            assert c.query(int(j), 5)[0] == d.mate[j]


def test_numpy_face_topk_is_sorted_exact() -> None:
    d = face_data(200, 4, 16, seed=3)
    c = NumpyFace()
    c.fit(d)
    c.prepare(d)
    ids = c.query(0, 5)
    s = d.xb @ d.xq[0]
    assert ids.tolist() == np.argsort(-s)[:5].tolist()


def test_run_grid_records_raw_and_statuses() -> None:
    records = run_grid(TINY, ("face", "iris"), progress=False)
    runs = {(r["family"], r["contender"]): r for r in records if r["type"] == "run"}
    assert runs[("face", "too big")]["status"] == "skipped"
    assert runs[("face", "broken")]["status"] == "not available"
    ok = runs[("face", "FAISS IndexFlatIP (defaults)")]
    assert ok["status"] == "ok" and len(ok["single_latencies_s"]) == 12 and len(ok["labels"]) == 12
    assert ok["concurrent"]["callers"] == 4
    raw = {"records": records, "grid": {"reference": list(TINY.reference)}}
    fig = compute_figures(raw)
    rows = {(r["family"], r["contender"]): r for r in fig["runs"]}
    assert rows[("face", "FAISS IndexFlatIP (defaults)")]["recall_at_k"] == pytest.approx(1.0)
    assert rows[("face", "numpy brute force")]["mate_rank1"] == 1.0
    assert rows[("iris", "numpy brute force (masked HD)")]["mate_rank1"] == 1.0


def test_recall_and_mate_hit_are_derived_from_labels() -> None:
    raw = {
        "grid": {"reference": [["face", "ref"]]},
        "records": [
            {"type": "dataset", "family": "face", "size": 10, "mate": [3, -1], "queries": 2},
            *[{"type": "run", "family": "face", "size": 10, "contender": name, "role": "baseline",
               "approximate": False, "status": "ok", "note": "", "k": 2, "fit_s": 0.5,
               "rss_growth_bytes": 100, "single_latencies_s": [0.001, 0.003],
               "concurrent": {"callers": 2, "queries": 4, "wall_s": 0.01, "latencies_s": [0.001] * 4},
               "labels": labels}
              for name, labels in (("ref", [[3, 1], [5, 6]]), ("approx", [[1, 3], [5, 7]]))],
        ],
    }
    rows = {r["contender"]: r for r in compute_figures(raw)["runs"]}
    assert rows["approx"]["recall_at_k"] == pytest.approx(0.75)
    assert rows["approx"]["mate_rank1"] == 0.0 and rows["ref"]["mate_rank1"] == 1.0
    assert rows["ref"]["qps_single"] == pytest.approx(500.0)
    assert rows["ref"]["qps_concurrent"] == pytest.approx(400.0)
    assert rows["ref"]["enroll_per_s"] == 20.0 and rows["ref"]["rss_bytes_per_template"] == 10.0


def test_report_and_rerun_from_raw(tmp_path: Path) -> None:
    records = run_grid(replace(TINY, iris_sizes=()), ("face",), progress=False)
    raw = {"records": records, "grid": {"name": "tiny", "reference": list(TINY.reference), "k": 10,
                                        "callers": 4, "queries": 12, "budget_s": 5.0, "face_dim": 128,
                                        "iris_nbytes": 256, "iris_columns": 256},
           "machine": {"cpu_model": "test cpu", "cpus": 2, "memory_bytes": 2**30, "python": "3",
                       "platform": "x", "versions": {"numpy": "2"}, "load_average_at_start": [0, 0, 0]},
           "started_utc": "now", "seconds": 1.0, "command": "nasname bench --test"}
    fig = compute_figures(raw)
    text = markdown(raw, fig, raw["command"], [])
    assert "test cpu" in text and "FAISS IndexFlatIP (defaults)" in text and "skipped" in text
    assert "numpy brute force" in terminal_table(fig)
    path = tmp_path / "bench_raw.json"
    path.write_text(json.dumps(raw))
    argv = ["--from-raw", str(path), "--out", str(tmp_path / "o"), "--report", str(tmp_path / "B.md")]
    assert main(argv) == 0
    assert (tmp_path / "B.md").read_text() == (tmp_path / "o" / "BENCHMARKS.md").read_text()
    assert (tmp_path / "o" / "bench_face.png").is_file()


def test_compare_two_runs() -> None:
    from engine.bench.compare import compare_rows, compare_section

    def run(name: str, p50: float, status: str = "ok") -> dict[str, object]:
        return {"family": "face", "size": 10, "contender": name, "status": status, "p50_ms": p50,
                "qps_single": 1000 / p50, "qps_concurrent": None, "recall_at_k": 1.0, "mate_rank1": 1.0}

    old = {"runs": [run("a", 2.0), run("b", 1.0), run("c", 1.0, "failed")]}
    new = {"runs": [run("a", 1.0), run("c", 1.0), run("d", 1.0)]}
    rows = compare_rows(old, new)
    assert [r["contender"] for r in rows] == ["a"]
    assert rows[0]["p50_ms"]["ratio"] == 0.5 and rows[0]["qps_single"]["ratio"] == 2.0
    assert rows[0]["qps_concurrent"]["ratio"] is None
    assert "| face | 10 | a | 0.50x | 2.00x | - | 1.000 -> 1.000 |" in "\n".join(compare_section(rows, "old"))
