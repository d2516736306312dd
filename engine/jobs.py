"""The one resumable-job framework: a job folder, its state, checkpoints, cancel, progress with ETA, and a
runner that drives jobs in the background of a long-lived process.

A job folder (under ``DataDir.jobs_dir(kind)``, or anywhere a command line puts it) holds::

    job.json          {"id", "kind", "state", "created", "updated", "error"?, ...job's own fields}
    checkpoint.json   {"stage", ...}: what a resumed run continues from (the job decides its content)
    cancel            present = a cancel was asked for (from any thread or process)

Both JSON files are replaced atomically (``engine.fsutil``), so a job killed at any instant (SIGKILL,
power cut) leaves the last checkpoint whole; a job finds its own side files (a candidate file, a
work database) consistent with that checkpoint by recording their length / position in it. States:
``created -> running -> done | failed | cancelled``; a job found ``running`` by a new process
belonged to one that died and is marked ``interrupted`` (:func:`mark_interrupted`); each of the
last three resumes from its checkpoint. Progress is read from the files, so any thread or process
can show it; the ETA is the elapsed time of the measured stage scaled by the work left.

Used by: de-duplication (``engine.dedup.jobs``), the face-model switch (``engine.models.face_switch``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.errors import Conflict, InvalidInput, NasnameError, NotFound
from engine.fsutil import private_dir, write_atomic

__all__ = ["JobCancelled", "JobFiles", "JobRunner", "Progress", "RunnableJob", "eta_s", "mark_interrupted",
           "new_job_id"]

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
CHECKPOINT_FILE = "checkpoint.json"
CANCEL_FILE = "cancel"
ACTIVE = ("created", "running")
_ID = re.compile(r"[0-9a-f]{12}")


class JobCancelled(Conflict):
    """The job stopped at a checkpoint because it was asked to (resumable)."""

    default_reason = "JOB_CANCELLED"


@dataclass(frozen=True)
class Progress:
    """A snapshot for a progress bar or a streaming RPC. ``done``/``total`` are the job's work units
    (dedup: template comparisons; face switch: records); ``found`` what the job found so far (dedup:
    candidate pairs; face switch: dropped templates); ``eta_s`` None until a rate is known."""

    job_id: str
    state: str  # created | running | interrupted | cancelled | failed | done
    stage: str
    done: int
    total: int
    found: int
    elapsed_s: float
    eta_s: float | None
    message: str = ""

    @property
    def candidates(self) -> int:
        """Dedup's name for ``found``."""
        return self.found

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidates"] = self.found
        return out


def eta_s(done: int, total: int, elapsed_s: float) -> float | None:
    """Seconds left at the rate measured so far (None before any unit is done)."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, elapsed_s / done * (total - done))


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


class JobFiles:
    """The files of one job folder (see module doc). Thread-safe for one writer (the running job) and
    any number of readers."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    @classmethod
    def create(cls, directory: Path, kind: str, *, job_id: str | None = None, first_stage: str = "prepare",
               **fields: Any) -> JobFiles:
        """A new job folder (created 0700; must not hold a job yet: ``Conflict`` JOB_EXISTS)."""
        directory = private_dir(Path(directory))
        if (directory / JOB_FILE).exists():
            raise Conflict(f"{directory} already holds a job; resume it or choose another folder",
                           reason="JOB_EXISTS")
        files = cls(directory)
        now = time.time()
        files._write(JOB_FILE, {"id": job_id or new_job_id(), "kind": kind, "state": "created",
                                "created": now, "updated": now, **fields})
        files.save_checkpoint({"stage": first_stage})
        return files

    @property
    def exists(self) -> bool:
        return (self.dir / JOB_FILE).is_file()

    def meta(self) -> dict[str, Any]:
        """``job.json``; ``NotFound`` (JOB_NOT_FOUND) when the folder holds no job."""
        doc = self._read(JOB_FILE)
        if doc is None:
            raise NotFound(f"no job in {self.dir}", reason="JOB_NOT_FOUND")
        return doc

    def set_state(self, state: str, **extra: Any) -> dict[str, Any]:
        meta = {**self.meta(), **extra, "state": state}
        if state not in ("failed", "cancelled"):
            meta.pop("error", None)
        self._write(JOB_FILE, meta)
        return meta

    def checkpoint(self) -> dict[str, Any]:
        return self._read(CHECKPOINT_FILE) or {}

    def save_checkpoint(self, cp: dict[str, Any]) -> None:
        self._write(CHECKPOINT_FILE, cp)

    def cancel(self) -> None:
        """Ask the running job (any process) to stop at its next checkpoint."""
        write_atomic(self.dir / CANCEL_FILE, str(time.time()).encode())

    def cancel_requested(self) -> bool:
        return (self.dir / CANCEL_FILE).exists()

    def clear_cancel(self) -> None:
        (self.dir / CANCEL_FILE).unlink(missing_ok=True)

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads((self.dir / name).read_text())
        except FileNotFoundError:
            return None
        return doc

    def _write(self, name: str, doc: dict[str, Any]) -> None:
        doc["updated"] = time.time()
        write_atomic(self.dir / name, json.dumps(doc, indent=1).encode())


