"""The one interceptor every RPC passes through: shutdown gate, authentication and roles (server.auth),
request-size limit with a machine-readable reason, request id, deadline check, one structured log line.

The checks run inside the handler (in a worker thread), not in ``intercept_service`` (which gRPC runs on
its polling thread), so a slow token lookup never stalls the server. The authenticated caller and the
request id reach the servicer through :func:`current_call` (a context variable set around the handler).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

from engine.errors import InvalidInput, NasnameError, ResourceExhausted, Unavailable
from server import errors
from server.auth import Authenticator, Principal
from server.metrics import observe_rpc

__all__ = ["CallInfo", "Gate", "ServiceInterceptor", "current_call"]

log = logging.getLogger("server.rpc")

_REQUEST_ID_RE = re.compile(r"^[\w.:\-]{1,128}$")


@dataclass(frozen=True)
class CallInfo:
    method: str  # short RPC name, e.g. "Enroll"
    request_id: str
    principal: Principal | None

    @property
    def actor(self) -> str:
        return self.principal.token_id if self.principal else "anonymous"


_CALL: ContextVar[CallInfo | None] = ContextVar("nasname_call", default=None)


def current_call() -> CallInfo:
    """The call being served in this thread (a neutral placeholder outside the interceptor)."""
    return _CALL.get() or CallInfo("", "", None)


class Gate:
    """Closed when the server starts shutting down: new calls get UNAVAILABLE / SHUTTING_DOWN while
    the in-flight ones drain."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


@dataclass(frozen=True)
class _Oversized:
    """Stands in for a request message above the configured size (gRPC core enforces only a hard cap,
    and without a reason)."""

    size: int


def _new_request_id() -> str:
    return uuid.uuid4().hex


class ServiceInterceptor(grpc.ServerInterceptor):  # type: ignore[misc,type-arg]
    def __init__(self, authenticator: Authenticator, *, max_message_bytes: int,
                 gate: Gate | None = None) -> None:
        self.authenticator = authenticator
        self.max_message_bytes = max_message_bytes
        self.gate = gate or Gate()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method: str = details.method
        metadata: Sequence[tuple[str, Any]] = tuple(details.invocation_metadata or ())
        return self._wrap(handler, method, metadata)

    # -- checks ----------------------------------------------------------------------------------

    def _enter(self, method: str, metadata: Sequence[tuple[str, Any]], context: grpc.ServicerContext,
               request: Any) -> CallInfo:
        """Run every check; returns the call's info or aborts the RPC."""
        rid = ""
        try:
            if isinstance(request, _Oversized):
                raise ResourceExhausted(
                    f"request is {request.size} bytes; the limit is {self.max_message_bytes}",
                    reason="MESSAGE_TOO_LARGE",
                    details={"bytes": request.size, "max_bytes": self.max_message_bytes})
            if request is not None and hasattr(request, "request_id"):
                rid = request.request_id
                if rid and not _REQUEST_ID_RE.match(rid):
                    rid = ""
                    raise InvalidInput("request_id must be 1-128 letters, digits or . : _ -",
                                       reason="INVALID_REQUEST_ID")
                if not rid:
                    rid = request.request_id = _new_request_id()
            if self.gate.closed:
                raise Unavailable("the server is shutting down", reason="SHUTTING_DOWN")
            principal = self.authenticator.check(method, metadata)
            if context.time_remaining() <= 0:
                errors.abort_with(context, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the "
                                  "call started", "DEADLINE_EXCEEDED", request_id=rid)
        except NasnameError as exc:
            errors.abort(context, exc, rid)
        return CallInfo(method.rsplit("/", 1)[-1], rid or _new_request_id(), principal)

    def _check_stream(self, items: Iterator[Any], context: grpc.ServicerContext,
                      info: CallInfo) -> Iterator[Any]:
        for item in items:
            if isinstance(item, _Oversized):
                errors.abort(context, ResourceExhausted(
                    f"stream message is {item.size} bytes; the limit is {self.max_message_bytes}",
                    reason="MESSAGE_TOO_LARGE", details={"bytes": item.size}), info.request_id)
            yield item

    # -- wrapping --------------------------------------------------------------------------------

    def _log(self, method: str, info: CallInfo | None, context: grpc.ServicerContext, start: float) -> None:
        code = context.code() or grpc.StatusCode.OK  # type: ignore[attr-defined]
        ms = (time.perf_counter() - start) * 1000.0
        level = logging.DEBUG if method.startswith("/grpc.health") else logging.INFO
        rpc = method.rsplit("/", 1)[-1]
        rid = info.request_id if info else ""
        actor = info.actor if info else ""
        observe_rpc(rpc, code.name, ms / 1000.0)
        log.log(level, "rpc=%s code=%s ms=%.1f request_id=%s token_id=%s", rpc, code.name, ms, rid, actor,
                extra={"rpc": rpc, "code": code.name, "ms": round(ms, 2), "request_id": rid,
                       "token_id": actor})

    def _wrap(self, handler: Any, method: str, metadata: Sequence[tuple[str, Any]]) -> Any:
        limit = self.max_message_bytes
        deserialize = handler.request_deserializer

        def checked_deserializer(data: bytes) -> Any:
            if len(data) > limit:
                return _Oversized(len(data))
            return deserialize(data) if deserialize else data

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            start, info = time.perf_counter(), None
            try:
                info = self._enter(method, metadata, context, request)
                token = _CALL.set(info)
                try:
                    return handler.unary_unary(request, context)
                finally:
                    _CALL.reset(token)
            finally:
                self._log(method, info, context, start)

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            start, info = time.perf_counter(), None
            try:
                info = self._enter(method, metadata, context, request)
                token = _CALL.set(info)
                try:
                    yield from handler.unary_stream(request, context)
                finally:
                    _CALL.reset(token)
            finally:
                self._log(method, info, context, start)

        def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            start, info = time.perf_counter(), None
            try:
                info = self._enter(method, metadata, context, None)
                token = _CALL.set(info)
                try:
                    return handler.stream_unary(self._check_stream(requests, context, info), context)
                finally:
                    _CALL.reset(token)
            finally:
                self._log(method, info, context, start)

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            start, info = time.perf_counter(), None
            try:
                info = self._enter(method, metadata, context, None)
                token = _CALL.set(info)
                try:
                    yield from handler.stream_stream(self._check_stream(requests, context, info), context)
                finally:
                    _CALL.reset(token)
            finally:
                self._log(method, info, context, start)

        serializer = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_unary, checked_deserializer, serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(unary_stream, checked_deserializer, serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(stream_unary, checked_deserializer, serializer)
        return grpc.stream_stream_rpc_method_handler(stream_stream, checked_deserializer, serializer)
