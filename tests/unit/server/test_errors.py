from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from engine import errors as e
from server.errors import STATUS_BY_ERROR, rpc_status, status_code_for

SC = grpc.StatusCode


@pytest.mark.parametrize(("exc", "code"), [
    (e.InvalidInput("x"), SC.INVALID_ARGUMENT),
    (e.InvalidImage("x"), SC.INVALID_ARGUMENT),
    (e.ImageTooLarge("x"), SC.INVALID_ARGUMENT),
    (e.AcquisitionFailed("x", reasons=["NO_FACE"]), SC.INVALID_ARGUMENT),
    (e.QualityRejected("x", reasons=["BLURRED"]), SC.INVALID_ARGUMENT),
    (e.NotFound("x"), SC.NOT_FOUND),
    (e.AlreadyExists("x"), SC.ALREADY_EXISTS),
    (e.ModelMismatch("x"), SC.FAILED_PRECONDITION),
    (e.Conflict("x"), SC.FAILED_PRECONDITION),
    (e.Unauthenticated("x"), SC.UNAUTHENTICATED),
    (e.PermissionDenied("x"), SC.PERMISSION_DENIED),
    (e.ResourceExhausted("x"), SC.RESOURCE_EXHAUSTED),
    (e.Unavailable("x"), SC.UNAVAILABLE),
    (e.IntegrityError("x"), SC.DATA_LOSS),
    (e.ConfigurationError("x"), SC.INTERNAL),
    (e.NasnameError("x"), SC.INTERNAL),
])
def test_each_error_class_maps_to_one_status(exc: e.NasnameError, code: grpc.StatusCode) -> None:
    assert status_code_for(exc) is code


def test_every_error_class_of_the_tree_is_covered() -> None:
    classes = {getattr(e, name) for name in e.__all__}
    for cls in classes:
        assert any(base in STATUS_BY_ERROR for base in cls.__mro__), cls


def test_rpc_status_carries_error_info() -> None:
    exc = e.QualityRejected("too blurred", reasons=["BLURRED", "TOO_DARK"])
    status = rpc_status(status_code_for(exc), exc.message, exc.reason, exc.details, "req-1")
    assert status.code == 3 and status.message == "too blurred"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "QUALITY_CHECK_FAILED" and info.domain == "nasname"
    assert info.metadata["quality_reasons"] == "BLURRED,TOO_DARK"
    assert info.metadata["request_id"] == "req-1"
