"""The de-duplication RPCs: the mixin the servicer inherits. It only translates: the jobs, their
runner and the pushes to the adjudication queue belong to ``engine.dedup.service.DedupService`` (the
web console uses the same one).

Clients never pass file paths: a job is always N:N over this server's gallery (or one partition).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from engine.dedup.service import DedupService, make_spec
from engine.dedup.sources import JobSpec
from engine.errors import Conflict, InvalidInput
from engine.jobs import Progress
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.auth import may_see_images
from server.interceptor import current_call

__all__ = ["DedupMixin"]

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
CHUNK_BYTES = 64 * 1024
ACTIVE_STATES = ("created", "queued", "running")
DEFAULT_CLUSTER_PAGE = 100
MODES = {pb.DEDUP_MODE_UNSPECIFIED: "exact", pb.DEDUP_MODE_EXACT: "exact", pb.DEDUP_MODE_FAST: "fast"}
FORMATS = {  # format -> (file in the job folder, content type); HTML is rendered per caller
    pb.REPORT_FORMAT_UNSPECIFIED: ("report.json", "application/json"),
    pb.REPORT_FORMAT_JSON: ("report.json", "application/json"),
    pb.REPORT_FORMAT_CSV: ("clusters.csv", "text/csv"),
    pb.REPORT_FORMAT_PAIRS_CSV: ("pairs.csv", "text/csv"),
    pb.REPORT_FORMAT_HTML: ("report.html", "text/html; charset=utf-8"),
}


def spec_from_pb(request: pb.StartDedupRequest, data_dir: Path) -> JobSpec:
    if request.mode not in MODES:
        raise InvalidInput("unknown dedup mode", reason="INVALID_REQUEST")
    which = request.WhichOneof("threshold")
    return make_spec(data_dir, partition=request.partition or None,
                     target_fpir=request.target_fpir if which == "target_fpir" else None,
                     fmr=request.fmr if which == "fmr" else None, mode=MODES[request.mode])


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
