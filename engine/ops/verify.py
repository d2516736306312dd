"""Backup verification as a job of the one job framework (``engine.jobs``): ``nasname backup verify``
shows progress with an ETA and can be cancelled; the verdict stays in the job folder.

A verification streams the whole archive (every chunk authenticated, every member's sha256 checked
against the manifest, nothing written). A stream has no state worth keeping, so a verification that
was killed or cancelled starts again from the archive's first byte when resumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import NasnameError
from engine.jobs import JobCancelled, JobFiles, Progress, eta_s
from engine.ops.restore import KeySource, verify_archive

__all__ = ["VerifyJob"]

_EVERY_S = 1.0


class VerifyJob:
    """Verify ``archive`` with ``key``; the job folder is ``job_dir`` (created by :meth:`create`)."""

    def __init__(self, job_dir: Path, key: KeySource) -> None:
        self.files = JobFiles(job_dir)
        self.meta = self.files.meta()
        self.archive = Path(self.meta["archive"])
        self._key = key

    @classmethod
    def create(cls, job_dir: Path, archive: Path, key: KeySource) -> VerifyJob:
        archive = Path(archive).resolve()
        JobFiles.create(job_dir, "backup-verify", first_stage="verify", archive=str(archive),
                        bytes=archive.stat().st_size)
        return cls(job_dir, key)

    def cancel(self) -> None:
        self.files.cancel()

    def progress(self) -> Progress:
        meta, cp = self.files.meta(), self.files.checkpoint()
        done, total = int(cp.get("done", 0)), int(meta.get("bytes", 0))
        elapsed = float(cp.get("elapsed_s", 0.0))
        eta = 0.0 if cp.get("stage") == "done" else eta_s(done, total, elapsed)
        return Progress(str(meta["id"]), str(meta["state"]), str(cp.get("stage", "verify")), done, total,
                        int(cp.get("members", 0)), elapsed, eta, str(meta.get("error", "")))

    def resume(self, on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        self.files.clear_cancel()
        return self.run(on_progress)

    def run(self, on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        """Verify from the start; returns the manifest. ``JobCancelled`` when cancelled; the archive's
        own error (naming the member) when it is damaged."""
        self.files.set_state("running")
        started = time.monotonic()
        last = [0.0]

        def watch(position: int) -> None:
            now = time.monotonic()
            if now - last[0] < _EVERY_S:
                return
            last[0] = now
            if self.files.cancel_requested():
                raise JobCancelled(f"verification of {self.archive.name} cancelled; resume starts it again")
            self.files.save_checkpoint({"stage": "verify", "done": position, "elapsed_s": now - started})
            if on_progress is not None:
                on_progress(self.progress())

        try:
            manifest = verify_archive(self.archive, self._key, watch=watch)
        except JobCancelled:
            self.files.set_state("cancelled")
            raise
        except NasnameError as exc:
            self.files.set_state("failed", error=f"{exc.reason}: {exc}")
            raise
        self.files.save_checkpoint({"stage": "done", "done": int(self.meta["bytes"]),
                                    "elapsed_s": time.monotonic() - started,
                                    "members": len(manifest.get("members", {}))})
        self.files.set_state("done", change_seq=manifest["change_seq"], created=manifest["created"])
        if on_progress is not None:
            on_progress(self.progress())
        return manifest

