"""Batch de-duplication over gRPC against a real server on 127.0.0.1:0: a synthetic gallery with
planted duplicates (two pairs and one chain of three), start -> watch -> paged result clusters ->
every report format, cancel + resume, the adjudication-queue push, errors and roles; the
``nasname dedup ... --remote`` commands with thumbnails for a role allowed images; a job stopped by a
graceful shutdown resumes on the next server."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from engine.config import EngineConfig
from engine.engine import Engine
from engine.fusion import Fusion
from engine.types import FaceTemplate, Modality
from server.auth import IMAGE_ROLES, Role
from server.cli import main as cli_main
from server.client import error_reason
from tests.integration.test_service_support import (
    MODEL,
    Service,
    make_fusion,
    mate,
    open_engine,
    start_service,
    unit,
)

SC = grpc.StatusCode
PLANTED = [{"D00", "D01"}, {"D10", "D11"}, {"D20", "D21", "D22"}]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    fusion: Fusion = make_fusion(tmp_path_factory.mktemp("cal"))
    s = start_service(open_engine(tmp_path_factory.mktemp("svc") / "data", fusion))
    rng = np.random.default_rng(17)
    vectors = {f"U{i:03d}": unit(rng) for i in range(70)}
    for k in range(3):
        base = unit(rng)
        for j in range(len(PLANTED[k])):
            vectors[f"D{k}{j}"] = mate(base, rng, 0.03)
    for ref, v in vectors.items():
        s.engine.gallery.insert({Modality.FACE: FaceTemplate(v, MODEL)}, ref_id=ref,
                                partition="camp-a" if ref[-1] in "02468" else "camp-b")
    yield s
    s.stop()


def _watch_to_end(service: Service, job_id: str) -> list[str]:
    states = [p.state for p in service.client(Role.INVESTIGATOR).watch_dedup(job_id, timeout=120)]
    assert states, "the stream sent no snapshot"
    return states


def _members(result: object) -> list[set[str]]:
    return sorted(({m.reference_id for m in c.members} for c in result.clusters), key=sorted)  # type: ignore[attr-defined]


def test_nn_job_end_to_end(service: Service) -> None:
    inv = service.client(Role.INVESTIGATOR)
    job_id = inv.start_dedup(target_fpir=0.003).job_id
    assert _watch_to_end(service, job_id)[-1] == "done"
    status = inv.get_dedup(job_id).progress
    assert (status.state, status.stage, status.done, status.queued) == ("done", "done", status.total, -1)
    result = inv.get_dedup_result(job_id)
    assert result.total_clusters == 3 and _members(result) == sorted(PLANTED, key=sorted)
    summary = json.loads(result.summary_json)
    assert summary["records"] == 77 and summary["clusters"] == 3
    for c in result.clusters:
        assert {m.partition for m in c.members} <= {"camp-a", "camp-b"} and c.risk > 0
        # the weakest link is the spanning-tree pair that joined last: in a clique of three, not the
        # weakest of its three pairs, but never stronger than two of them
        assert c.weakest_link in c.pairs
        assert sum(p.fused >= c.weakest_link.fused for p in c.pairs) >= len(c.members) - 1
        assert all(p.fused >= p.threshold and 0.8 < p.scores["face"] <= 1.0 and "face" in p.llrs
                   for p in c.pairs)
    page = inv.get_dedup_result(job_id, limit=1, offset=1)
    assert page.total_clusters == 3 and [c.cluster for c in page.clusters] == [2]

    doc = json.loads(inv.fetch_dedup_report(job_id, "json"))
    assert sorted(({m["ref_id"] for m in c["members"]} for c in doc["clusters"]), key=sorted) == sorted(
        PLANTED, key=sorted)
    rows = list(csv.DictReader(io.StringIO(inv.fetch_dedup_report(job_id, "csv").decode())))
    assert sorted((set(r["members"].split(";")) for r in rows), key=sorted) == sorted(PLANTED, key=sorted)
    pairs = list(csv.DictReader(io.StringIO(inv.fetch_dedup_report(job_id, "pairs_csv").decode())))
    assert len(pairs) == len(doc["pairs"]) >= 5
    html = inv.fetch_dedup_report(job_id, "html").decode()
    assert html.startswith("<!DOCTYPE html>") or "<html" in html[:200]
    assert "D21" in html and "data:image" not in html  # this gallery keeps no images

    # a finished job cannot be cancelled or resumed
    for call in (inv.cancel_dedup, inv.resume_dedup):
        with pytest.raises(grpc.RpcError) as err:
            call(job_id)
        assert err.value.code() == SC.FAILED_PRECONDITION and error_reason(err.value) == "JOB_DONE"


def test_cancel_then_resume(service: Service) -> None:
    inv = service.client(Role.INVESTIGATOR)
    runner = service.server.servicer.dedup.runner
    gate = threading.Event()
    runner._pool.submit(gate.wait, 60)  # occupy the single job slot: the next job waits queued
    try:
        job_id = inv.start_dedup(fmr=1e-5).job_id
        assert inv.get_dedup(job_id).progress.state == "created"
        inv.cancel_dedup(job_id)
    finally:
        gate.set()
    assert _watch_to_end(service, job_id)[-1] == "cancelled"
    with pytest.raises(grpc.RpcError) as err:
        inv.get_dedup_result(job_id)
    assert err.value.code() == SC.FAILED_PRECONDITION and error_reason(err.value) == "JOB_NOT_DONE"
    with pytest.raises(grpc.RpcError) as err:
        inv.cancel_dedup(job_id)
    assert error_reason(err.value) == "JOB_CANCELLED"
    inv.resume_dedup(job_id)
    assert _watch_to_end(service, job_id)[-1] == "done"
    assert _members(inv.get_dedup_result(job_id)) == sorted(PLANTED, key=sorted)


def test_errors_and_roles(service: Service) -> None:
    inv = service.client(Role.INVESTIGATOR)
    for role in (Role.STATION, Role.ADJUDICATOR):
        with pytest.raises(grpc.RpcError) as err:
            service.client(role).start_dedup()
        assert err.value.code() == SC.PERMISSION_DENIED
    assert Role.STATION not in IMAGE_ROLES
    with pytest.raises(grpc.RpcError) as err:
        inv.get_dedup("0123456789ab")
    assert err.value.code() == SC.NOT_FOUND and error_reason(err.value) == "JOB_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as err:
        inv.get_dedup("../../etc")
    assert err.value.code() == SC.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        inv.start_dedup(fmr=2.0)
    assert err.value.code() == SC.INVALID_ARGUMENT and error_reason(err.value) == "INVALID_THRESHOLD"


def test_push_to_queue_last(service: Service) -> None:
    """Runs last in this module: it moves the planted duplicates (all but the oldest) to PENDING."""
    admin = service.client(Role.ADMIN)
    job_id = admin.start_dedup(push_to_queue=True).job_id
    assert _watch_to_end(service, job_id)[-1] == "done"
    assert admin.get_dedup(job_id).progress.queued == 4
    pending = {p.reference_id for p in admin.list_pending(limit=50).items}
    assert pending == {"D01", "D11", "D21", "D22"}
    again = admin.start_dedup().job_id  # pending records are no longer compared: no cluster is left
    _watch_to_end(service, again)
    assert admin.get_dedup_result(again).total_clusters == 0


def _gallery_service(data_dir: Path, fusion: Fusion, *, keep_images: bool) -> Service:
    cfg = EngineConfig(data_dir=data_dir, modalities=("face",), snapshot_every=0, keep_images=keep_images)
    return start_service(Engine.open(cfg, fusion=fusion))


def _jpeg(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 48), (shade, 90, 200 - shade)).save(buf, "JPEG")
    return buf.getvalue()


def test_cli_and_thumbnails_for_a_role_that_may_see_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fusion = make_fusion(tmp_path / "cal")
    s = _gallery_service(tmp_path / "data", fusion, keep_images=True)
    try:
        rng = np.random.default_rng(4)
        base = unit(rng)
        for i, v in enumerate([base, mate(base, rng, 0.03), *(unit(rng) for _ in range(20))]):
            s.engine.gallery.insert({Modality.FACE: FaceTemplate(v, MODEL)}, ref_id=f"K{i:02d}",
                                    images={Modality.FACE: _jpeg(5 * i)})
        conn = ["--address", s.address, "--token", s.secrets[Role.INVESTIGATOR], "--plaintext"]
        assert cli_main(["dedup", "start", *conn, "--json"]) == 0
        job_id = json.loads(capsys.readouterr().out)["job_id"]
        assert cli_main(["dedup", "watch", job_id, *conn, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["state"] == "done"
        out = tmp_path / "r.html"
        assert cli_main(["dedup", "report", job_id, "--remote", "--format", "html", "--out", str(out),
                         *conn]) == 0
        assert out.stat().st_mode & 0o777 == 0o600
        html = out.read_text()
        assert Role.INVESTIGATOR in IMAGE_ROLES and html.count("data:image/jpeg;base64,") == 2  # K00, K01
        assert cli_main(["dedup", "status", "0123456789ab", "--remote", *conn]) == 1  # NOT_FOUND, reported
        assert "JOB_NOT_FOUND" in capsys.readouterr().err
    finally:
        s.stop()


def test_graceful_shutdown_leaves_a_resumable_job(tmp_path: Path) -> None:
    fusion = make_fusion(tmp_path / "cal")
    s = _gallery_service(tmp_path / "data", fusion, keep_images=False)
    rng = np.random.default_rng(8)
    base = unit(rng)
    for i, v in enumerate([base, mate(base, rng, 0.03), *(unit(rng) for _ in range(30))]):
        s.engine.gallery.insert({Modality.FACE: FaceTemplate(v, MODEL)}, ref_id=f"S{i:02d}")
    gate = threading.Event()
    s.server.servicer.dedup.runner._pool.submit(gate.wait, 60)  # keeps the job queued
    job_id = s.client(Role.ADMIN).start_dedup().job_id
    threading.Timer(0.5, gate.set).start()
    s.stop()  # the runner asks the job to stop, waits for it
    s = _gallery_service(tmp_path / "data", fusion, keep_images=False)
    try:
        admin = s.client(Role.ADMIN)
        assert admin.get_dedup(job_id).progress.state == "cancelled"
        admin.resume_dedup(job_id)
        assert [p.state for p in admin.watch_dedup(job_id, timeout=60)][-1] == "done"
        assert _members(admin.get_dedup_result(job_id)) == [{"S00", "S01"}]
    finally:
        s.stop()
