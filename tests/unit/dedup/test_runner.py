"""The background job runner an RPC layer drives: start -> id, progress, result, cancel, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.dedup import JobSpec
from engine.dedup.runner import JobRunner
from engine.errors import Conflict, InvalidInput, NotFound
from engine.fusion import Fusion
from engine.types import Modality
from tests.unit.dedup.conftest import at_cosine, face_t, make_data_dir, source, unit_rows


def test_runner_start_progress_result_cancel_resume(tmp_path: Path, fusion: Fusion) -> None:
    rng = np.random.default_rng(1)
    x = unit_rows(rng, 200)
    x[199] = at_cosine(rng, x[3], 0.9)
    data = make_data_dir(
        tmp_path / "data", [(f"R{i}", {Modality.FACE: face_t(x[i])}, "") for i in range(200)]
    )
    runner = JobRunner(tmp_path / "jobs", source=source(data.data_dir), fusion=fusion)
    try:
        job_id = runner.start(JobSpec(data_dir=str(data.data_dir)))
        runner.wait(job_id, timeout=120)
        p = runner.progress(job_id)
        assert p.state == "done" and p.done == p.total
        result = runner.result(job_id)
        assert result.summary["clusters"] == 1 and result.files["report.html"].is_file()
        with pytest.raises(Conflict):
            runner.resume(job_id)
        with pytest.raises(NotFound):
            runner.progress("0123456789ab")
        with pytest.raises(InvalidInput):
            runner.progress("../../etc")
        # a job cancelled while still queued stops before its first block, and resumes to the end
        second = runner.start(JobSpec(data_dir=str(data.data_dir), block_rows=10))
        runner.cancel(second)
        runner.wait(second, timeout=120)
        assert runner.progress(second).state == "cancelled"
        with pytest.raises(Conflict):
            runner.result(second)
        runner.resume(second)
        runner.wait(second, timeout=120)
        assert runner.result(second).summary["pairs"] == 1
        assert [q.state for q in runner.list()] == ["done", "done"]
    finally:
        runner.close()