def mark_interrupted(root: Path) -> list[str]:
    """Mark the jobs under ``root`` left ``created``/``running`` by a process that died as
    ``interrupted`` (call when a runner starts, before it runs anything). Returns their ids."""
    found: list[str] = []
    if not root.is_dir():
        return found
    for d in sorted(root.iterdir()):
        files = JobFiles(d)
        if files.exists and files.meta().get("state") in ACTIVE:
            found.append(str(files.set_state("interrupted")["id"]))
    return found


class RunnableJob(Protocol):
    """What :class:`JobRunner` drives: a job that runs (or resumes) to its end and reports progress."""

    def run(self, on_progress: Callable[[Progress], None] | None = None) -> Any: ...
    def resume(self, on_progress: Callable[[Progress], None] | None = None) -> Any: ...
    def progress(self) -> Progress: ...


class JobRunner:
    """Runs jobs in ``root/<job_id>/`` in the background (what an RPC layer drives). ``open_job``
    makes the job object of a folder (with whatever it needs from the engine). Jobs run
    ``max_running`` at a time; state is on disk, so progress can be read from any thread or process.
    Jobs a dead process left running are marked ``interrupted`` when the runner starts."""

    def __init__(self, root: Path, open_job: Callable[[Path], RunnableJob], *, kind: str,
                 max_running: int = 1) -> None:
        self.root = private_dir(Path(root))
        self.kind = kind
        self._open_job = open_job
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix=f"nasname-{kind}")
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        for job_id in mark_interrupted(self.root):
            log.info("%s job %s was interrupted (its process ended); resume it to continue", kind, job_id)

    def dir_of(self, job_id: str) -> Path:
        """The folder of an existing job; ``InvalidInput`` for a malformed id, ``NotFound`` if none."""
        if not _ID.fullmatch(job_id):  # full match: a trailing newline is no id
            raise InvalidInput("malformed job id", reason="INVALID_REQUEST")
        d = self.root / job_id
        if not JobFiles(d).exists:
            raise NotFound(f"no {self.kind} job {job_id}", reason="JOB_NOT_FOUND")
        return d

    def submit(self, job_id: str, *, resume: bool = False) -> None:
        """Queue a run of the job in ``root/job_id`` (``Conflict`` JOB_RUNNING when one is queued)."""
        job = self._open_job(self.root / job_id)
        kind = self.kind

        def work() -> None:
            try:
                job.resume() if resume else job.run()
            except JobCancelled:
                log.info("%s job %s cancelled", kind, job_id)
            except NasnameError as exc:
                log.warning("%s job %s failed: %s", kind, job_id, exc.reason)
            except Exception:
                log.exception("%s job %s failed", kind, job_id)

        with self._lock:
            running = self._futures.get(job_id)
            if running is not None and not running.done():
                raise Conflict(f"{kind} job {job_id} is already running", reason="JOB_RUNNING")
            self._futures[job_id] = self._pool.submit(work)

    def resume(self, job_id: str) -> None:
        """Queue an interrupted, failed or cancelled job again; it continues from its checkpoint."""
        if self.progress(job_id).stage == "done":
            raise Conflict(f"{self.kind} job {job_id} has finished", reason="JOB_DONE")
        self.submit(job_id, resume=True)

    def progress(self, job_id: str) -> Progress:
        return self._open_job(self.dir_of(job_id)).progress()

    def cancel(self, job_id: str) -> None:
        JobFiles(self.dir_of(job_id)).cancel()

    def list(self) -> list[Progress]:
        return [self._open_job(d).progress() for d in sorted(self.root.iterdir()) if JobFiles(d).exists]

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
        """Stop: running jobs are asked to cancel at their next checkpoint (resumable), then joined."""
        if cancel_running:
            with self._lock:
                live = [j for j, f in self._futures.items() if not f.done()]
            for j in live:
                self.cancel(j)
        self._pool.shutdown(wait=True)
