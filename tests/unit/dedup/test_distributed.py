"""Distributed N:N (engine.dedup.distributed) on a local Ray cluster of 2 CPUs: pair blocks as Ray
tasks give the single-node job's candidates and clusters, and a job that crashed mid-way resumes
from its checkpoint to the same result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.dedup.sources import JobSpec
from engine.fusion import Fusion
from tests.unit.dedup import test_face_nn
from tests.unit.dedup.conftest import create_job, open_job
from tests.unit.dedup.test_face_nn import FPIR, Crash, _pairs

planted_gallery = test_face_nn.planted_gallery  # the module-scoped seeded gallery fixture, shared
ray = pytest.importorskip("ray", reason="the [cluster] extra (ray) is not installed")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_blocks_match_single_node_and_resume(
    ray_cluster: None, planted_gallery: dict[str, Any], fusion: Fusion, tmp_path: Path
) -> None:
    from engine.dedup.distributed import RayBlocks

    g = planted_gallery
    spec = JobSpec(data_dir=str(g["gallery"].data_dir), target_fpir=FPIR, block_rows=300)
    ref = create_job(spec, tmp_path / "ref", fusion=fusion)
    ref.run()

    def crash_at_4(modality: str, block: int) -> None:
        if block == 4:
            raise Crash("simulated crash")

    blocks = RayBlocks(window=3, task_cpus=0.5)
    job = create_job(spec, tmp_path / "job", fusion=fusion, hook=crash_at_4, checkpoint_every_s=0.0,
                     blocks=blocks)
    with pytest.raises(Crash):
        job.run()
    assert json.loads((job.dir / "checkpoint.json").read_text())["blocks_done"] == 4
    resumed = RayBlocks(window=3, task_cpus=0.5)
    open_job(job.dir, fusion=fusion, blocks=resumed).run()
    assert blocks.submitted >= 4 and resumed.submitted > 0  # the blocks really ran as Ray tasks
    assert _pairs(job.dir) == _pairs(ref.dir)
    a = json.loads((job.dir / "report.json").read_text())
    b = json.loads((ref.dir / "report.json").read_text())
    assert a["clusters"] == b["clusters"] and a["pairs"] == b["pairs"]
