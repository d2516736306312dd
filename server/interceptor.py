"""The one interceptor every RPC passes through: shutdown gate, authentication and roles (server.auth),
request-size limit with a machine-readable reason, request id, deadline check, one structured log line.

Authentication comes before the request body is read. gRPC Python reads a unary request completely
(and parses it) before any handler or interceptor code sees it, so an anonymous caller could make the
server buffer and parse tens of megabytes. Every method is therefore served through a request-*stream*
handler (the wire protocol does not tell the two apart): the checks run first, and only an
authenticated, authorised call pulls its message from the transport. A refused caller's body stays in
the client (beyond one HTTP/2 flow-control window) and the stream is reset.

The checks run in a worker thread, not in ``intercept_service`` (which gRPC runs on its one serving
thread), so a slow token lookup never stalls the server; ``intercept_service`` only counts streams
(server.calls) and picks the thread pool: health checks have their own, so they always answer;
streaming calls have their own, so they never take the threads of unary calls. The authenticated caller
and the request id reach the servicer through :func:`current_call` (a context variable set around the
handler).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from engine.errors import InvalidInput, NasnameError, ResourceExhausted, Unavailable
from server import errors
from server.auth import PUBLIC_METHODS, Authenticator, Principal, caller_key
from server.calls import CallRegistry, OpenCall, Slot
from server.metrics import observe_rpc

__all__ = ["CallInfo", "Gate", "ServiceInterceptor", "current_call"]

log = logging.getLogger("server.rpc")

_REQUEST_ID_RE = re.compile(r"[\w.:\-]{1,128}")
_HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
# Open Health/Watch streams at once (anonymous: load balancers; they hold no thread, but each counts
# against gRPC's limit of concurrent calls).
MAX_HEALTH_WATCHERS = 16


@dataclass(frozen=True)
class CallInfo:
    method: str  # short RPC name, e.g. "Enroll"
    request_id: str
    principal: Principal | None
    supplied: bool = False  # the caller sent the request id (not generated here)

    @property
    def actor(self) -> str:
        return self.principal.token_id if self.principal else "anonymous"

    @property
    def idempotency_id(self) -> str | None:
        """The request id as an idempotency key for writes: only one the caller chose (and can send
        again when it retries); a generated one identifies this attempt only."""
        return self.request_id if self.supplied else None


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


@dataclass(frozen=True)
class _Malformed:
    """Stands in for bytes that do not parse as the request message (gRPC would log a traceback and
    answer INTERNAL; this is the caller's error)."""

    size: int


def _new_request_id() -> str:
    return uuid.uuid4().hex


class _OnPool:
    """A handler behaviour that gRPC runs on ``pool`` instead of the server's default pool (gRPC reads
    the ``experimental_thread_pool`` attribute of the behaviour)."""

    def __init__(self, fn: Callable[..., Any], pool: ThreadPoolExecutor | None) -> None:
        self.fn = fn
        self.experimental_thread_pool = pool

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class _NonBlocking(_OnPool):
    """For Health/Watch: gRPC hands a non-blocking behaviour a callback to send responses with, so an
    open watch holds no thread."""

    experimental_non_blocking = True


class ServiceInterceptor(grpc.ServerInterceptor):  # type: ignore[misc,type-arg]
    def __init__(self, authenticator: Authenticator, *, max_message_bytes: int,
                 gate: Gate | None = None, calls: CallRegistry | None = None,
                 stream_pool: ThreadPoolExecutor | None = None,
                 health_pool: ThreadPoolExecutor | None = None,
                 on_received: Callable[[int], None] | None = None) -> None:
        self.authenticator = authenticator
        self.max_message_bytes = max_message_bytes
        self.gate = gate or Gate()
        self.calls = calls or CallRegistry()
        # Health watches are counted on their own: anonymous watchers must not use up the stream
        # slots of authenticated callers.
        self.watchers = CallRegistry(max_streams=MAX_HEALTH_WATCHERS, max_per_caller=MAX_HEALTH_WATCHERS)
        self.stream_pool = stream_pool
        self.health_pool = health_pool
        self.on_received = on_received  # request bytes read (server.memory.Trimmer)

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method: str = details.method
        metadata: Sequence[tuple[str, Any]] = tuple(details.invocation_metadata or ())
        streaming = bool(handler.request_streaming or handler.response_streaming)
        slot: Slot | None = None
        if method == _HEALTH_WATCH:
            slot = self.watchers.admit("anonymous")
        elif streaming and method not in PUBLIC_METHODS:
            slot = self.calls.admit(caller_key(metadata))
        if streaming and slot is None:
            return self._refuse(method, ResourceExhausted(
                "too many open streams; close one or retry later", reason="TOO_MANY_STREAMS",
                details={"max_streams": self.calls.max_streams,
                         "max_streams_per_caller": self.calls.max_per_caller}))
        if method in PUBLIC_METHODS:
            return self._public(handler, slot, method)
        return self._wrap(handler, method, metadata, slot)

    # -- checks ----------------------------------------------------------------------------------

    def _authenticate(self, method: str, metadata: Sequence[tuple[str, Any]],
                      context: grpc.ServicerContext) -> Principal | None:
        """Gate, authentication, roles, deadline: before any request message is read."""
        try:
            if self.gate.closed:
                raise Unavailable("the server is shutting down", reason="SHUTTING_DOWN")
            principal = self.authenticator.check(method, metadata, peer=context.peer())
        except NasnameError as exc:
            errors.abort(context, exc)
        if context.time_remaining() <= 0:
            errors.abort_with(context, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the "
                              "call started", "DEADLINE_EXCEEDED")
        return principal

    def _check_message(self, item: Any, context: grpc.ServicerContext, rid: str = "") -> None:
        if isinstance(item, _Oversized):
            errors.abort(context, ResourceExhausted(
                f"request message is {item.size} bytes; the limit is {self.max_message_bytes}",
                reason="MESSAGE_TOO_LARGE",
                details={"bytes": item.size, "max_bytes": self.max_message_bytes}), rid)
        if isinstance(item, _Malformed):
            errors.abort(context, InvalidInput(
                f"request message ({item.size} bytes) is not a valid protobuf message for this method",
                reason="MALFORMED_REQUEST"), rid)

    def _read_one(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        """The one message of a unary-request method (read only now, after authentication)."""
        request = next(requests, None)
        if request is None:
            errors.abort(context, InvalidInput("the call carried no request message",
                                               reason="MALFORMED_REQUEST"))
        self._check_message(request, context)
        return request

    def _request_id(self, request: Any, context: grpc.ServicerContext) -> tuple[str, bool]:
        if request is None or not hasattr(request, "request_id"):
            return _new_request_id(), False
        rid = request.request_id
        if rid and not _REQUEST_ID_RE.fullmatch(rid):
            errors.abort(context, InvalidInput("request_id must be 1-128 letters, digits or . : _ -",
                                               reason="INVALID_REQUEST_ID"))
        if rid:
            return rid, True
        request.request_id = _new_request_id()
        return request.request_id, False

    def _check_stream(self, items: Iterator[Any], context: grpc.ServicerContext, info: CallInfo,
                      open_call: OpenCall | None) -> Iterator[Any]:
        for item in items:
            self._check_message(item, context, info.request_id)
            if open_call is not None:
                self.calls.touch(open_call)
            yield item
        if open_call is not None:
            open_call.done_reading()

    # -- wrapping --------------------------------------------------------------------------------

    def _log(self, method: str, info: CallInfo | None, context: grpc.ServicerContext, start: float,
             open_call: OpenCall | None = None) -> None:
        code = context.code() or grpc.StatusCode.OK  # type: ignore[attr-defined]
        if open_call is not None and open_call.ended_because:
            code = grpc.StatusCode.CANCELLED
        ms = (time.perf_counter() - start) * 1000.0
        level = logging.DEBUG if method.startswith("/grpc.health") else logging.INFO
        rpc = method.rsplit("/", 1)[-1]
        rid = info.request_id if info else ""
        actor = info.actor if info else ""
        observe_rpc(rpc, code.name, ms / 1000.0)
        log.log(level, "rpc=%s code=%s ms=%.1f request_id=%s token_id=%s", rpc, code.name, ms, rid, actor,
                extra={"rpc": rpc, "code": code.name, "ms": round(ms, 2), "request_id": rid,
                       "token_id": actor})

    def _deserializer(self, handler: Any) -> Callable[[bytes], Any]:
        limit = self.max_message_bytes
        deserialize = handler.request_deserializer

        on_received = self.on_received

        def checked(data: bytes) -> Any:
            if on_received is not None:
                on_received(len(data))
            if len(data) > limit:
                return _Oversized(len(data))
            if deserialize is None:
                return data
            try:
                return deserialize(data)
            except (DecodeError, ValueError, TypeError):
                return _Malformed(len(data))

        return checked

    def _refuse(self, method: str, exc: NasnameError) -> Any:
        """A handler that ends the call with ``exc`` without reading its request."""

        def refuse(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                errors.abort(context, exc)
            finally:
                self._log(method, None, context, start)

        return grpc.stream_stream_rpc_method_handler(refuse)

    def _public(self, handler: Any, slot: Slot | None, method: str) -> Any:
        """Health: no token, no gate (it reports NOT_SERVING itself while shutting down), its own
        thread pool so that it answers while every other thread is busy."""
        if handler.unary_unary:
            check = handler.unary_unary

            def checked(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                try:
                    return check(request, context)
                finally:
                    self._log(method, None, context, start)  # counted in the metrics like every call

            return grpc.unary_unary_rpc_method_handler(
                _OnPool(checked, self.health_pool), handler.request_deserializer,
                handler.response_serializer)
        watch = handler.unary_stream

        def watch_released(request: Any, context: grpc.ServicerContext, send_response_callback: Any = None
                           ) -> Any:
            if slot is not None and not context.add_callback(slot.release):
                slot.release()
            if send_response_callback is None:
                return watch(request, context)
            return watch(request, context, send_response_callback=send_response_callback)

        return grpc.unary_stream_rpc_method_handler(
            _NonBlocking(watch_released, self.health_pool), handler.request_deserializer,
            handler.response_serializer)

    def _wrap(self, handler: Any, method: str, metadata: Sequence[tuple[str, Any]],
              slot: Slot | None) -> Any:
        unary_request = not handler.request_streaming
        streaming = bool(handler.request_streaming or handler.response_streaming)

        def begin(requests: Iterator[Any], context: grpc.ServicerContext
                  ) -> tuple[CallInfo, Any, OpenCall | None]:
            """Checks, then the request (unary) or the checked request iterator (streaming)."""
            principal = self._authenticate(method, metadata, context)
            request = self._read_one(requests, context) if unary_request else None
            rid, supplied = self._request_id(request, context) if unary_request else (_new_request_id(),
                                                                                     False)
            info = CallInfo(method.rsplit("/", 1)[-1], rid, principal, supplied)
            open_call = None
            if streaming and principal is not None:
                open_call = self.calls.register(principal.token_id, context, info.method,
                                                reads_requests=not unary_request)
            argument = request if unary_request else self._check_stream(requests, context, info, open_call)
            return info, argument, open_call

        def hold(context: grpc.ServicerContext) -> None:
            if slot is not None and not context.add_callback(slot.release):
                slot.release()  # the call is over already

        def response_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            hold(context)
            start, info = time.perf_counter(), None
            try:
                info, argument, _ = begin(requests, context)
                token = _CALL.set(info)
                try:
                    if unary_request:
                        return handler.unary_unary(argument, context)
                    return handler.stream_unary(argument, context)
                finally:
                    _CALL.reset(token)
            finally:
                self._log(method, info, context, start)

        def response_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            hold(context)  # here, not in the generator: gRPC may never advance a cancelled call's
            return stream_body(requests, context)

        def stream_body(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            start, info, open_call = time.perf_counter(), None, None
            try:
                info, argument, open_call = begin(requests, context)
                token = _CALL.set(info)
                try:
                    if unary_request:
                        yield from handler.unary_stream(argument, context)
                    else:
                        yield from handler.stream_stream(argument, context)
                finally:
                    _CALL.reset(token)
            finally:
                if open_call is not None:
                    self.calls.unregister(open_call)
                self._log(method, info, context, start, open_call)

        deserializer = self._deserializer(handler)
        serializer = handler.response_serializer
        pool = self.stream_pool if streaming else None
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(_OnPool(response_stream, pool), deserializer,
                                                         serializer)
        return grpc.stream_unary_rpc_method_handler(_OnPool(response_unary, pool), deserializer, serializer)
