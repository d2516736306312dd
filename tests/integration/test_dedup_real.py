"""De-duplication end to end: real LFW photos through the face extractor, and a job killed with SIGKILL
in a subprocess that resumes (not restarts) to the result of an uninterrupted run.

Fixed subset (documented): the first three images of Colin_Powell enrolled as three reference ids plus
the first image of eight other people (alphabetical folders starting at Aaron_*), then a manifest batch
holding Colin_Powell's fourth image and one more person. ~13 extractions.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from engine.calibration import save_distributions
from engine.dedup import DedupJob, JobSpec
from engine.face import FaceConfig, FaceExtractor
from engine.fusion import Fusion
from engine.types import Modality
from tests.unit.dedup.conftest import (
    FACE_MODEL,
    at_cosine,
    create_job,
    face_t,
    make_data_dir,
    open_job,
    unit_rows,
)

ROOT = Path(__file__).resolve().parents[2]
PERSON = "Colin_Powell"


@pytest.fixture(scope="module")
def fx() -> FaceExtractor:
    return FaceExtractor.default(FaceConfig(threads=2))


def test_lfw_images_of_one_person_are_clustered(shared_data: Path, fx: FaceExtractor, tmp_path: Path) -> None:
    lfw = shared_data / "face" / "lfw"
    mine = sorted((lfw / PERSON).glob("*.jpg"))[:4]
    others = [sorted(d.glob("*.jpg"))[0] for d in sorted(lfw.iterdir()) if d.is_dir() and d.name != PERSON][
        :9
    ]
    assert len(mine) == 4 and len(others) == 9
    records = []
    for i, path in enumerate(mine[:3]):
        records.append((f"CP-{i + 1}", {Modality.FACE: fx.extract(path.read_bytes()).template}, "camp-a"))
    for i, path in enumerate(others[:8]):
        records.append((f"O-{i + 1}", {Modality.FACE: fx.extract(path.read_bytes()).template}, "camp-b"))
    data = make_data_dir(tmp_path / "data", records)
    fusion = Fusion.for_models({Modality.FACE: fx.model})

    job = create_job(JobSpec(data_dir=str(data.data_dir)), tmp_path / "nn", fusion=fusion)
    summary = job.run()
    doc = json.loads((job.dir / "report.json").read_text())
    clusters = [{m["ref_id"] for m in c["members"]} for c in doc["clusters"]]
    assert {"CP-1", "CP-2", "CP-3"} in clusters, clusters
    assert summary["clusters"] == 1

    manifest = tmp_path / "batch.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["reference_id", "modality", "path", "camp"])
        w.writerow(["NEW-CP", "face", f"{PERSON}/{mine[3].name}", "c"])
        w.writerow(["NEW-O", "face", f"{others[8].parent.name}/{others[8].name}", "c"])
        w.writerow(["NEW-X", "face", "Nobody/none.jpg", "c"])
    spec = JobSpec(data_dir=str(data.data_dir), against_manifest=str(manifest), batch_folder=str(lfw))
    batch = create_job(spec, tmp_path / "batch", fusion=fusion, extractor_for=lambda kind: fx)
    summary = batch.run()
    assert summary["manifest"]["row_errors"] == 1 and summary["manifest"]["batch_records"] == 2
    doc = json.loads((batch.dir / "report.json").read_text())
    clusters = [{m["ref_id"] for m in c["members"]} for c in doc["clusters"]]
    assert clusters == [{"NEW-CP", "CP-1", "CP-2", "CP-3"}]


_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from engine.fusion import Fusion
    from tests.unit.dedup.conftest import open_job
    from engine.types import Modality, ModelRef

    job_dir, cal_dir, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    fusion = Fusion.for_models({Modality.FACE: ModelRef("dedup-test-face", "1")}, cal_dir)

    def hook(modality, block):
        if block == 6:
            ready.write_text("at block 6")
            time.sleep(120)  # killed here

    open_job(job_dir, fusion=fusion, hook=hook, checkpoint_every_s=0.0).run()
""")


def test_sigkilled_job_resumes_to_the_same_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = unit_rows(rng, 900)
    for k in range(30):  # planted near-copies spread over the gallery
        x[870 + k] = at_cosine(rng, x[k * 29], 0.9)
    data = make_data_dir(
        tmp_path / "data", [(f"R{i:04d}", {Modality.FACE: face_t(x[i])}, "") for i in range(900)]
    )
    cal = tmp_path / "cal"
    cal.mkdir()
    save_distributions(
        FACE_MODEL,
        "face",
        rng.normal(0.8, 0.06, 100_000),
        rng.normal(0.0, 0.12, 500_000),
        source="synthetic",
        command="tests/integration/test_dedup_real.py",
        directory=cal,
    )
    fusion = Fusion.for_models({Modality.FACE: FACE_MODEL}, cal)
    spec = JobSpec(data_dir=str(data.data_dir), block_rows=60)
    ref = create_job(spec, tmp_path / "ref", fusion=fusion)
    expected = ref.run()
    job = create_job(spec, tmp_path / "job", fusion=fusion)
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(job.dir), str(cal), str(ready)], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the job process ended before it was killed"
            assert time.monotonic() < deadline, "the job process never reached block 6"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    p = DedupJob.open(job.dir).progress()
    assert p.state == "running" and p.stage == "pairs" and 0 < p.done < p.total  # died mid-run
    seen: list[int] = []
    summary = open_job(job.dir, fusion=fusion, hook=lambda m, b: seen.append(b)).run()
    assert seen[0] == 6  # resumed from the checkpoint, not restarted
    assert summary["pairs"] == expected["pairs"] == 30 and summary["clusters"] == expected["clusters"]
    a = json.loads((job.dir / "report.json").read_text())
    b = json.loads((ref.dir / "report.json").read_text())
    assert a["pairs"] == b["pairs"] and a["clusters"] == b["clusters"]
