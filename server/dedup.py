"""The de-duplication RPCs: a ``JobRunner`` owned by the server, and the mixin the servicer inherits.

The runner lives in ``<data_dir>/jobs/dedup`` (the gallery's ``DataDir``) and starts on the first
dedup call (a server that never runs a job never creates the folder). ``close`` (graceful shutdown)
asks running jobs to stop at their next block; they are left checkpointed and resume after a restart
(``ResumeDedup``). Pushing clusters into the adjudication queue happens after the job ends, through
the server's own gallery so the indexes follow at once; the outcome is kept in ``pushed.json`` in the
job folder (so it is done once).

Clients never pass file paths: a job is always N:N over this server's gallery (or one partition).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from engine.dedup.jobs import DedupJob
from engine.dedup.runner import JobRunner
from engine.dedup.sources import JobSpec
from engine.errors import Conflict, InvalidInput, NasnameError, Unavailable
from engine.fusion import Fusion
from engine.gallery import Gallery
from engine.jobs import Progress
from engine.models.manifest import write_atomic
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.auth import may_see_images
from server.interceptor import current_call

__all__ = ["DedupMixin", "DedupService"]

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
CHUNK_BYTES = 64 * 1024
ACTIVE_STATES = ("created", "queued", "running")
DEFAULT_CLUSTER_PAGE = 100
DEFAULT_TARGET_FPIR = 0.003  # a job given neither a target FPIR nor an FMR
MODES = {pb.DEDUP_MODE_UNSPECIFIED: "exact", pb.DEDUP_MODE_EXACT: "exact", pb.DEDUP_MODE_FAST: "fast"}
FORMATS = {  # format -> (file in the job folder, content type); HTML is rendered per caller
    pb.REPORT_FORMAT_UNSPECIFIED: ("report.json", "application/json"),
    pb.REPORT_FORMAT_JSON: ("report.json", "application/json"),
    pb.REPORT_FORMAT_CSV: ("clusters.csv", "text/csv"),
    pb.REPORT_FORMAT_PAIRS_CSV: ("pairs.csv", "text/csv"),
    pb.REPORT_FORMAT_HTML: ("report.html", "text/html; charset=utf-8"),
}


class DedupService:
    """Jobs over the server's open ``gallery`` (its data directory gives the store, key and job folder;
    queue pushes and HTML thumbnails go through it); ``fusion`` the engine's calibrations (None: the
    default ones of the gallery's models). No gallery (a test fake engine): no dedup."""

    def __init__(self, gallery: Gallery | None, fusion: Fusion | None = None) -> None:
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


def spec_from_pb(request: pb.StartDedupRequest, data_dir: Path) -> JobSpec:
    if request.mode not in MODES:
        raise InvalidInput("unknown dedup mode", reason="INVALID_REQUEST")
    which = request.WhichOneof("threshold")
    return make_spec(data_dir, partition=request.partition or None,
                     target_fpir=request.target_fpir if which == "target_fpir" else None,
                     fmr=request.fmr if which == "fmr" else None, mode=MODES[request.mode])


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


def progress_to_pb(p: Progress, queued: int) -> pb.DedupProgress:
    return pb.DedupProgress(job_id=p.job_id, state=p.state, stage=p.stage, done=p.done, total=p.total,
                            candidates=p.candidates, elapsed_s=p.elapsed_s,
                            eta_s=-1.0 if p.eta_s is None else p.eta_s, message=p.message, queued=queued)


def _link(p: dict[str, Any]) -> pb.DedupLink:
    def clean(d: dict[str, Any]) -> dict[str, float]:
        return {k: float(v) for k, v in d.items() if v is not None}

    return pb.DedupLink(reference_id_a=p["a"], reference_id_b=p["b"], fused=p["fused"] or 0.0,
                        threshold=p["threshold"] or 0.0, scores=clean(p["scores"]), llrs=clean(p["llrs"]))


def cluster_to_pb(c: dict[str, Any], pairs: list[dict[str, Any]]) -> pb.DedupCluster:
    return pb.DedupCluster(
        cluster=c["cluster"], risk=c["risk"], chained=c["chained"], missing_pairs=c["missing_pairs"],
        members=[pb.DedupMember(reference_id=m["ref_id"], partition=m["partition"]) for m in c["members"]],
        pairs=[_link(pairs[k]) for k in c["pairs"]], weakest_link=_link(pairs[c["weakest_link"]]))


