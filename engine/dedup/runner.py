"""De-duplication jobs in the background of a long-lived process (what a gRPC servicer drives), on the
one job runner of ``engine.jobs``.

    runner = JobRunner(datadir.jobs_dir("dedup"), source=datadir)   # the engine's open data directory
    job_id = runner.start(JobSpec(data_dir=str(datadir.root)))      # StartDedup
    runner.progress(job_id)                                          # GetDedup / WatchDedup
    runner.cancel(job_id); runner.resume(job_id)                     # CancelDedup / ResumeDedup
    runner.result(job_id)                                            # GetDedupResult (summary + files)

Each job lives in ``root/<job_id>/`` (see ``engine.dedup.jobs``). Jobs run one at a time by default:
the pair kernels already use every core, and two at once would only share them. A job found
``running`` when the runner starts belonged to a process that died: it is marked ``interrupted`` and
can be resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import jobs
from engine.dedup.jobs import DedupJob
from engine.dedup.sources import JobSpec
from engine.errors import Conflict
from engine.fusion import FusionSource

if TYPE_CHECKING:
    from engine.datadir import DataDir

__all__ = ["JobResult", "JobRunner"]

OUTPUTS = ("summary.json", "report.json", "report.html", "pairs.csv", "clusters.csv", "manifest_errors.csv")


@dataclass(frozen=True)
class JobResult:
    """A finished job: its summary and the paths of its output files (those that exist)."""

    job_id: str
    summary: dict[str, Any]
    files: dict[str, Path]


class JobRunner(jobs.JobRunner):
    """Dedup jobs over ``source`` (the gallery's open data directory) in ``root``."""

    def __init__(self, root: Path, *, source: DataDir, max_running: int = 1,
                 fusion: FusionSource | None = None) -> None:
        self.source = source

        def open_job(d: Path) -> DedupJob:
            return DedupJob.open(d, source=source, fusion=fusion)

        super().__init__(root, open_job, kind="dedup", max_running=max_running)

    def start(self, spec: JobSpec) -> str:
        """Create a job and queue it; returns its id at once."""
        job_id = jobs.new_job_id()
        DedupJob.create(spec, self.root / job_id, job_id=job_id)
        self.submit(job_id)
        return job_id

    def result(self, job_id: str) -> JobResult:
        d = self.dir_of(job_id)
        if DedupJob.open(d).progress().stage != "done":
            raise Conflict(f"dedup job {job_id} has not finished", reason="JOB_NOT_DONE")
        files = {name: d / name for name in OUTPUTS if (d / name).is_file()}
        return JobResult(job_id, json.loads((d / "summary.json").read_text()), files)
