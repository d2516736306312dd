"""The servicers: each RPC turns its request into one engine call and the result into a response.

No decisions are made here (roles: server.auth; status codes: server.errors; matching: engine). The
caller's identity and the request id come from the interceptor through ``current_call()``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from queue import Queue
from typing import Any, Protocol, TypeVar

import grpc

from engine.dedup.service import DedupService
from engine.engine import Engine
from engine.errors import InvalidInput, NasnameError, ResourceExhausted, Unavailable
from engine.events import set_station_source
from engine.ops.check import run_check
from engine.ops.schedule import BackupSettings, backup_now, run_maintenance
from engine.records import RecordView
from engine.store.idempotency import DEFAULT_RETENTION_S, IdempotencyKey
from engine.store.values import TokenInfo
from server import convert as cv
from server import errors
from server._gen.nasname.v1 import nasname_pb2 as pb
from server._gen.nasname.v1 import nasname_pb2_grpc as pb_grpc
from server.auth import Role
from server.dedup import DedupMixin
from server.interceptor import current_call
from server.transfer import TransferMixin

__all__ = ["AdminServicer", "NasnameServicer", "TokenAdmin"]

def _station() -> str | None:
    """The API token id of the call being served (for the operations event log)."""
    call = current_call()
    return call.actor if call.principal is not None else None


# operations that take no actor argument (identify, verify) are attributed to the calling token
set_station_source(_station)
R = TypeVar("R", pb.GetRecordResponse, pb.AdjudicateResponse, pb.ReopenCaseResponse)

DEFAULT_MAX_RESULTS = 10
DEFAULT_PENDING_LIMIT = 100


@contextmanager
def _translating(context: grpc.ServicerContext, request_id: str) -> Iterator[None]:
    """Any exception inside becomes the RPC's status (server.errors decides which)."""
    try:
        yield
    except Exception as exc:
        errors.abort(context, exc, request_id)


def _need_id(value: str, field: str = "reference_id") -> str:
    if not value:
        raise InvalidInput(f"{field} is required", reason=f"MISSING_{field.upper()}")
    return value


def _dedup_for(engine: Engine) -> DedupService:
    """Jobs in the engine's data directory (an engine without one, e.g. a test fake: none)."""
    gallery = getattr(engine, "gallery", None)
    if getattr(gallery, "datadir", None) is None:
        return DedupService(None)
    return DedupService(engine.gallery, engine.fusion_for_models)


