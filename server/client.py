"""A small Python client for stations and scripts.

    with Client("127.0.0.1:50051", token=secret, ca=Path("server.crt")) as c:
        r = c.enroll([image_sample("face", jpeg), image_sample("iris_left", png)])
        print(r.outcome, [(x.reference_id, x.fused) for x in r.candidates])

Failures raise ``grpc.RpcError``; :func:`error_reason` / :func:`error_info` read the machine-readable
reason. Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED) are retried with exponential backoff and
jitter, each attempt with its own deadline. That is safe for reads, and for the writes the server makes
idempotent (enroll, insert, delete, adjudicate, create/revoke token): those always carry a request id
(generated here when the caller gives none) and every retry reuses it, so when the response to an
enroll was lost after the commit, the retry gets the first call's result and no second record is
written. De-duplication job control (start/cancel/resume) is not retried.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.types import Modality, Template
from server import convert as cv
from server._gen.nasname.v1 import nasname_pb2 as pb
from server._gen.nasname.v1 import nasname_pb2_grpc as pb_grpc

__all__ = ["RETRYABLE", "Client", "error_info", "error_reason", "image_sample", "new_request_id",
           "template_sample"]

T = TypeVar("T")
_DETAILS_KEY = "grpc-status-details-bin"
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def new_request_id() -> str:
    return uuid.uuid4().hex


def image_sample(modality: str | Modality, image: bytes) -> pb.Sample:
    return pb.Sample(modality=cv.MODALITY_TO_PB[Modality.parse(str(modality))], image=image)


def template_sample(modality: str | Modality, template: Template) -> pb.Sample:
    return pb.Sample(modality=cv.MODALITY_TO_PB[Modality.parse(str(modality))],
                     template=cv.template_to_pb(template))


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of a failed call (None when the server sent none, e.g. a gRPC core limit)."""
    trailers: Any = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == _DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


def error_reason(exc: grpc.RpcError) -> str:
    info = error_info(exc)
    return info.reason if info is not None else ""