class DedupMixin:
    """The dedup RPCs of ``NasnameServicer`` (needs ``self.dedup``; errors via ``_translating``)."""

    dedup: DedupService

    def StartDedup(self, request: pb.StartDedupRequest,
                   context: grpc.ServicerContext) -> pb.StartDedupResponse:
        from server.servicer import _translating

        call = current_call()
        with _translating(context, call.request_id):
            service = self.dedup
            spec = spec_from_pb(request, service.runner.source.root)
            job_id = service.start(spec, push_actor=call.actor if request.push_to_queue else None)
        return pb.StartDedupResponse(request_id=call.request_id, job_id=job_id)

    def _status(self, job_id: str) -> pb.DedupProgress:
        runner = self.dedup.runner
        p = runner.progress(job_id)
        if p.stage == "done":
            self.dedup.push(job_id)  # normally already done by the push thread; this covers a restart
        out = progress_to_pb(p, self.dedup.queued(job_id))
        if p.state not in ACTIVE_STATES and runner.is_active(job_id):
            out.state = "queued"  # resumed, not picked up by the worker yet
        return out

    def GetDedup(self, request: pb.DedupJobRequest, context: grpc.ServicerContext) -> pb.DedupStatusResponse:
        from server.servicer import _translating

        call = current_call()
        with _translating(context, call.request_id):
            status = self._status(request.job_id)
        return pb.DedupStatusResponse(request_id=call.request_id, progress=status)

    def CancelDedup(self, request: pb.DedupJobRequest,
                    context: grpc.ServicerContext) -> pb.DedupStatusResponse:
        from server.servicer import _translating

        call = current_call()
        with _translating(context, call.request_id):
            runner = self.dedup.runner
            p = runner.progress(request.job_id)
            if p.stage == "done":
                raise Conflict(f"dedup job {request.job_id} has finished", reason="JOB_DONE")
            if p.state == "cancelled" and not runner.is_active(request.job_id):
                raise Conflict(f"dedup job {request.job_id} is already cancelled", reason="JOB_CANCELLED")
            runner.cancel(request.job_id)
            status = self._status(request.job_id)
        return pb.DedupStatusResponse(request_id=call.request_id, progress=status)

    def ResumeDedup(self, request: pb.DedupJobRequest,
                    context: grpc.ServicerContext) -> pb.DedupStatusResponse:
        from server.servicer import _translating

        call = current_call()
        with _translating(context, call.request_id):
            self.dedup.resume(request.job_id)
            status = self._status(request.job_id)
        return pb.DedupStatusResponse(request_id=call.request_id, progress=status)

    def WatchDedup(self, request: pb.DedupJobRequest,
                   context: grpc.ServicerContext) -> Iterator[pb.DedupProgress]:
        """Snapshots ~1 s apart while the job is queued or running; the last one shows how it ended
        (done, cancelled, failed). Ends early when the client goes away."""
        from server.servicer import _translating

        call = current_call()
        while True:
            with _translating(context, call.request_id):
                status = self._status(request.job_id)
            yield status
            if status.state not in ACTIVE_STATES or not context.is_active():
                return
            time.sleep(WATCH_INTERVAL_S)

    def GetDedupResult(self, request: pb.GetDedupResultRequest,
                       context: grpc.ServicerContext) -> pb.GetDedupResultResponse:
        from server.servicer import _translating

        call = current_call()
        with _translating(context, call.request_id):
            result = self.dedup.runner.result(request.job_id)
            doc = json.loads(result.files["report.json"].read_text())
        limit = request.limit or DEFAULT_CLUSTER_PAGE
        page = doc["clusters"][request.offset:request.offset + limit]
        return pb.GetDedupResultResponse(
            request_id=call.request_id, job_id=request.job_id, summary_json=json.dumps(result.summary),
            total_clusters=len(doc["clusters"]), clusters=[cluster_to_pb(c, doc["pairs"]) for c in page])

    def FetchDedupReport(self, request: pb.FetchDedupReportRequest,
                         context: grpc.ServicerContext) -> Iterator[pb.ReportChunk]:
        from server.servicer import _translating

        call = current_call()
        with _translating(context, call.request_id):
            if request.format not in FORMATS:
                raise InvalidInput("unknown report format", reason="INVALID_REQUEST")
            name, content_type = FORMATS[request.format]
            result = self.dedup.runner.result(request.job_id)
            if name == "report.html":
                data = self._html(result.files["report.json"], call.principal)
            else:
                data = result.files[name].read_bytes()
        for i in range(0, max(len(data), 1), CHUNK_BYTES):
            yield pb.ReportChunk(data=data[i:i + CHUNK_BYTES], content_type=content_type if i == 0 else "")

    def _html(self, report_json: Path, principal: Any) -> bytes:
        """Rendered for this caller: thumbnails only when images are kept and the role may see them."""
        from engine.dedup.html import render, thumbnail_from_store

        gallery = self.dedup.gallery
        role = principal.role if principal is not None else None
        thumbs = (thumbnail_from_store(gallery.store)
                  if gallery is not None and gallery.config.keep_images and may_see_images(role) else None)
        return render(json.loads(report_json.read_text()), thumbs).encode()
