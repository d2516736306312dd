"""The one table from nasname errors to gRPC status codes, and how a failure leaves the server.

A failure is a gRPC status code plus a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer (the standard rich-error channel read by ``grpcio-status`` and every other gRPC stack) whose
only detail is a ``google.rpc.ErrorInfo``: ``reason`` = the engine error's stable code, ``domain`` =
``"nasname"``, ``metadata`` = its small non-personal facts plus the request id.

Several error classes may share a status code; the ErrorInfo reason tells them apart. The most
specific class in an exception's MRO decides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from engine import errors as e

__all__ = [
    "DOMAIN",
    "STATUS_BY_ERROR",
    "abort",
    "abort_with",
    "rpc_status",
    "status_code_for",
]

log = logging.getLogger(__name__)

DOMAIN = "nasname"
DETAILS_KEY = "grpc-status-details-bin"
# What a status may echo back. The message goes out twice (grpc-message and inside the details
# trailer) and gRPC fails the whole status when the trailers pass its metadata limit (8 KiB by
# default), which an 8 KB reference id in a NOT_FOUND message did; the caller knows what it sent.
MAX_MESSAGE_CHARS = 400
MAX_VALUE_CHARS = 160
MAX_DETAILS = 16

SC = grpc.StatusCode

# THE table (engine error class -> status code). Keep in step with the docstring of engine/errors.py.
STATUS_BY_ERROR: dict[type[e.NasnameError], grpc.StatusCode] = {
    e.InvalidInput: SC.INVALID_ARGUMENT,  # incl. InvalidImage, ImageTooLarge
    e.SampleRejected: SC.INVALID_ARGUMENT,  # incl. AcquisitionFailed (no face/iris), QualityRejected
    e.NotFound: SC.NOT_FOUND,
    e.AlreadyExists: SC.ALREADY_EXISTS,
    e.ModelMismatch: SC.FAILED_PRECONDITION,
    e.Conflict: SC.FAILED_PRECONDITION,
    e.Unauthenticated: SC.UNAUTHENTICATED,
    e.PermissionDenied: SC.PERMISSION_DENIED,
    e.ResourceExhausted: SC.RESOURCE_EXHAUSTED,
    e.Unavailable: SC.UNAVAILABLE,
    e.IntegrityError: SC.DATA_LOSS,
    e.ConfigurationError: SC.INTERNAL,
    e.NasnameError: SC.INTERNAL,
}


def status_code_for(exc: e.NasnameError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = STATUS_BY_ERROR.get(cls)  # type: ignore[call-overload]
        if code is not None:
            return code
    return SC.INTERNAL  # unreachable: NasnameError is in the table


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    suffix = f"... ({len(text)} chars)"
    return text[: max(0, limit - len(suffix))] + suffix


def _metadata(details: Mapping[str, Any], request_id: str) -> dict[str, str]:
    items = [(str(k), str(v)) for k, v in details.items() if v is not None][:MAX_DETAILS]
    out = {_cap(k, 64): _cap(v, MAX_VALUE_CHARS) for k, v in items}
    if request_id:
        out["request_id"] = _cap(request_id, MAX_VALUE_CHARS)
    return out


def rpc_status(code: grpc.StatusCode, message: str, reason: str,
               details: Mapping[str, Any] | None = None, request_id: str = "") -> status_pb2.Status:
    """A ``google.rpc.Status`` carrying one ErrorInfo (also used for per-item errors of a stream);
    message and metadata values are capped (see :data:`MAX_MESSAGE_CHARS`)."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=_metadata(details or {},
                                                                                     request_id))
    packed = any_pb2.Any()
    packed.Pack(info)
    numeric = code.value[0]
    if not code_pb2.Code.Name(numeric):  # pragma: no cover - every grpc code exists in google.rpc.Code
        numeric = code_pb2.UNKNOWN
    return status_pb2.Status(code=numeric, message=_cap(message, MAX_MESSAGE_CHARS), details=[packed])


def abort_with(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, reason: str,
               details: Mapping[str, Any] | None = None, request_id: str = "") -> NoReturn:
    """End the RPC with ``code`` and an ErrorInfo ``reason`` (raises, as ``context.abort`` does)."""
    status = rpc_status(code, message, reason, details, request_id)
    context.set_trailing_metadata(((DETAILS_KEY, status.SerializeToString()),))
    context.abort(code, status.message)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def abort(context: grpc.ServicerContext, exc: BaseException, request_id: str = "") -> NoReturn:
    """End the RPC for ``exc``: a NasnameError keeps its message and reason; anything else is a bug,
    logged with its traceback here and reported to the client as INTERNAL without any detail."""
    if isinstance(exc, e.NasnameError):
        abort_with(context, status_code_for(exc), exc.message, exc.reason, exc.details, request_id)
    log.error("unexpected %s (request_id=%s)", type(exc).__name__, request_id, exc_info=exc)
    abort_with(context, SC.INTERNAL, "internal error", "INTERNAL", None, request_id)


def item_status(exc: BaseException, request_id: str = "") -> status_pb2.Status:
    """The Status for one failed item of a streaming call (same rules as :func:`abort`)."""
    if isinstance(exc, e.NasnameError):
        return rpc_status(status_code_for(exc), exc.message, exc.reason, exc.details, request_id)
    log.error("unexpected %s (request_id=%s)", type(exc).__name__, request_id, exc_info=exc)
    return rpc_status(SC.INTERNAL, "internal error", "INTERNAL", None, request_id)
