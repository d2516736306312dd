"""Exact face N:N on a seeded gallery with planted duplicates: pairs, near-threshold pairs on both sides
of the threshold, chains and cliques. Exact mode must find exactly the brute-force pair set, recover
every planted group as one cluster and create no other cluster; an interrupted job resumes to the same
result."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.dedup import DedupJob, JobSpec
from engine.dedup.fuse import make_thresholds
from engine.fusion import Fusion, per_comparison_fmr
from engine.types import Modality
from tests.unit.dedup.conftest import (
    at_cosine,
    create_job,
    crossing,
    face_t,
    make_data_dir,
    open_job,
    unit_rows,
)

N_RANDOM = 2500
FPIR = 0.003


@dataclass
class Planted:
    vectors: list[np.ndarray[Any, Any]]
    groups: list[list[int]]  # indices into vectors forming one expected cluster
    chains: list[tuple[list[int], tuple[int, int]]]  # members, expected weakest link
    misses: list[tuple[int, int]]  # pairs planted just below the threshold


def _plant(rng: np.random.Generator, t_sim: float) -> Planted:
    p = Planted([], [], [], [])

    def add(v: np.ndarray[Any, Any]) -> int:
        p.vectors.append(v)
        return len(p.vectors) - 1

    for _ in range(15):
        a = unit_rows(rng, 1)[0]
        p.groups.append([add(a), add(at_cosine(rng, a, float(rng.uniform(t_sim + 0.03, 0.97))))])
    for _ in range(4):  # just above: must be found
        a = unit_rows(rng, 1)[0]
        p.groups.append([add(a), add(at_cosine(rng, a, t_sim + 0.002))])
    for _ in range(4):  # just below: must not be found
        a = unit_rows(rng, 1)[0]
        p.misses.append((add(a), add(at_cosine(rng, a, t_sim - 0.002))))
    for _ in range(3):  # chains A~B~C with A !~ C
        b = unit_rows(rng, 1)[0]
        c1, c2 = t_sim + 0.02, t_sim + 0.05
        assert c1 * c2 < t_sim - 0.05
        ia, ib = add(at_cosine(rng, b, c1)), add(b)
        ic = add(at_cosine(rng, b, c2, avoid=[p.vectors[ia]]))
        p.groups.append([ia, ib, ic])
        p.chains.append(([ia, ib, ic], (min(ia, ib), max(ia, ib))))
    for _ in range(2):  # cliques of three captures
        b = unit_rows(rng, 1)[0]
        p.groups.append([add(b), add(at_cosine(rng, b, 0.93)), add(at_cosine(rng, b, 0.92))])
    return p


@pytest.fixture(scope="module")
def planted_gallery(tmp_path_factory: pytest.TempPathFactory, fusion: Fusion) -> dict[str, Any]:
    rng = np.random.default_rng(2024)
    # The gallery size is known before the data: planted = 15*2 + 8*2 + 3*3 + 2*3 records.
    n = N_RANDOM + 61
    t_llr = fusion.threshold([Modality.FACE], per_comparison_fmr(FPIR, n))
    t_sim = crossing(fusion, Modality.FACE, t_llr)
    planted = _plant(rng, t_sim)
    x = np.concatenate([unit_rows(rng, N_RANDOM), np.stack(planted.vectors)])
    assert x.shape[0] == n
    order = rng.permutation(n)  # spread the planted records over every block
    ref_of = {int(src): f"R{pos:05d}" for pos, src in enumerate(order)}
    records = [
        (ref_of[int(src)], {Modality.FACE: face_t(x[src])}, "camp-a" if pos % 2 else "camp-b")
        for pos, src in enumerate(order)
    ]
    gallery = make_data_dir(tmp_path_factory.mktemp("face-nn") / "data", records)
    # brute force truth with the engine's decision rule
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    iu, ju = np.triu_indices(n, 1)
    llr = fusion.calibration(Modality.FACE).llr_of(sims[iu, ju])
    hit = llr >= t_llr
    truth = {tuple(sorted((ref_of[int(a)], ref_of[int(b)]))) for a, b in zip(iu[hit], ju[hit], strict=True)}
    base = N_RANDOM
    groups = [{ref_of[base + i] for i in g} for g in planted.groups]
    chains = [
        ({ref_of[base + i] for i in m}, tuple(sorted((ref_of[base + w[0]], ref_of[base + w[1]]))))
        for m, w in planted.chains
    ]
    misses = [tuple(sorted((ref_of[base + a], ref_of[base + b]))) for a, b in planted.misses]
    return {
        "gallery": gallery,
        "truth": truth,
        "groups": groups,
        "chains": chains,
        "misses": misses,
        "t_llr": t_llr,
        "n": n,
    }


def _pairs(job_dir: Path) -> set[tuple[str, ...]]:
    with (job_dir / "pairs.csv").open() as fh:
        return {tuple(sorted((r["ref_id_a"], r["ref_id_b"]))) for r in csv.DictReader(fh)}


def test_exact_nn_recovers_every_planted_group_and_nothing_else(
    planted_gallery: dict[str, Any], fusion: Fusion, tmp_path: Path
) -> None:
    g = planted_gallery
    job = create_job(
        JobSpec(data_dir=str(g["gallery"].data_dir), target_fpir=FPIR, block_rows=700),
        tmp_path / "job",
        fusion=fusion,
    )
    summary = job.run()
    found = _pairs(job.dir)
    assert found == g["truth"]
    for miss in g["misses"]:
        assert miss not in found
    doc = json.loads((job.dir / "report.json").read_text())
    clusters = [{m["ref_id"] for m in c["members"]} for c in doc["clusters"]]
    assert sorted(map(sorted, clusters)) == sorted(map(sorted, g["groups"]))
    assert summary["clusters"] == len(g["groups"])
    for members, weakest in g["chains"]:
        c = next(c for c in doc["clusters"] if {m["ref_id"] for m in c["members"]} == members)
        assert c["chained"] and c["missing_pairs"] == 1
        wl = doc["pairs"][c["weakest_link"]]
        assert tuple(sorted((wl["a"], wl["b"]))) == weakest
    # threshold from the target FPIR at the gallery size, like the engine
    th = make_thresholds(fusion, [Modality.FACE], g["n"], target_fpir=FPIR)
    assert summary["thresholds"]["fused"]["face"] == pytest.approx(th.fused["face"])
    assert job.progress().state == "done" and job.progress().done == job.progress().total
    html = (job.dir / "report.html").read_text()
    assert "<svg" in html and "weakest link" in html and "<img" not in html


def test_partition_restricts_the_job(planted_gallery: dict[str, Any], fusion: Fusion, tmp_path: Path) -> None:
    g = planted_gallery
    job = create_job(
        JobSpec(data_dir=str(g["gallery"].data_dir), partition="camp-a", target_fpir=FPIR),
        tmp_path / "job",
        fusion=fusion,
    )
    summary = job.run()
    assert summary["records"] == g["n"] // 2  # odd positions
    doc = json.loads((job.dir / "report.json").read_text())
    assert all(m["partition"] == "camp-a" for c in doc["clusters"] for m in c["members"])


class Crash(RuntimeError):
    pass


def test_interrupted_job_resumes_to_the_same_result(
    planted_gallery: dict[str, Any], fusion: Fusion, tmp_path: Path
) -> None:
    g = planted_gallery
    spec = JobSpec(data_dir=str(g["gallery"].data_dir), target_fpir=FPIR, block_rows=300)
    ref = create_job(spec, tmp_path / "ref", fusion=fusion)
    ref.run()
    calls: list[int] = []

    def crash_at_5(modality: str, block: int) -> None:
        calls.append(block)
        if block == 5:
            raise Crash("simulated crash")

    job = create_job(spec, tmp_path / "job", fusion=fusion, hook=crash_at_5, checkpoint_every_s=0.0)
    with pytest.raises(Crash):
        job.run()
    assert job.progress().state == "failed" and job.progress().stage == "pairs"
    assert json.loads((job.dir / "checkpoint.json").read_text())["blocks_done"] == 5
    # bytes written after the last checkpoint by a dying process must not count twice
    with (job.dir / "candidates.bin").open("ab") as fh:
        fh.write(b"\x01" * 48)
    resumed: list[int] = []
    open_job(job.dir, fusion=fusion, hook=lambda m, b: resumed.append(b)).run()
    assert resumed[0] == 5  # resumed, not restarted
    assert _pairs(job.dir) == _pairs(ref.dir)
    a = json.loads((job.dir / "report.json").read_text())
    b = json.loads((ref.dir / "report.json").read_text())
    assert a["clusters"] == b["clusters"] and a["pairs"] == b["pairs"]


def test_cancel_stops_at_a_block_and_resume_finishes(
    planted_gallery: dict[str, Any], fusion: Fusion, tmp_path: Path
) -> None:
    from engine.dedup import JobCancelled

    g = planted_gallery
    spec = JobSpec(data_dir=str(g["gallery"].data_dir), target_fpir=FPIR, block_rows=500)
    holder: list[DedupJob] = []

    def cancel_at_2(modality: str, block: int) -> None:
        if block == 2:
            holder[0].cancel()

    job = create_job(spec, tmp_path / "job", fusion=fusion, hook=cancel_at_2, checkpoint_every_s=0.0)
    holder.append(job)
    with pytest.raises(JobCancelled):
        job.run()
    p = job.progress()
    assert p.state == "cancelled" and 0 < p.done < p.total
    with pytest.raises(JobCancelled):  # the request stands until withdrawn by resume
        open_job(job.dir, fusion=fusion).run()
    summary = open_job(job.dir, fusion=fusion).resume()
    assert _pairs(job.dir) == g["truth"] and summary["clusters"] == len(g["groups"])
