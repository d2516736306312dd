"""Jobs run in the background of a long-lived process (what a gRPC servicer drives).

    runner = JobRunner(datadir.jobs_dir("dedup"), source=datadir)   # the engine's open data directory
    job_id = runner.start(JobSpec(data_dir=str(datadir.root)))      # StartDedup
    runner.progress(job_id)                                      # GetDedup / WatchDedup (poll + stream)
    runner.cancel(job_id); runner.resume(job_id)                 # CancelDedup / ResumeDedup
    runner.result(job_id)                                        # GetDedupResult (summary + files)

Each job lives in ``root/<job_id>/`` (see ``engine.dedup.jobs``); state is on disk, so progress can be
read from any thread or process. Jobs run one at a time by default: the pair kernels already use
every core, and two at once would only share them. A job found ``running`` when the runner starts
belonged to a process that died: it is marked ``interrupted`` and can be resumed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.dedup.jobs import DedupJob, JobCancelled, Progress
from engine.dedup.sources import JobSpec
from engine.errors import Conflict, InvalidInput, NasnameError, NotFound
from engine.fsutil import private_dir
from engine.fusion import Fusion
from engine.models.manifest import write_atomic

if TYPE_CHECKING:
    from engine.datadir import DataDir

__all__ = ["JobResult", "JobRunner"]

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{12}$")
OUTPUTS = ("summary.json", "report.json", "report.html", "pairs.csv", "clusters.csv", "manifest_errors.csv")


@dataclass(frozen=True)
class JobResult:
    """A finished job: its summary and the paths of its output files (those that exist)."""

    job_id: str
    summary: dict[str, Any]
    files: dict[str, Path]


class JobRunner:
    def __init__(self, root: Path, *, source: DataDir, max_running: int = 1,
                 fusion: Fusion | None = None) -> None:
        self.root = Path(root)
        self.source = source
        private_dir(self.root)
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="nasname-dedup")
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._fusion = fusion
        for d in self.root.iterdir():
            if (d / "job.json").is_file():
                job = DedupJob.open(d)
                if job.meta.get("state") in ("running", "created"):
                    job.meta["state"] = "interrupted"
                    write_atomic(d / "job.json", json.dumps(job.meta, indent=1).encode())

    def _dir(self, job_id: str) -> Path:
        if not _ID.match(job_id):
            raise InvalidInput("malformed job id", reason="INVALID_REQUEST")
        d = self.root / job_id
        if not (d / "job.json").is_file():
            raise NotFound(f"no dedup job {job_id}", reason="JOB_NOT_FOUND")
        return d

    def _submit(self, job_id: str, *, resume: bool = False) -> None:
        job = DedupJob.open(self.root / job_id, source=self.source, fusion=self._fusion)

        def work() -> None:
            try:
                job.resume() if resume else job.run()
            except JobCancelled:
                log.info("dedup job %s cancelled", job_id)
            except NasnameError as exc:
                log.warning("dedup job %s failed: %s", job_id, exc.reason)
            except Exception:
                log.exception("dedup job %s failed", job_id)

        with self._lock:
            running = self._futures.get(job_id)
            if running is not None and not running.done():
                raise Conflict(f"dedup job {job_id} is already running", reason="JOB_RUNNING")
            self._futures[job_id] = self._pool.submit(work)

    def start(self, spec: JobSpec) -> str:
        """Create a job and queue it; returns its id at once."""
        job_id = uuid.uuid4().hex[:12]
        DedupJob.create(spec, self.root / job_id, job_id=job_id)
        self._submit(job_id)
        return job_id

    def resume(self, job_id: str) -> None:
        """Queue an interrupted, failed or cancelled job again; it continues from its checkpoint."""
        job = DedupJob.open(self._dir(job_id))
        if job.progress().stage == "done":
            raise Conflict(f"dedup job {job_id} has finished", reason="JOB_DONE")
        self._submit(job_id, resume=True)

    def progress(self, job_id: str) -> Progress:
        return DedupJob.open(self._dir(job_id)).progress()

    def cancel(self, job_id: str) -> None:
        DedupJob.open(self._dir(job_id)).cancel()

    def result(self, job_id: str) -> JobResult:
        d = self._dir(job_id)
        if DedupJob.open(d).progress().stage != "done":
            raise Conflict(f"dedup job {job_id} has not finished", reason="JOB_NOT_DONE")
        files = {name: d / name for name in OUTPUTS if (d / name).is_file()}
        return JobResult(job_id, json.loads((d / "summary.json").read_text()), files)

    def list(self) -> list[Progress]:
        return [
            DedupJob.open(d).progress() for d in sorted(self.root.iterdir()) if (d / "job.json").is_file()
        ]

    def is_active(self, job_id: str) -> bool:
        """Whether a run of the job is queued or running in this runner (its ``job.json`` state may
        still show how the previous run ended until the worker picks it up)."""
        with self._lock:
            fut = self._futures.get(job_id)
        return fut is not None and not fut.done()

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Block until the job's current run ends (tests, CLI)."""
        with self._lock:
            fut = self._futures.get(job_id)
        if fut is not None:
            fut.result(timeout=timeout)

    def close(self, *, cancel_running: bool = True) -> None:
        """Stop: running jobs are asked to cancel at their next block (resumable), then joined."""
        if cancel_running:
            with self._lock:
                live = [j for j, f in self._futures.items() if not f.done()]
            for j in live:
                self.cancel(j)
        self._pool.shutdown(wait=True)