class NasnameServicer(DedupMixin, pb_grpc.NasnameServicer):  # type: ignore[misc]
    def __init__(self, engine: Engine, *, max_batch_items: int = 10_000, batch_in_flight: int = 8,
                 dedup: DedupService | None = None) -> None:
        self.engine = engine
        self.dedup = dedup or _dedup_for(engine)
        self.max_batch_items = max_batch_items
        self.batch_in_flight = batch_in_flight
        self._pool = ThreadPoolExecutor(max_workers=batch_in_flight, thread_name_prefix="nasname-batch")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.dedup.close()  # running jobs checkpoint and stop; ResumeDedup after a restart

    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext) -> pb.EnrollResponse:
        call = current_call()
        with _translating(context, call.request_id):
            r = self.engine.enroll(
                request.reference_id or None, cv.samples_from_pb(request.samples),
                partition=request.partition or "default", attributes=dict(request.attributes),
                target_fpir=request.target_fpir if request.HasField("target_fpir") else None,
                search_partition=request.search_partition or None, actor=call.actor,
                request_id=call.idempotency_id)
        return pb.EnrollResponse(request_id=call.request_id, reference_id=r.reference_id,
                                 outcome=cv.OUTCOME_TO_PB[r.outcome],
                                 candidates=cv.candidates_to_pb(r.candidates),
                                 threshold=cv.threshold_to_pb(r.threshold),
                                 samples=cv.sample_results_to_pb(r.samples))

    def Insert(self, request: pb.InsertRequest, context: grpc.ServicerContext) -> pb.InsertResponse:
        call = current_call()
        with _translating(context, call.request_id):
            r = self.engine.insert(request.reference_id or None, cv.samples_from_pb(request.samples),
                                   partition=request.partition or "default",
                                   attributes=dict(request.attributes), actor=call.actor,
                                   request_id=call.idempotency_id)
        return pb.InsertResponse(request_id=call.request_id, reference_id=r.reference_id,
                                 samples=cv.sample_results_to_pb(r.samples))

    def _identify(self, request: pb.IdentifyRequest, request_id: str) -> pb.IdentifyResponse:
        if bool(request.samples) == bool(request.reference_id):
            raise InvalidInput("identify needs either samples or a reference_id (exactly one)",
                               reason="INVALID_PROBE")
        r = self.engine.identify(
            cv.samples_from_pb(request.samples) if request.samples else None,
            reference_id=request.reference_id or None,
            max_results=request.max_results or DEFAULT_MAX_RESULTS,
            target_fpir=request.target_fpir if request.HasField("target_fpir") else None,
            partition=request.partition or None,
            reference_ids=list(request.reference_ids) or None)
        return pb.IdentifyResponse(request_id=request_id, candidates=cv.candidates_to_pb(r.candidates),
                                   threshold=cv.threshold_to_pb(r.threshold),
                                   samples=cv.sample_results_to_pb(r.samples))

    def Identify(self, request: pb.IdentifyRequest, context: grpc.ServicerContext) -> pb.IdentifyResponse:
        call = current_call()
        with _translating(context, call.request_id):
            return self._identify(request, call.request_id)

    def BatchIdentify(self, requests: Iterator[pb.IdentifyRequest],
                      context: grpc.ServicerContext) -> Iterator[pb.BatchIdentifyResponse]:
        """Results in request order; one probe's failure is reported in its own item, the stream goes on.

        Up to ``batch_in_flight`` probes of a stream are searched at once (the engine's index batches
        concurrent searches into one scan). A reader thread takes requests as they arrive, so a client
        that waits for each answer before sending the next probe is served too."""
        call = current_call()
        queue: Queue[tuple[str, Future[pb.IdentifyResponse]] | BaseException | None] = Queue()
        slots = threading.Semaphore(self.batch_in_flight)
        stop = threading.Event()

        def read() -> None:
            try:
                for n, request in enumerate(requests, start=1):
                    if n > self.max_batch_items:
                        raise ResourceExhausted(f"a batch holds at most {self.max_batch_items} probes",
                                                reason="BATCH_TOO_LARGE",
                                                details={"max_batch_items": self.max_batch_items})
                    while not slots.acquire(timeout=0.5):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    rid = request.request_id or uuid.uuid4().hex
                    queue.put((rid, self._pool.submit(self._identify, request, rid)))
            except BaseException as exc:  # handed to the handler thread, which ends the call with it
                queue.put(exc)
                return
            queue.put(None)

        reader = threading.Thread(target=read, name="nasname-batch-reader", daemon=True)
        reader.start()
        try:
            while (item := queue.get()) is not None:
                if isinstance(item, NasnameError):
                    errors.abort(context, item, call.request_id)
                if isinstance(item, BaseException):
                    raise item  # e.g. an abort already recorded by the interceptor's size check
                rid, future = item
                try:
                    result = future.result()
                except Exception as exc:
                    yield pb.BatchIdentifyResponse(request_id=rid, error=errors.item_status(exc, rid))
                else:
                    yield pb.BatchIdentifyResponse(request_id=rid, result=result)
                slots.release()
                if not context.is_active():  # cancelled or past its deadline: stop working for nobody
                    return
        finally:
            stop.set()
            while not queue.empty():
                left = queue.get_nowait()
                if isinstance(left, tuple):
                    left[1].cancel()

    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext) -> pb.VerifyResponse:
        call = current_call()
        with _translating(context, call.request_id):
            r = self.engine.verify(_need_id(request.reference_id), cv.samples_from_pb(request.samples),
                                   target_fmr=request.target_fmr if request.HasField("target_fmr") else None)
        return cv.verify_to_pb(r, call.request_id)

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        call = current_call()
        with _translating(context, call.request_id):
            self.engine.delete(_need_id(request.reference_id), actor=call.actor,
                               request_id=call.idempotency_id)
        return pb.DeleteResponse(request_id=call.request_id, reference_id=request.reference_id)

    def GetRecord(self, request: pb.GetRecordRequest, context: grpc.ServicerContext) -> pb.GetRecordResponse:
        call = current_call()
        with _translating(context, call.request_id):
            record = self.engine.get(_need_id(request.reference_id))
            return self._with_history(pb.GetRecordResponse, call.request_id, record)

    def _with_history(self, reply: type[R], request_id: str, record: RecordView) -> R:
        """A reply carrying the record and its adjudication history."""
        return reply(request_id=request_id, record=cv.record_to_pb(record),
                     history=cv.history_to_pb(self.engine.history(record.reference_id)))

    def ListPendingAdjudications(self, request: pb.ListPendingAdjudicationsRequest,
                                 context: grpc.ServicerContext) -> pb.ListPendingAdjudicationsResponse:
        call = current_call()
        with _translating(context, call.request_id):
            items = self.engine.list_pending(limit=request.limit or DEFAULT_PENDING_LIMIT,
                                             offset=request.offset)
        return pb.ListPendingAdjudicationsResponse(request_id=call.request_id,
                                                   items=[cv.pending_to_pb(i) for i in items])

    def Adjudicate(self, request: pb.AdjudicateRequest,
                   context: grpc.ServicerContext) -> pb.AdjudicateResponse:
        call = current_call()
        with _translating(context, call.request_id):
            record = self.engine.adjudicate(
                _need_id(request.reference_id), cv.decision_from_pb(request.decision), actor=call.actor,
                comment=request.comment, mate_reference_id=request.mate_reference_id or None,
                request_id=call.idempotency_id)
            return self._with_history(pb.AdjudicateResponse, call.request_id, record)

    def ListRecords(self, request: pb.ListRecordsRequest,
                    context: grpc.ServicerContext) -> pb.ListRecordsResponse:
        call = current_call()
        with _translating(context, call.request_id):
            status = cv.STATUS_FROM_PB.get(request.status) if request.status else None
            records, total = self.engine.list_records(
                partition=request.partition or None, status=status,
                created_from=request.created_from or None, created_to=request.created_to or None,
                limit=request.limit or DEFAULT_PENDING_LIMIT, offset=request.offset)
        return pb.ListRecordsResponse(request_id=call.request_id, total=total,
                                      records=[cv.record_to_pb(r) for r in records])

    def ReopenCase(self, request: pb.ReopenCaseRequest,
                   context: grpc.ServicerContext) -> pb.ReopenCaseResponse:
        call = current_call()
        with _translating(context, call.request_id):
            record = self.engine.reopen(_need_id(request.reference_id), actor=call.actor,
                                        reason=request.reason)
            return self._with_history(pb.ReopenCaseResponse, call.request_id, record)

    def UpdateBiometrics(self, request: pb.UpdateBiometricsRequest,
                         context: grpc.ServicerContext) -> pb.UpdateBiometricsResponse:
        call = current_call()
        with _translating(context, call.request_id):
            if not request.HasField("sample"):
                raise InvalidInput("sample (the modality to add or replace) is required",
                                   reason="MISSING_SAMPLE")
            [sample] = cv.samples_from_pb([request.sample])
            r = self.engine.update_biometrics(
                _need_id(request.reference_id), sample,
                verification=cv.samples_from_pb(request.verification),
                target_fmr=request.target_fmr if request.HasField("target_fmr") else None,
                target_fpir=request.target_fpir if request.HasField("target_fpir") else None,
                actor=call.actor)
        return pb.UpdateBiometricsResponse(
            request_id=call.request_id, reference_id=r.reference_id,
            outcome=cv.UPDATE_OUTCOME_TO_PB[r.outcome], verification=cv.verify_to_pb(r.verification),
            candidates=cv.candidates_to_pb(r.candidates),
            threshold=cv.threshold_to_pb(r.threshold), samples=cv.sample_results_to_pb(r.samples))

    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsResponse:
        call = current_call()
        with _translating(context, call.request_id):
            reply = cv.stats_to_pb(self.engine.stats())
        reply.request_id = call.request_id
        return reply

    def GetReport(self, request: pb.GetReportRequest, context: grpc.ServicerContext) -> pb.GetReportResponse:
        from engine.reports import ReportPeriod

        call = current_call()
        with _translating(context, call.request_id):
            now = time.time()
            period = ReportPeriod.parse(
                request.from_date or None, request.to_date or None, now=now,
                partition=request.partition or None, details=request.details,
                min_cell=request.min_cell if request.HasField("min_cell") else 5)
            files = self.engine.report_files(period, now=now)
        return pb.GetReportResponse(request_id=call.request_id,
                                    files=[pb.ReportFile(name=n, content=c) for n, c in files.items()])


