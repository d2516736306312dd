"""A de-duplication job: an id, a directory, stages, checkpoints, progress, cancel, results.

    job = DedupJob.create(JobSpec(data_dir="/var/lib/nasname"), out_dir)   # -> job.job_id
    job.run(on_progress=print)        # blocks; resumable; raises JobCancelled when cancelled
    DedupJob.open(out_dir).progress() # snapshot from any process (what a Status RPC returns)
    DedupJob.open(out_dir).cancel()   # asks the running job to stop at the next block

Stages: ``prepare`` (read records once, freeze labels / sealed batch, thresholds, block plan) ->
``pairs`` (per modality, blocks of probe rows; candidates appended to ``candidates.bin``) -> ``fuse``
(exact scores in every shared modality, fusion, clusters, reports) -> ``done``.

The job folder, states, cancel and progress follow ``engine.jobs`` (the one job framework).
Durability: after a block's candidates are appended, the file is fsynced and ``checkpoint.json`` is
replaced atomically (at most every ``checkpoint_every_s``) with the number of blocks done and the
candidate file's length; a killed job resumes from the last checkpoint, truncating the candidate file
to the recorded length, so it never restarts and never double-counts. Memory: one block's score tile
plus the templates (see ``engine.dedup.data``); candidates are streamed to disk.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.dedup.data import RecordSet
from engine.dedup.fuse import MODALITIES, Thresholds, make_thresholds
from engine.dedup.manifest import ExtractorFor
from engine.dedup.pairs import FaceExact, IrisExact, PairKernel, make_kernel, recall_sample
from engine.dedup.sources import JobSpec, Opened, freeze_sources, open_sources
from engine.errors import InvalidInput, NasnameError, NotFound
from engine.events import job_event
from engine.fsutil import write_atomic
from engine.fusion import Fusion, FusionSource
from engine.jobs import JobCancelled, JobFiles, Progress, eta_s

if TYPE_CHECKING:
    from engine.datadir import DataDir

__all__ = ["CANDIDATE_DTYPE", "DedupJob", "JobCancelled", "Progress"]

log = logging.getLogger(__name__)

CANDIDATE_DTYPE = np.dtype([("u", "<i8"), ("v", "<i8"), ("m", "<i4"), ("s", "<f4")])
STAGES = ("prepare", "pairs", "fuse", "done")


Hook = Callable[[str, int], None]
"""Called before each block as ``hook(modality, block_index)`` (tests raise from it to simulate a crash)."""


class DedupJob:
    """One job in its directory (see module doc). Fakes go through the constructor: ``hook``,
    ``extractor_for`` (manifest images), ``fusion`` (calibrations: a ``Fusion``, or a function giving
    it for the job's models, e.g. the engine's ``fusion_for_models``; None: the shipped defaults)."""

    def __init__(
        self,
        job_dir: Path,
        *,
        source: DataDir | None = None,
        other: DataDir | None = None,
        hook: Hook | None = None,
        extractor_for: ExtractorFor | None = None,
        fusion: FusionSource | None = None,
        checkpoint_every_s: float = 5.0,
        blocks: Any = None,
    ) -> None:
        self.dir = Path(job_dir)
        self.files = JobFiles(self.dir)
        if not self.files.exists:
            raise NotFound(f"no dedup job in {self.dir}", reason="JOB_NOT_FOUND")
        self.meta: dict[str, Any] = self.files.meta()
        self.job_id: str = self.meta["id"]
        self.spec = JobSpec(**self.meta["spec"])
        self._source = source
        self._other = other
        self._hook = hook
        self._extractor_for = extractor_for
        self._fusion = fusion
        self._every = checkpoint_every_s
        # where pair blocks are computed: None = here; engine.dedup.distributed.RayBlocks = Ray tasks
        self._blocks = blocks

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(cls, spec: JobSpec, job_dir: Path, *, job_id: str | None = None, **kwargs: Any) -> DedupJob:
        """A new job in ``job_dir`` (created; must not already hold a job); ``job_id`` default random."""
        JobFiles.create(job_dir, "dedup", job_id=job_id, spec=spec.to_json())
        return cls(job_dir, **kwargs)

    @classmethod
    def open(cls, job_dir: Path, **kwargs: Any) -> DedupJob:
        return cls(job_dir, **kwargs)

    def _set_state(self, state: str, **extra: Any) -> None:
        self.meta = self.files.set_state(state, **extra)

    def _checkpoint(self) -> dict[str, Any]:
        return self.files.checkpoint()

    def _save_checkpoint(self, cp: dict[str, Any]) -> None:
        self.files.save_checkpoint(cp)

    def resume(self, on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        """Withdraw a cancel request and run on from the last checkpoint."""
        self.files.clear_cancel()
        return self.run(on_progress)

    def cancel(self) -> None:
        """Ask the running job (any process) to stop at the next block boundary; resumable later."""
        self.files.cancel()

    def progress(self) -> Progress:
        cp = self._checkpoint()
        plan = cp.get("plan", [])
        weights = [b[4] for b in plan]
        done = int(sum(weights[: cp.get("blocks_done", 0)]))
        total = int(sum(weights))
        elapsed = float(cp.get("pairs_elapsed_s", 0.0))
        eta = eta_s(done, total, elapsed) if cp.get("stage") == "pairs" else None
        if cp.get("stage") == "done":
            done, eta = total, 0.0
        return Progress(
            self.job_id,
            str(self.meta.get("state")),
            str(cp.get("stage")),
            done,
            total,
            int(cp.get("candidates_bytes", 0)) // CANDIDATE_DTYPE.itemsize,
            elapsed,
            eta,
            str(self.meta.get("error", "")),
        )

    # -- run -----------------------------------------------------------------------------------

    def run(self, on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        """Run (or continue) to the end; returns the summary. Raises ``JobCancelled`` when cancelled
        (also when the cancel came while the job was still queued: use :meth:`resume` to go on)."""
        self._set_state("running")
        with job_event(None if self.source is None else self.source.events, "dedup") as ev:
            summary = self._run(on_progress)
            ev.partition = self.spec.partition or ""
            ev.count = int(summary.get("records_in_clusters", 0))  # suspected duplicates found
            return summary

    def _run(self, on_progress: Callable[[Progress], None] | None) -> dict[str, Any]:
        try:
            cp = self._checkpoint()
            if cp["stage"] == "prepare":
                cp, opened = self._prepare()
            else:
                opened = open_sources(self.spec, self.dir, self.source, self._other)
            if cp["stage"] == "pairs":
                cp = self._pairs(opened.records, cp, on_progress)
            if cp["stage"] == "fuse":
                from engine.dedup.finish import finish

                finish(self, opened, cp, self._fusion_for(opened.records))
                cp = {**cp, "stage": "done"}
                self._save_checkpoint(cp)
        except JobCancelled:
            self._set_state("cancelled")
            raise
        except NasnameError as exc:
            self._set_state("failed", error=str(exc))
            raise
        except BaseException as exc:
            self._set_state("failed", error=type(exc).__name__)
            raise
        summary = json.loads((self.dir / "summary.json").read_text())
        self._set_state("done")
        if on_progress is not None:
            on_progress(self.progress())
        return dict(summary)

    @property
    def source(self) -> DataDir:
        """The open data directory the job reads (given by whoever runs it: the engine's, or one the
        command line opened)."""
        if self._source is None:
            raise InvalidInput("this job was opened without its gallery; pass source=", reason="NO_GALLERY")
        return self._source

    def _fusion_for(self, records: RecordSet) -> Fusion:
        if not isinstance(self._fusion, Fusion):
            models = records.models
            self._fusion = Fusion.for_models(models) if self._fusion is None else self._fusion(models)
        return self._fusion

    def _prepare(self) -> tuple[dict[str, Any], Opened]:
        """Freeze the sources, fix thresholds and the block plan; returns the checkpoint and the open
        record set (kept open for the pairs stage: the templates are read once)."""
        facts, opened = freeze_sources(self.spec, self.dir, self.source, self._other,
                                       extractor_for=self._extractor_for)
        records, k_a = opened.records, opened.n_primary
        if not records.modalities:
            raise InvalidInput("no record with a template to compare", reason="NO_BIOMETRIC_DATA")
        # gallery size of the searches: every record is compared with (about) every other one
        th = make_thresholds(
            self._fusion_for(records),
            list(records.modalities),
            records.n,
            target_fpir=self.spec.target_fpir,
            fmr=self.spec.fmr,
        )
        plan: list[list[Any]] = []
        for m, data in records.modalities.items():
            kern_rows = self.spec.block_rows or _block_rows(m.kind, self.spec.mode)
            primary = int(np.searchsorted(data.rows, k_a))  # positions of primary records
            total = len(data)
            for lo in range(0, primary, kern_rows):
                hi = min(primary, lo + kern_rows)
                weight = (hi - lo) * (total - lo) - (hi - lo) * (hi - lo + 1) // 2
                plan.append([m.value, lo, hi, primary, int(weight)])
        write_atomic(self.dir / "candidates.bin", b"")
        cp = {
            "stage": "pairs",
            "plan": plan,
            "blocks_done": 0,
            "candidates_bytes": 0,
            "thresholds": th.to_json(),
            "recall": {},
            "pairs_elapsed_s": 0.0,
            "facts": facts,
        }
        self._save_checkpoint(cp)
        return cp, opened

    def _pairs(
        self, records: RecordSet, cp: dict[str, Any], on_progress: Callable[[Progress], None] | None
    ) -> dict[str, Any]:
        th = Thresholds.from_json(cp["thresholds"])
        plan = cp["plan"]
        path = self.dir / "candidates.bin"
        kernels: dict[str, PairKernel] = {}
        exact_for_recall: dict[str, FaceExact | IrisExact] = {}
        stride = max(1, round(1.0 / self.spec.recall_sample)) if self.spec.recall_sample > 0 else 0
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, int(cp["candidates_bytes"]))  # drop what the last run wrote after its checkpoint
            os.lseek(fd, 0, os.SEEK_END)
            last = time.monotonic()
            started = time.monotonic() - float(cp["pairs_elapsed_s"])
            for b in range(int(cp["blocks_done"]), len(plan)):
                name, lo, hi, _, _ = plan[b]
                if self.files.cancel_requested():
                    self._flush(fd, cp, b, started)
                    raise JobCancelled(f"job {self.job_id} cancelled at block {b} of {len(plan)}")
                if self._hook is not None:
                    self._hook(name, b)
                modality = next(m for m in MODALITIES if m.value == name)
                data = records.modalities[modality]
                if name not in kernels:
                    kernels[name] = make_kernel(modality.kind, data, self.spec.mode)
                kern = kernels[name]
                if self._blocks is None:
                    found = kern.block(lo, hi, th.floor[modality])
                else:
                    found = self._blocks.block(b, lambda j: self._task(records, plan, th, j))
                if not kern.exact and stride:
                    if name not in exact_for_recall:
                        exact_for_recall[name] = make_kernel(modality.kind, data, "exact")  # type: ignore[assignment]
                    probes = np.arange(lo + (-lo) % stride, hi, stride, dtype=np.int64)
                    rs = recall_sample(exact_for_recall[name], found, probes, th.floor[modality])
                    e, f = cp["recall"].get(name, [0, 0])
                    cp["recall"][name] = [e + rs.exact_pairs, f + rs.found]
                i, j, s = found
                rec = np.empty(i.size, dtype=CANDIDATE_DTYPE)
                rec["u"], rec["v"] = data.rows[i], data.rows[j]
                rec["m"], rec["s"] = MODALITIES.index(modality), s
                os.write(fd, rec.tobytes())
                if time.monotonic() - last >= self._every or b == len(plan) - 1:
                    self._flush(fd, cp, b + 1, started)
                    last = time.monotonic()
                    if on_progress is not None:
                        on_progress(self.progress())
        finally:
            os.close(fd)
            if self._blocks is not None:
                self._blocks.close()  # blocks run ahead of a crash or cancel: resume recomputes them
        cp["stage"] = "fuse"
        self._save_checkpoint(cp)
        return cp

    def _task(self, records: RecordSet, plan: list[Any], th: Thresholds, j: int) -> Any:
        """Block ``j`` of the plan for a block executor (None past the end)."""
        from engine.dedup.distributed import BlockTask

        if j >= len(plan):
            return None
        name, lo, hi, _, _ = plan[j]
        modality = next(m for m in MODALITIES if m.value == name)
        return BlockTask(modality.kind, self.spec.mode, records.modalities[modality], int(lo), int(hi),
                         float(th.floor[modality]))

    def _flush(self, fd: int, cp: dict[str, Any], blocks_done: int, started: float) -> None:
        os.fsync(fd)
        cp["blocks_done"] = blocks_done
        cp["candidates_bytes"] = os.lseek(fd, 0, os.SEEK_END)
        cp["pairs_elapsed_s"] = time.monotonic() - started
        self._save_checkpoint(cp)

    def candidates(self) -> np.ndarray[Any, np.dtype[np.void]]:
        """The candidate records written up to the last checkpoint (memory-mapped)."""
        n = int(self._checkpoint().get("candidates_bytes", 0)) // CANDIDATE_DTYPE.itemsize
        if n == 0:
            return np.empty(0, dtype=CANDIDATE_DTYPE)
        return np.memmap(self.dir / "candidates.bin", dtype=CANDIDATE_DTYPE, mode="r", shape=(n,))


def _block_rows(kind: str, mode: str) -> int:
    from engine.dedup import pairs

    if kind == "face":
        return pairs.FACE_BLOCK_ROWS if mode == "exact" else 4096
    return pairs.IRIS_BLOCK_ROWS if mode == "exact" else 128
