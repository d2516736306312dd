"""Face + iris N:N: candidates from each modality, exact scores in every shared modality, LLR fusion
with the threshold of each pair's shared modality set. The job must find exactly the brute-force pair
set; fast mode must report a measured pair recall."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.dedup import JobSpec
from engine.dedup.data import ModalityData
from engine.dedup.fuse import make_thresholds
from engine.dedup.pairs import IrisExact
from engine.fusion import Fusion
from engine.iris.synthetic_codes import capture, impostor_gallery, random_irises
from engine.types import Modality, Template
from tests.unit.dedup.conftest import (
    COLUMNS,
    IRIS_MODEL,
    NBYTES,
    at_cosine,
    create_job,
    face_t,
    iris_t,
    make_data_dir,
    unit_rows,
)

FPIR = 0.003
N_RANDOM = 300


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, fusion: Fusion) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    faces = unit_rows(rng, N_RANDOM)
    codes, masks = impostor_gallery(N_RANDOM, NBYTES, COLUMNS, seed=11)
    records: list[dict[Modality, Template]] = []
    for i in range(N_RANDOM):
        kind = i % 3  # face+iris, face only, iris only
        rec: dict[Modality, Template] = {}
        if kind in (0, 1):
            rec[Modality.FACE] = face_t(faces[i])
        if kind in (0, 2):
            rec[Modality.IRIS_LEFT] = iris_t(codes[i], masks[i])
        records.append(rec)
    eyes = random_irises(30, NBYTES, COLUMNS, seed=12)
    a, b = capture(eyes, COLUMNS, seed=13), capture(eyes, COLUMNS, seed=14)
    groups: list[tuple[int, int]] = []
    for k in range(30):
        f = unit_rows(rng, 1)[0]
        if k < 10:  # both modalities, face weak on its own (cosine 0.45), iris a real second capture
            r1 = {Modality.FACE: face_t(f), Modality.IRIS_LEFT: iris_t(a.codes[k], a.masks[k])}
            r2 = {
                Modality.FACE: face_t(at_cosine(rng, f, 0.45)),
                Modality.IRIS_LEFT: iris_t(b.codes[k], b.masks[k]),
            }
        elif k < 20:  # iris only shared
            r1 = {Modality.IRIS_LEFT: iris_t(a.codes[k], a.masks[k])}
            r2 = {Modality.FACE: face_t(f), Modality.IRIS_LEFT: iris_t(b.codes[k], b.masks[k])}
        else:  # face only shared
            r1 = {Modality.FACE: face_t(f), Modality.IRIS_LEFT: iris_t(a.codes[k], a.masks[k])}
            r2 = {Modality.FACE: face_t(at_cosine(rng, f, 0.9))}
        records += [r1, r2]
        groups.append((len(records) - 2, len(records) - 1))
    order = rng.permutation(len(records))
    refs = [f"M{pos:04d}" for pos in range(len(records))]
    ref_of = {int(src): refs[pos] for pos, src in enumerate(order)}
    data = make_data_dir(
        tmp_path_factory.mktemp("mm") / "data", [(ref_of[int(src)], records[int(src)], "") for src in order]
    )
    # brute force with the engine's rule over every pair
    n = len(records)
    th = make_thresholds(fusion, [Modality.FACE, Modality.IRIS_LEFT], n, target_fpir=FPIR)
    iu, ju = np.triu_indices(n, 1)
    llr = np.zeros(iu.size)
    shared = [[] for _ in range(iu.size)]  # type: list[list[Modality]]
    fx = {i: r[Modality.FACE].vector for i, r in enumerate(records) if Modality.FACE in r}
    has_f = np.array([i in fx for i in range(n)])
    fm = np.stack([fx.get(i, np.zeros(128, np.float32)) for i in range(n)]).astype(np.float64)
    sel = has_f[iu] & has_f[ju]
    llr[sel] += fusion.calibration(Modality.FACE).llr_of(np.einsum("ij,ij->i", fm[iu[sel]], fm[ju[sel]]))
    for k in np.nonzero(sel)[0]:
        shared[k].append(Modality.FACE)
    irows = np.array([i for i, r in enumerate(records) if Modality.IRIS_LEFT in r])
    ic = np.stack([records[i][Modality.IRIS_LEFT].code for i in irows])  # type: ignore[union-attr]
    im = np.stack([records[i][Modality.IRIS_LEFT].mask for i in irows])  # type: ignore[union-attr]
    kern = IrisExact(ModalityData(IRIS_MODEL, irows, codes=ic, masks=im, columns=COLUMNS))
    pos = np.full(n, -1)
    pos[irows] = np.arange(irows.size)
    sel = (pos[iu] >= 0) & (pos[ju] >= 0)
    llr[sel] += fusion.calibration(Modality.IRIS_LEFT).llr_of(kern.score_pairs(pos[iu[sel]], pos[ju[sel]]))
    for k in np.nonzero(sel)[0]:
        shared[k].append(Modality.IRIS_LEFT)
    truth = {
        tuple(sorted((ref_of[int(iu[k])], ref_of[int(ju[k])])))
        for k in range(iu.size)
        if shared[k] and llr[k] >= th.fused_for(shared[k])
    }
    planted = {tuple(sorted((ref_of[x], ref_of[y]))) for x, y in groups}
    return {"dir": data.data_dir, "truth": truth, "planted": planted}


def _pairs(job_dir: Path) -> set[tuple[str, ...]]:
    with (job_dir / "pairs.csv").open() as fh:
        return {tuple(sorted((r["ref_id_a"], r["ref_id_b"]))) for r in csv.DictReader(fh)}


def test_exact_multimodal_equals_brute_force(gallery: dict[str, Any], fusion: Fusion, tmp_path: Path) -> None:
    assert gallery["truth"] == gallery["planted"]  # the seeded data has no accidental match
    job = create_job(
        JobSpec(data_dir=str(gallery["dir"]), target_fpir=FPIR), tmp_path / "job", fusion=fusion
    )
    summary = job.run()
    assert _pairs(job.dir) == gallery["truth"]
    assert summary["clusters"] == 30 and summary["pair_recall_sample"] is None
    doc = json.loads((job.dir / "report.json").read_text())
    both = [p for p in doc["pairs"] if len(p["scores"]) == 2]
    assert len(both) == 10  # per-modality scores kept for pairs sharing face and iris
    assert all(p["scores"]["face"] == pytest.approx(0.45, abs=1e-3) for p in both)


def test_fast_mode_reports_measured_recall(gallery: dict[str, Any], fusion: Fusion, tmp_path: Path) -> None:
    job = create_job(
        JobSpec(data_dir=str(gallery["dir"]), target_fpir=FPIR, mode="fast", recall_sample=0.5),
        tmp_path / "job",
        fusion=fusion,
    )
    summary = job.run()
    rec = summary["pair_recall_sample"]
    # face stays exact below 2048 templates (an IVF of a few hundred vectors saves nothing)
    assert set(rec) == {"iris_left"}
    assert rec["iris_left"]["exact_pairs"] > 0 and rec["iris_left"]["recall"] >= 0.9
    found = _pairs(job.dir)
    assert found <= gallery["truth"]  # a fast mode may miss pairs, never invent them
    assert len(found) >= 0.9 * len(gallery["truth"])