def _read(value: bytes | Path | str | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


class Client:
    """One channel to a nasname server. ``token``: the bearer secret. TLS unless ``plaintext``;
    ``ca``: PEM (bytes or path) of the server's CA or self-signed certificate (None: system roots);
    ``client_cert``/``client_key`` for mutual TLS; ``server_name``: the name to expect in the server's
    certificate when it differs from the address's host. ``timeout``: default deadline of one attempt,
    seconds; ``retries``: further attempts after a transient failure (see the module doc)."""

    def __init__(self, address: str, *, token: str | None = None, plaintext: bool = False,
                 ca: bytes | Path | str | None = None, client_cert: bytes | Path | str | None = None,
                 client_key: bytes | Path | str | None = None, timeout: float = 30.0, retries: int = 3,
                 max_message_bytes: int = 64 * 1024 * 1024, server_name: str = "") -> None:
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", max_message_bytes),
                                          ("grpc.max_send_message_length", max_message_bytes)]
        if server_name and not plaintext:
            options.append(("grpc.ssl_target_name_override", server_name))
        if plaintext:
            self.channel = grpc.insecure_channel(address, options=options)
        else:
            creds = grpc.ssl_channel_credentials(_read(ca), _read(client_key), _read(client_cert))
            self.channel = grpc.secure_channel(address, creds, options=options)
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        self.timeout = timeout
        self.retries = retries
        self.stub = pb_grpc.NasnameStub(self.channel)  # type: ignore[no-untyped-call]
        self.admin = pb_grpc.AdminStub(self.channel)  # type: ignore[no-untyped-call]
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], request: Any, expect: type[T], *, idempotent: bool,
              timeout: float | None) -> T:
        """One RPC; ``idempotent`` ones are retried on a transient failure with the same request (for
        writes: the same request id, which the caller must have set, see :func:`_with_id`)."""
        budget = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            try:
                return cast(T, method(request, timeout=budget, metadata=self.metadata))
            except grpc.RpcError as exc:
                attempt += 1
                if not idempotent or attempt > self.retries or exc.code() not in RETRYABLE:
                    raise
                time.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))

    # -- matching --------------------------------------------------------------------------------

    @staticmethod
    def _with_id(request: T) -> T:
        """A write request with a request id (a new one when empty): retries must send the same id."""
        if not getattr(request, "request_id", ""):
            request.request_id = new_request_id()  # type: ignore[attr-defined]
        return request

    def enroll(self, samples: Sequence[pb.Sample], *, reference_id: str = "", partition: str = "",
               attributes: Mapping[str, str] | None = None, target_fpir: float | None = None,
               search_partition: str = "", request_id: str = "",
               timeout: float | None = None) -> pb.EnrollResponse:
        req = pb.EnrollRequest(request_id=request_id, reference_id=reference_id, samples=samples,
                               partition=partition, attributes=dict(attributes or {}),
                               search_partition=search_partition)
        if target_fpir is not None:
            req.target_fpir = target_fpir
        return self._call(self.stub.Enroll, self._with_id(req), pb.EnrollResponse, idempotent=True,
                          timeout=timeout)

    def insert(self, samples: Sequence[pb.Sample], *, reference_id: str = "", partition: str = "",
               attributes: Mapping[str, str] | None = None, request_id: str = "",
               timeout: float | None = None) -> pb.InsertResponse:
        req = pb.InsertRequest(request_id=request_id, reference_id=reference_id, samples=samples,
                               partition=partition, attributes=dict(attributes or {}))
        return self._call(self.stub.Insert, self._with_id(req), pb.InsertResponse, idempotent=True,
                          timeout=timeout)

    @staticmethod
    def identify_request(samples: Sequence[pb.Sample] = (), *, reference_id: str = "",
                         max_results: int = 0, target_fpir: float | None = None, partition: str = "",
                         reference_ids: Sequence[str] = (), request_id: str = "") -> pb.IdentifyRequest:
        req = pb.IdentifyRequest(request_id=request_id, samples=samples, reference_id=reference_id,
                                 max_results=max_results, partition=partition,
                                 reference_ids=list(reference_ids))
        if target_fpir is not None:
            req.target_fpir = target_fpir
        return req

    def identify(self, samples: Sequence[pb.Sample] = (), *, timeout: float | None = None,
                 **kwargs: Any) -> pb.IdentifyResponse:
        """By ``samples`` or ``reference_id=``; also ``max_results``, ``target_fpir``, ``partition``,
        ``reference_ids``, ``request_id`` (see :meth:`identify_request`)."""
        req = self.identify_request(samples, **kwargs)
        return self._call(self.stub.Identify, req, pb.IdentifyResponse, idempotent=True, timeout=timeout)

    def batch_identify(self, requests: Iterable[pb.IdentifyRequest], *,
                       timeout: float | None = None) -> Iterator[pb.BatchIdentifyResponse]:
        """Streams ``requests``; yields one response per request, in order."""
        yield from self.stub.BatchIdentify(iter(requests), timeout=timeout or self.timeout,
                                           metadata=self.metadata)

    def verify(self, reference_id: str, samples: Sequence[pb.Sample], *, target_fmr: float | None = None,
               request_id: str = "", timeout: float | None = None) -> pb.VerifyResponse:
        req = pb.VerifyRequest(request_id=request_id, reference_id=reference_id, samples=samples)
        if target_fmr is not None:
            req.target_fmr = target_fmr
        return self._call(self.stub.Verify, req, pb.VerifyResponse, idempotent=True, timeout=timeout)

    def delete(self, reference_id: str, *, request_id: str = "",
               timeout: float | None = None) -> pb.DeleteResponse:
        req = pb.DeleteRequest(request_id=request_id, reference_id=reference_id)
        return self._call(self.stub.Delete, self._with_id(req), pb.DeleteResponse, idempotent=True,
                          timeout=timeout)

    def get_record(self, reference_id: str, *, timeout: float | None = None) -> pb.GetRecordResponse:
        req = pb.GetRecordRequest(reference_id=reference_id)
        return self._call(self.stub.GetRecord, req, pb.GetRecordResponse, idempotent=True, timeout=timeout)

    def list_pending(self, *, limit: int = 0, offset: int = 0,
                     timeout: float | None = None) -> pb.ListPendingAdjudicationsResponse:
        req = pb.ListPendingAdjudicationsRequest(limit=limit, offset=offset)
        return self._call(self.stub.ListPendingAdjudications, req, pb.ListPendingAdjudicationsResponse,
                          idempotent=True, timeout=timeout)

    def adjudicate(self, reference_id: str, same: bool, *, comment: str = "", mate_reference_id: str = "",
                   request_id: str = "", timeout: float | None = None) -> pb.AdjudicateResponse:
        decision = pb.ADJUDICATION_DECISION_SAME if same else pb.ADJUDICATION_DECISION_DISTINCT
        req = pb.AdjudicateRequest(request_id=request_id, reference_id=reference_id, decision=decision,
                                   comment=comment, mate_reference_id=mate_reference_id)
        return self._call(self.stub.Adjudicate, self._with_id(req), pb.AdjudicateResponse, idempotent=True,
                          timeout=timeout)

    def list_records(self, *, partition: str = "", status: str = "", created_from: float = 0.0,
                     created_to: float = 0.0, limit: int = 0, offset: int = 0,
                     timeout: float | None = None) -> pb.ListRecordsResponse:
        """``status``: "active" | "pending" | "deleted" | "" (any)."""
        req = pb.ListRecordsRequest(partition=partition, created_from=created_from, created_to=created_to,
                                    limit=limit, offset=offset)
        if status:
            req.status = cast(pb.RecordStatus, pb.RecordStatus.Value(f"RECORD_STATUS_{status.upper()}"))
        return self._call(self.stub.ListRecords, req, pb.ListRecordsResponse, idempotent=True,
                          timeout=timeout)

    def reopen_case(self, reference_id: str, reason: str, *,
                    timeout: float | None = None) -> pb.ReopenCaseResponse:
        req = pb.ReopenCaseRequest(reference_id=reference_id, reason=reason)
        return self._call(self.stub.ReopenCase, req, pb.ReopenCaseResponse, idempotent=False,
                          timeout=timeout)

    def update_biometrics(self, reference_id: str, sample: pb.Sample, *,
                          verification: Sequence[pb.Sample] = (), target_fmr: float | None = None,
                          target_fpir: float | None = None,
                          timeout: float | None = None) -> pb.UpdateBiometricsResponse:
        req = pb.UpdateBiometricsRequest(reference_id=reference_id, sample=sample, verification=verification)
        if target_fmr is not None:
            req.target_fmr = target_fmr
        if target_fpir is not None:
            req.target_fpir = target_fpir
        return self._call(self.stub.UpdateBiometrics, req, pb.UpdateBiometricsResponse, idempotent=False,
                          timeout=timeout)

    def stats(self, *, timeout: float | None = None) -> pb.StatsResponse:
        return self._call(self.stub.Stats, pb.StatsRequest(), pb.StatsResponse,
                          idempotent=True, timeout=timeout)

    # -- de-duplication jobs ---------------------------------------------------------------------

    def start_dedup(self, *, partition: str = "", target_fpir: float | None = None, fmr: float | None = None,
                    fast: bool = False, push_to_queue: bool = False,
                    timeout: float | None = None) -> pb.StartDedupResponse:
        """N:N over the server's gallery (or ``partition``); returns the job id at once."""
        req = pb.StartDedupRequest(partition=partition, push_to_queue=push_to_queue,
                                   mode=pb.DEDUP_MODE_FAST if fast else pb.DEDUP_MODE_EXACT)
        if fmr is not None:
            req.fmr = fmr
        elif target_fpir is not None:
            req.target_fpir = target_fpir
        return self._call(self.stub.StartDedup, req, pb.StartDedupResponse, idempotent=False, timeout=timeout)

    def _job(self, method: str, job_id: str, idempotent: bool,
             timeout: float | None) -> pb.DedupStatusResponse:
        return self._call(getattr(self.stub, method), pb.DedupJobRequest(job_id=job_id),
                          pb.DedupStatusResponse, idempotent=idempotent, timeout=timeout)

    def get_dedup(self, job_id: str, *, timeout: float | None = None) -> pb.DedupStatusResponse:
        return self._job("GetDedup", job_id, True, timeout)

    def cancel_dedup(self, job_id: str, *, timeout: float | None = None) -> pb.DedupStatusResponse:
        return self._job("CancelDedup", job_id, False, timeout)

    def resume_dedup(self, job_id: str, *, timeout: float | None = None) -> pb.DedupStatusResponse:
        return self._job("ResumeDedup", job_id, False, timeout)

    def watch_dedup(self, job_id: str, *, timeout: float | None = None) -> Iterator[pb.DedupProgress]:
        """Progress snapshots (~1 s apart) until the job stops; ``timeout`` bounds the whole stream."""
        yield from self.stub.WatchDedup(pb.DedupJobRequest(job_id=job_id), timeout=timeout,
                                        metadata=self.metadata)

    def get_dedup_result(self, job_id: str, *, limit: int = 0, offset: int = 0,
                         timeout: float | None = None) -> pb.GetDedupResultResponse:
        req = pb.GetDedupResultRequest(job_id=job_id, limit=limit, offset=offset)
        return self._call(self.stub.GetDedupResult, req, pb.GetDedupResultResponse,
                          idempotent=True, timeout=timeout)

    def fetch_dedup_report(self, job_id: str, fmt: str = "json", *, timeout: float | None = None) -> bytes:
        """The report as bytes: ``fmt`` json | csv (clusters) | pairs_csv | html."""
        formats = {"json": pb.REPORT_FORMAT_JSON, "csv": pb.REPORT_FORMAT_CSV,
                   "pairs_csv": pb.REPORT_FORMAT_PAIRS_CSV, "html": pb.REPORT_FORMAT_HTML}
        if fmt not in formats:
            raise ValueError(f"format must be one of {', '.join(formats)}")
        req = pb.FetchDedupReportRequest(job_id=job_id, format=formats[fmt])
        chunks = self.stub.FetchDedupReport(req, timeout=timeout or self.timeout, metadata=self.metadata)
        return b"".join(c.data for c in chunks)

    def get_report(self, *, from_date: str = "", to_date: str = "", partition: str = "",
                   min_cell: int | None = None, details: bool = False, timeout: float | None = None
                   ) -> dict[str, bytes]:
        """The registration report's files by name (report.html, report.json, <table>.csv)."""
        req = pb.GetReportRequest(from_date=from_date, to_date=to_date, partition=partition,
                                  details=details)
        if min_cell is not None:
            req.min_cell = min_cell
        r = self._call(self.stub.GetReport, req, pb.GetReportResponse, idempotent=True, timeout=timeout)
        return {f.name: f.content for f in r.files}

    # -- administration --------------------------------------------------------------------------

    def create_token(self, name: str, role: str, *, request_id: str = "",
                     timeout: float | None = None) -> pb.CreateTokenResponse:
        req = pb.CreateTokenRequest(request_id=request_id, name=name, role=role)
        return self._call(self.admin.CreateToken, self._with_id(req), pb.CreateTokenResponse,
                          idempotent=True, timeout=timeout)

    def list_tokens(self, *, timeout: float | None = None) -> pb.ListTokensResponse:
        return self._call(self.admin.ListTokens, pb.ListTokensRequest(), pb.ListTokensResponse,
                          idempotent=True, timeout=timeout)

    def revoke_token(self, token_id: str, *, request_id: str = "",
                     timeout: float | None = None) -> pb.RevokeTokenResponse:
        req = pb.RevokeTokenRequest(request_id=request_id, token_id=token_id)
        return self._call(self.admin.RevokeToken, self._with_id(req), pb.RevokeTokenResponse,
                          idempotent=True, timeout=timeout)

    # -- operations (admin) ----------------------------------------------------------------------

    def create_backup(self, *, timeout: float | None = None) -> pb.CreateBackupResponse:
        """An online backup into the server's backup folder."""
        return self._call(self.admin.CreateBackup, pb.CreateBackupRequest(), pb.CreateBackupResponse,
                          idempotent=False, timeout=timeout)

    def check_integrity(self, *, full: bool = False,
                        timeout: float | None = None) -> pb.CheckIntegrityResponse:
        return self._call(self.admin.CheckIntegrity, pb.CheckIntegrityRequest(full=full),
                          pb.CheckIntegrityResponse, idempotent=True, timeout=timeout)

    def run_maintenance(self, *, timeout: float | None = None) -> pb.RunMaintenanceResponse:
        return self._call(self.admin.RunMaintenance, pb.RunMaintenanceRequest(), pb.RunMaintenanceResponse,
                          idempotent=False, timeout=timeout)

    # -- transfer between sites (admin) -----------------------------------------------------------

    def export_transfer(self, to_site: str, out: BinaryIO, *, since: int | None = None, partition: str = "",
                        with_images: bool = False, timeout: float | None = None) -> dict[str, Any]:
        """Write the next packet for ``to_site`` into ``out``; returns the export summary."""
        req = pb.ExportTransferRequest(to_site=to_site, partition=partition, with_images=with_images)
        if since is not None:
            req.since = since
        summary: dict[str, Any] = {}
        stream = self.admin.ExportTransfer(req, timeout=timeout or self.timeout, metadata=self.metadata)
        for chunk in stream:
            out.write(chunk.data)
            if chunk.summary_json:
                summary = json.loads(chunk.summary_json)
        return summary

    def import_transfer(self, path: Path, *, re_extract: bool = False,
                        timeout: float | None = None) -> pb.ImportTransferResponse:
        """Send the packet file at ``path``; the server checks and imports it (``re_extract``: see
        ``nasname transfer import --re-extract``)."""

        def chunks() -> Iterator[pb.TransferChunk]:
            with open(path, "rb") as f:
                while data := f.read(1 << 20):
                    yield pb.TransferChunk(data=data, re_extract=re_extract)

        reply: pb.ImportTransferResponse = self.admin.ImportTransfer(
            chunks(), timeout=timeout or self.timeout, metadata=self.metadata)
        return reply

    def transfer_status(self, *, timeout: float | None = None) -> pb.TransferStatusResponse:
        return self._call(self.admin.TransferStatus, pb.TransferStatusRequest(), pb.TransferStatusResponse,
                          idempotent=True, timeout=timeout)

    def trust_peer(self, public_json: str, *, timeout: float | None = None) -> pb.PeerResponse:
        """Trust a peer from the content of its ``site export-public`` file (trusting again is harmless)."""
        req = pb.TrustPeerRequest(public_json=public_json)
        return self._call(self.admin.TrustPeer, self._with_id(req), pb.PeerResponse, idempotent=True,
                          timeout=timeout)

    def revoke_peer(self, site_id: str, *, timeout: float | None = None) -> pb.PeerResponse:
        req = pb.RevokePeerRequest(site_id=site_id)
        return self._call(self.admin.RevokePeer, self._with_id(req), pb.PeerResponse, idempotent=False,
                          timeout=timeout)

    def list_peers(self, *, timeout: float | None = None) -> pb.ListPeersResponse:
        return self._call(self.admin.ListPeers, pb.ListPeersRequest(), pb.ListPeersResponse, idempotent=True,
                          timeout=timeout)

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """``"SERVING"`` / ``"NOT_SERVING"`` / ... (no token needed)."""
        reply = self._call(self.health_stub.Check, health_pb2.HealthCheckRequest(service=service),
                           health_pb2.HealthCheckResponse, idempotent=True, timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
