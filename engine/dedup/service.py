"""The server's de-duplication jobs over its open gallery: start, resume, push clusters to the queue.

A ``JobRunner`` in ``<data_dir>/jobs/dedup`` (the gallery's ``DataDir``), started on the first job (a
server that never runs a job never creates the folder). ``close`` (graceful shutdown) asks running
jobs to stop at their next block; they are left checkpointed and resume after a restart. Pushing a
job's clusters into the adjudication queue happens after the job ends, through the open gallery so
the indexes follow at once; the request is ``push.json`` in the job folder and the outcome
``pushed.json`` (so it is done once, also across restarts).

Used by the gRPC servicer (``server/dedup.py`` translates) and the web console; it knows no protocol.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from engine.dedup.jobs import DedupJob
from engine.dedup.runner import JobRunner
from engine.dedup.sources import JobSpec
from engine.errors import Conflict, InvalidInput, NasnameError, Unavailable
from engine.fusion import FusionSource
from engine.gallery import Gallery
from engine.models.manifest import write_atomic

__all__ = ["DEFAULT_TARGET_FPIR", "DedupService", "make_spec"]

log = logging.getLogger(__name__)

DEFAULT_TARGET_FPIR = 0.003  # a job given neither a target FPIR nor an FMR


class DedupService:
    """Jobs over the server's open ``gallery`` (its data directory gives the store, key and job folder;
    queue pushes and HTML thumbnails go through it); ``fusion`` the engine's calibrations (its
    ``fusion_for_models``, or a ``Fusion``; None: the default ones of the gallery's models). No
    gallery (a test fake engine): no dedup."""

    def __init__(self, gallery: Gallery | None, fusion: FusionSource | None = None) -> None:
        self.data_dir = None if gallery is None else gallery.datadir.root
        self.gallery = gallery
        self.fusion = fusion
        self._runner: JobRunner | None = None
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._closed = False

    @property
    def runner(self) -> JobRunner:
        with self._lock:
            if self._closed or self.gallery is None:
                raise Unavailable("de-duplication is not available on this server",
                                  reason="DEDUP_UNAVAILABLE")
            if self._runner is None:
                datadir = self.gallery.datadir
                self._runner = JobRunner(datadir.jobs_dir("dedup"), source=datadir, fusion=self.fusion)
            return self._runner

    def start(self, spec: JobSpec, *, push_actor: str | None) -> str:
        job_id = self.runner.start(spec)
        if push_actor is not None:
            write_atomic(self.runner.root / job_id / "push.json", json.dumps({"actor": push_actor}).encode())
            self._push_when_done(job_id)
        return job_id

    def resume(self, job_id: str) -> None:
        self.runner.resume(job_id)
        if (self.runner.root / job_id / "push.json").is_file():
            self._push_when_done(job_id)

    def _push_when_done(self, job_id: str) -> None:
        def wait_and_push() -> None:
            try:
                self.runner.wait(job_id)
                self.push(job_id)
            except Exception:  # push() records its own failures; this is the runner going away
                log.exception("dedup job %s: waiting to push its clusters failed", job_id)

        threading.Thread(target=wait_and_push, name="nasname-dedup-push", daemon=True).start()

    def push(self, job_id: str) -> None:
        """Queue a finished job's clusters once, if its start asked for it (no-op while unfinished or
        when already pushed). A failure is recorded in ``pushed.json`` (reason) and logged."""
        from engine.dedup.queue import push_clusters

        d = self.runner.root / job_id
        request, done = d / "push.json", d / "pushed.json"
        with self._push_lock:
            if self.gallery is None or not request.is_file() or done.is_file():
                return
            job = DedupJob.open(d, source=self.gallery.datadir)
            if job.progress().stage != "done":
                return
            actor = str(json.loads(request.read_text())["actor"])
            outcome: dict[str, Any]
            try:
                result = push_clusters(job, actor=actor, gallery=self.gallery)
                outcome = {"queued": result.queued, "skipped": result.skipped}
            except NasnameError as exc:
                log.warning("dedup job %s: queue push failed: %s", job_id, exc.reason)
                outcome = {"queued": [], "skipped": {}, "error": exc.reason}
            write_atomic(done, json.dumps(outcome).encode())

    def push_now(self, job_id: str, *, actor: str) -> int:
        """Queue a finished job's clusters now (the console's button, for jobs started without
        ``push``); returns the number of records queued (the earlier count when already pushed)."""
        if self.runner.progress(job_id).stage != "done":  # also checks the id
            raise Conflict(f"dedup job {job_id} has not finished", reason="JOB_NOT_DONE")
        request = self.runner.root / job_id / "push.json"
        if not request.is_file():
            write_atomic(request, json.dumps({"actor": actor}).encode())
        self.push(job_id)
        return self.queued(job_id)

    def queued(self, job_id: str) -> int:
        done = self.runner.root / job_id / "pushed.json"
        return len(json.loads(done.read_text())["queued"]) if done.is_file() else -1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()


def make_spec(data_dir: Path, *, partition: str | None, target_fpir: float | None, fmr: float | None,
              mode: str) -> JobSpec:
    """An N:N job over ``data_dir`` (StartDedup and the console's form): ``target_fpir`` or ``fmr``
    (neither: the default target FPIR of 0.003), each in (0, 1)."""
    for name, value in (("target_fpir", target_fpir), ("fmr", fmr)):
        if value is not None and not 0.0 < value < 1.0:
            raise InvalidInput(f"{name} must be in (0, 1)", reason="INVALID_THRESHOLD")
    default = DEFAULT_TARGET_FPIR if target_fpir is None else target_fpir
    return JobSpec(data_dir=str(data_dir), partition=partition,
                   target_fpir=None if fmr is not None else default, fmr=fmr, mode=mode)
