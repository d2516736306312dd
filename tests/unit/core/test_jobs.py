"""The one job framework (engine.jobs): job folder, states, cancel flag, interrupted jobs, ETA."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.errors import Conflict, NotFound
from engine.jobs import JobFiles, eta_s, mark_interrupted


def test_job_files_states_cancel_and_interrupted(tmp_path: Path) -> None:
    files = JobFiles.create(tmp_path / "jobs" / "a", "test", job_id="0123456789ab", spec={"x": 1})
    assert stat.S_IMODE((tmp_path / "jobs").stat().st_mode) == 0o700
    assert files.meta()["state"] == "created" and files.checkpoint()["stage"] == "prepare"
    with pytest.raises(Conflict):
        JobFiles.create(tmp_path / "jobs" / "a", "test")
    files.set_state("running")
    files.save_checkpoint({"stage": "work", "done": 3})
    assert not files.cancel_requested()
    files.cancel()
    assert files.cancel_requested()
    files.clear_cancel()
    assert not files.cancel_requested()
    done = JobFiles.create(tmp_path / "jobs" / "b", "test")
    done.set_state("done")
    assert mark_interrupted(tmp_path / "jobs") == ["0123456789ab"]  # the process that ran it died
    assert files.meta()["state"] == "interrupted" and done.meta()["state"] == "done"
    assert files.checkpoint() == {"stage": "work", "done": 3, "updated": files.checkpoint()["updated"]}
    with pytest.raises(NotFound):
        JobFiles(tmp_path / "none").meta()


def test_eta_scales_the_measured_rate() -> None:
    assert eta_s(0, 10, 5.0) is None
    assert eta_s(5, 10, 5.0) == pytest.approx(5.0)
    assert eta_s(10, 10, 7.0) == 0.0
