"""Batch from a folder + manifest against the gallery: per-row error report, the job goes on with the
good rows, duplicates within the batch and against the gallery, pairs already adjudicated distinct are
marked and not raised, clustered batch records can be queued for adjudication (N:N: test_nn_queue)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.dedup import JobSpec
from engine.dedup.cli import main
from engine.dedup.queue import push_clusters
from engine.errors import InvalidImage, InvalidInput
from engine.extractor import Extraction
from engine.fusion import Fusion
from engine.gallery import Gallery
from engine.store import RecordStatus, Store
from engine.types import Modality, ModelRef, Quality
from tests.unit.dedup.conftest import FACE_MODEL, at_cosine, create_job, face_t, make_data_dir, unit_rows

FPIR = 0.003


class NpyFaceExtractor:
    """Fake face extractor: the 'image' is an .npy vector; anything else is an undecodable image."""

    kind = "face"
    model: ModelRef = FACE_MODEL

    def extract(self, image: Any) -> Extraction:
        try:
            v = np.load(io.BytesIO(bytes(image)), allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InvalidImage("not a decodable image") from exc
        return Extraction(face_t(v.astype(np.float32)), Quality(1.0, True))


def _extractor_for(kind: str) -> NpyFaceExtractor:
    if kind != "face":
        raise InvalidInput("only faces here")
    return NpyFaceExtractor()


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    g = unit_rows(rng, 60)
    records = [(f"G{i:04d}", {Modality.FACE: face_t(g[i])}, "") for i in range(60)]
    data = make_data_dir(tmp_path / "data", records)
    store = Store(data.data_dir / "nasname.db", data.keyring)
    try:  # P was enrolled, suspected as a duplicate of G0001, and adjudicated distinct
        store.insert(
            {Modality.FACE: face_t(at_cosine(rng, g[1], 0.95))},
            ref_id="P",
            status=RecordStatus.PENDING,
            candidates=[{"ref_id": "G0001", "fused": 30.0, "scores": {"face": 0.95}}],
        )
        store.decide("P", "distinct", actor="adjudicator-1")
    finally:
        store.close()
    folder = tmp_path / "batch"
    folder.mkdir()
    b2 = unit_rows(rng, 1)[0]
    files = {
        "b1.npy": at_cosine(rng, g[5], 0.93),
        "b2.npy": b2,
        "b3.npy": at_cosine(rng, b2, 0.9),
        "b1again.npy": unit_rows(rng, 1)[0],
    }
    for name, v in files.items():
        np.save(folder / name, v)
    (folder / "bad.npy").write_bytes(b"\xff\xd8 this is not an image")
    (tmp_path / "outside.npy").write_bytes(b"x")
    rows = [
        ("B1", "face", "b1.npy", "north"),
        ("B2", "face", "b2.npy", "north"),
        ("B3", "face", "b3.npy", "south"),
        ("B4", "face", "missing.npy", ""),
        ("B5", "fingerprint", "b2.npy", ""),
        ("B1", "face", "b1again.npy", ""),
        ("B6", "face", "bad.npy", ""),
        ("", "face", "b2.npy", ""),
        ("B7", "face", "../outside.npy", ""),
    ]
    manifest = folder / "batch.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["reference_id", "modality", "path", "site"])
        w.writerows(rows)
    return {"dir": data.data_dir, "keyring": data.keyring, "manifest": manifest}


def _clusters(job_dir: Path) -> list[set[str]]:
    doc = json.loads((job_dir / "report.json").read_text())
    return [{m["ref_id"] for m in c["members"]} for c in doc["clusters"]]


def test_manifest_batch_reports_bad_rows_and_finds_duplicates(
    setup: dict[str, Any], fusion: Fusion, tmp_path: Path
) -> None:
    spec = JobSpec(data_dir=str(setup["dir"]), against_manifest=str(setup["manifest"]), target_fpir=FPIR)
    job = create_job(spec, tmp_path / "job", fusion=fusion, extractor_for=_extractor_for)
    summary = job.run()
    with (job.dir / "manifest_errors.csv").open() as fh:
        errors = {(r["line"], r["reason"]) for r in csv.DictReader(fh)}
    assert errors == {
        ("5", "MISSING_FILE"),
        ("6", "UNKNOWN_MODALITY"),
        ("7", "DUPLICATE_ID"),
        ("8", "BAD_IMAGE"),
        ("9", "EMPTY_REFERENCE_ID"),
        ("10", "PATH_OUTSIDE_FOLDER"),
    }
    assert summary["manifest"]["row_errors"] == 6 and summary["manifest"]["batch_records"] == 3
    # batch vs gallery and within the batch; the gallery is not compared with itself here
    assert sorted(map(sorted, _clusters(job.dir))) == [["B1", "G0005"], ["B2", "B3"]]
    doc = json.loads((job.dir / "report.json").read_text())
    b1 = next(c for c in doc["clusters"] if {"B1", "G0005"} == {m["ref_id"] for m in c["members"]})
    assert {m["ref_id"]: m["attributes"] for m in b1["members"]}["B1"] == {"site": "north"}

    pushed = push_clusters(job, actor="investigator-7")
    assert sorted(pushed.queued) == ["B1", "B2", "B3"]
    store = Store(setup["dir"] / "nasname.db", setup["keyring"])
    try:
        cases = {c.ref_id: c for c in store.pending()}
        assert {c["ref_id"] for c in cases["B1"].candidates} == {"G0005"}
        assert {c["ref_id"] for c in cases["B3"].candidates} == {"B2"}
        assert all(isinstance(c["fused"], float) for c in cases["B1"].candidates)
        assert store.get("B1").status is RecordStatus.PENDING
    finally:
        store.close()
    again = push_clusters(job, actor="investigator-7")  # idempotent: nothing queued twice
    assert again.queued == [] and set(again.skipped.values()) == {"ALREADY_EXISTS"}


def test_nn_marks_adjudicated_pairs_and_queues_nothing_without_clusters(
    setup: dict[str, Any], fusion: Fusion, tmp_path: Path
) -> None:
    job = create_job(
        JobSpec(data_dir=str(setup["dir"]), target_fpir=FPIR), tmp_path / "job", fusion=fusion
    )
    summary = job.run()
    doc = json.loads((job.dir / "report.json").read_text())
    assert [(p["a"], p["b"], p["adjudicated_distinct"], p["cluster"]) for p in doc["pairs"]] == [
        ("G0001", "P", True, None)
    ]
    assert summary["clusters"] == 0 and summary["pairs_adjudicated_distinct"] == 1
    assert "already adjudicated distinct" in (job.dir / "report.html").read_text()
    with pytest.raises(InvalidInput, match="through the open gallery"):
        push_clusters(job, actor="x")  # N:N pushes go through a gallery its caller opened
    with Gallery.open(EngineConfig(data_dir=setup["dir"])) as gallery:
        pushed = push_clusters(job, actor="x", gallery=gallery)
    assert (pushed.queued, pushed.skipped) == ([], {})


def test_cli_run_status_and_unreadable_manifest(
    setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "nocols.csv"
    bad.write_text("id,path\nX,a.jpg\n")
    rc = main(
        [
            "run",
            "--data-dir",
            str(setup["dir"]),
            "--against-manifest",
            str(bad),
            "--out",
            str(tmp_path / "j1"),
            "--quiet",
        ]
    )
    assert rc == 1 and "lacks column(s) reference_id, modality" in capsys.readouterr().err
    rc = main(
        ["run", "--data-dir", str(setup["dir"]), "--fmr", "1e-6", "--out", str(tmp_path / "j2"), "--quiet"]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["records"] == 61
    assert main(["status", str(tmp_path / "j2")]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "done" and status["done"] == status["total"] > 0
    assert main(["status", str(tmp_path / "nothing")]) == 1


def test_thumbnails_only_when_asked_and_images_are_kept(tmp_path: Path, fusion: Fusion) -> None:
    from PIL import Image

    from engine.crypto import KeyRing
    from engine.dedup.html import thumbnail_from_store
    from engine.dedup.report import render_html

    rng = np.random.default_rng(8)
    x = unit_rows(rng, 3)
    x[2] = at_cosine(rng, x[0], 0.95)
    d = tmp_path / "data"
    d.mkdir()
    keyring = KeyRing.from_file(d / "nasname.key")
    buf = io.BytesIO()
    Image.new("RGB", (120, 150), (200, 120, 90)).save(buf, "JPEG")
    store = Store(d / "nasname.db", keyring, keep_images=True)
    try:
        for i in range(3):
            store.insert(
                {Modality.FACE: face_t(x[i])}, ref_id=f"K{i}", images={Modality.FACE: buf.getvalue()}
            )
    finally:
        store.close()
    job = create_job(JobSpec(data_dir=str(d)), tmp_path / "job", fusion=fusion)
    job.run()
    assert "<img" not in (job.dir / "report.html").read_text()  # default: no image at all
    store = Store(d / "nasname.db", keyring, keep_images=True)
    try:
        render_html(job.dir, thumbnail_of=thumbnail_from_store(store))
    finally:
        store.close()
    html = (job.dir / "report.html").read_text()
    assert html.count('<img class="thumb" alt="" src="data:image/jpeg;base64,') == 2  # K0 and K2
