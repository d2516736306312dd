"""N:N clusters into the adjudication queue: every member but the oldest becomes PENDING with its
direct cluster mates as candidates (through the gallery, so it leaves the indexes at once)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.config import EngineConfig
from engine.dedup import JobSpec
from engine.dedup.queue import push_clusters
from engine.engine import _candidate_from_json
from engine.fusion import Fusion
from engine.gallery import Gallery
from engine.store import RecordStatus
from engine.types import Modality
from tests.unit.dedup.conftest import at_cosine, create_job, face_t, make_data_dir, unit_rows


def test_nn_push_queues_all_but_the_oldest_member(tmp_path: Path, fusion: Fusion) -> None:
    rng = np.random.default_rng(21)
    x = unit_rows(rng, 80)
    x[50] = at_cosine(rng, x[3], 0.9)
    x[10] = at_cosine(rng, x[3], 0.9, avoid=[x[50]])
    x[40] = at_cosine(rng, x[20], 0.92)
    records = [(f"R{i:02d}", {Modality.FACE: face_t(x[i])}, "") for i in range(80)]
    data = make_data_dir(tmp_path / "data", records)
    job = create_job(JobSpec(data_dir=str(data.data_dir)), tmp_path / "job", fusion=fusion)
    assert job.run()["clusters"] == 2
    with Gallery.open(EngineConfig.load(data_dir=data.data_dir)) as g:
        pushed = push_clusters(job, actor="investigator-9", gallery=g)
        assert sorted(pushed.queued) == ["R10", "R40", "R50"] and pushed.skipped == {}
        for ref in ("R03", "R20"):
            assert g.get(ref).status is RecordStatus.ACTIVE
        cases = {c.ref_id: c for c in g.pending()}
        assert set(cases) == {"R10", "R40", "R50"}
        assert {c["ref_id"] for c in cases["R40"].candidates} == {"R20"}
        assert "R03" in {c["ref_id"] for c in cases["R10"].candidates}
        cand = _candidate_from_json(cases["R40"].candidates[0])  # the engine reads them back
        assert cand.fused > 0 and Modality.FACE in cand.scores
        hits = [h.ref_id for h in g.search(Modality.FACE, face_t(x[40]), 3)]
        assert "R40" not in hits and hits[0] == "R20"
        again = push_clusters(job, actor="investigator-9", gallery=g)  # nothing queued twice
        assert again.queued == [] and set(again.skipped.values()) == {"CASE_OPEN"}
        g.decide("R40", "distinct", actor="adjudicator-2")
        assert g.search(Modality.FACE, face_t(x[40]), 1)[0].ref_id == "R40"
        assert g.store.verify_audit().ok
    doc = json.loads((job.dir / "report.json").read_text())
    assert sorted(sorted(m["ref_id"] for m in c["members"]) for c in doc["clusters"]) == [
        ["R03", "R10", "R50"],
        ["R20", "R40"],
    ]