class TokenAdmin(Protocol):
    """The token store's management side (``engine.store.Store`` satisfies it)."""

    def create_token(self, name: str, role: str, *, actor: str = ...,
                     key: IdempotencyKey | None = ...) -> tuple[str, str]: ...
    def list_tokens(self) -> list[TokenInfo]: ...
    def revoke_token(self, token_id: str, *, actor: str = ..., key: IdempotencyKey | None = ...) -> None: ...


def token_to_pb(t: TokenInfo) -> pb.Token:
    return pb.Token(token_id=t.token_id, name=t.name, role=t.role, created=t.created,
                    last_used=t.last_used or 0.0, revoked=t.revoked or 0.0)


class AdminServicer(TransferMixin, pb_grpc.AdminServicer):  # type: ignore[misc]
    """Tokens, and the operations RPCs on ``engine``'s gallery (backups into ``backup``'s folder;
    transfer between sites: server.transfer)."""

    def __init__(self, tokens: TokenAdmin, engine: Engine | None = None,
                 backup: BackupSettings | None = None, *, retention_s: float = DEFAULT_RETENTION_S,
                 on_revoke: Callable[[str], object] | None = None) -> None:
        self.tokens = tokens
        self.engine = engine
        self.backup = backup or BackupSettings()
        self.retention_s = retention_s
        self.on_revoke = on_revoke  # ends the revoked token's open calls (server.calls)

    def _key(self, operation: str) -> IdempotencyKey | None:
        """Token writes are idempotent per caller and request id, like the engine's writes."""
        call = current_call()
        rid = call.idempotency_id
        return None if rid is None else IdempotencyKey(call.actor, rid, operation, self.retention_s)

    def _engine(self) -> Engine:
        if getattr(getattr(self.engine, "gallery", None), "datadir", None) is None or self.engine is None:
            raise Unavailable("operations are not available on this server", reason="OPS_UNAVAILABLE")
        return self.engine

    def CreateBackup(self, request: pb.CreateBackupRequest,
                     context: grpc.ServicerContext) -> pb.CreateBackupResponse:
        call = current_call()
        with _translating(context, call.request_id):
            engine = self._engine()
            result = backup_now(engine.gallery, engine.config, self.backup)
            m = result.manifest
        return pb.CreateBackupResponse(request_id=call.request_id, file=result.path.name, bytes=result.bytes,
                                       seconds=result.seconds, change_seq=int(m["change_seq"]),
                                       created=str(m["created"]), manifest_json=json.dumps(m))

    def CheckIntegrity(self, request: pb.CheckIntegrityRequest,
                       context: grpc.ServicerContext) -> pb.CheckIntegrityResponse:
        call = current_call()
        with _translating(context, call.request_id):
            report = run_check(self._engine().gallery, full=request.full)
        return pb.CheckIntegrityResponse(request_id=call.request_id, ok=bool(report["ok"]),
                                         report_json=json.dumps(report))

    def RunMaintenance(self, request: pb.RunMaintenanceRequest,
                       context: grpc.ServicerContext) -> pb.RunMaintenanceResponse:
        call = current_call()
        with _translating(context, call.request_id):
            report = run_maintenance(self._engine().gallery, settings=self.backup)
        return pb.RunMaintenanceResponse(request_id=call.request_id, report_json=json.dumps(report))

    def CreateToken(self, request: pb.CreateTokenRequest,
                    context: grpc.ServicerContext) -> pb.CreateTokenResponse:
        call = current_call()
        with _translating(context, call.request_id):
            role = parse_role(request.role)
            token_id, secret = self.tokens.create_token(request.name, role.value, actor=call.actor,
                                                        key=self._key("create_token"))
            info = next((t for t in self.tokens.list_tokens() if t.token_id == token_id), None)
        token = token_to_pb(info) if info else pb.Token(token_id=token_id, name=request.name, role=role.value)
        return pb.CreateTokenResponse(request_id=call.request_id, token=token, secret=secret)

    def ListTokens(self, request: pb.ListTokensRequest,
                   context: grpc.ServicerContext) -> pb.ListTokensResponse:
        call = current_call()
        with _translating(context, call.request_id):
            tokens = self.tokens.list_tokens()
        return pb.ListTokensResponse(request_id=call.request_id, tokens=[token_to_pb(t) for t in tokens])

    def RevokeToken(self, request: pb.RevokeTokenRequest,
                    context: grpc.ServicerContext) -> pb.RevokeTokenResponse:
        call = current_call()
        with _translating(context, call.request_id):
            self.tokens.revoke_token(_need_id(request.token_id, "token_id"), actor=call.actor,
                                     key=self._key("revoke_token"))
        if self.on_revoke is not None:
            self.on_revoke(request.token_id)
        return pb.RevokeTokenResponse(request_id=call.request_id, token_id=request.token_id)


def parse_role(value: Any) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise InvalidInput(f"unknown role {value!r}; expected one of {', '.join(r.value for r in Role)}",
                           reason="INVALID_ROLE") from None
