"""The console's dedup pages over a finished N:N job (synthetic faces with planted duplicates): the job
list, clusters with thumbnails only for roles allowed to see images, and the push into the queue."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from starlette.testclient import TestClient

from engine.config import EngineConfig
from engine.dedup.service import DedupService
from engine.dedup.sources import JobSpec
from engine.engine import Engine
from engine.jobs import JobFiles
from engine.types import FaceTemplate, Modality
from server.web.app import create_app
from server.web.config import WebConfig
from tests.integration.test_service_support import MODEL, make_fusion, mate, unit
from tests.unit.web.test_console import csrf, login
from tests.web_support import add_users, face_image


def test_dedup_job_pages_and_push(tmp_path: Path) -> None:
    fusion = make_fusion(tmp_path / "cal")
    cfg = EngineConfig(data_dir=tmp_path / "data", modalities=("face",), snapshot_every=0, keep_images=True)
    engine = Engine.open(cfg, fusion=fusion)
    dedup = DedupService(engine.gallery, fusion)
    try:
        rng = np.random.default_rng(3)
        vectors = {f"U{i:02d}": unit(rng) for i in range(30)}
        base = unit(rng)
        vectors.update({"D0": mate(base, rng, 0.03), "D1": mate(base, rng, 0.03)})
        for i, (ref, v) in enumerate(vectors.items()):
            engine.gallery.insert({Modality.FACE: FaceTemplate(v, MODEL)}, ref_id=ref, partition="camp-a",
                                  images={Modality.FACE: face_image(i)})
        add_users(engine)
        app = create_app(engine, WebConfig(), dedup=dedup)
        inv = TestClient(app, base_url="https://testserver")
        login(inv, "investigator")
        assert 'href="/dedup/new"' in inv.get("/dedup").text
        form = inv.get("/dedup/new")
        assert form.status_code == 200 and '<option value="camp-a">camp-a</option>' in form.text
        bad = inv.post("/dedup/start", data={"csrf": csrf(form.text), "threshold": "fmr", "value": "2"})
        assert bad.status_code == 400 and "fmr must be in (0, 1)" in bad.text
        fields = {"partition": "camp-a", "mode": "exact", "threshold": "fpir", "value": "0.003"}
        assert inv.post("/dedup/start", data=fields).status_code == 403  # no CSRF token
        assert dedup.runner.list() == []
        started = inv.post("/dedup/start", data={"csrf": csrf(form.text), **fields}, follow_redirects=False)
        assert started.status_code == 303
        job_id = started.headers["location"].rsplit("/", 1)[1]
        spec = JobSpec(**JobFiles(dedup.runner.root / job_id).meta()["spec"])
        assert spec.partition == "camp-a" and spec.target_fpir == 0.003 and spec.mode == "exact"
        dedup.runner.wait(job_id, timeout=120)
        assert job_id in inv.get("/dedup").text
        page = inv.get(f"/dedup/{job_id}")
        assert page.status_code == 200 and "Cluster" in page.text
        assert re.search(r"D0.*D1|D1.*D0", page.text, re.S)
        assert 'src="/image/D0/face"' in page.text  # investigators may see images: thumbnails
        assert inv.get("/image/D0/face").status_code == 200
        r = inv.post(f"/dedup/{job_id}/push", data={"csrf": csrf(page.text)})
        assert "1 records queued" in r.text
        assert engine.get("D1").status.value == "pending"  # the younger member waits for a decision
        adj = TestClient(app, base_url="https://testserver")
        login(adj, "adjudicator")
        assert adj.get("/dedup").status_code == 403  # the table: adjudicators have no dedup RPCs
        assert adj.get("/dedup/new").status_code == 403
        assert "D1" in adj.get("/queue").text
        assert inv.get("/dedup/not-a-job").status_code == 400
    finally:
        dedup.close()
        engine.close()
