"""Token administration over the API with the real token store (issue 18, items 11 and 12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from server.auth import Role
from server.client import error_reason
from tests.integration.test_service_support import Service, make_fusion, open_engine, start_service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    s = start_service(open_engine(tmp_path / "data", make_fusion(tmp_path / "cal")))
    yield s
    s.stop()


def test_the_last_admin_token_cannot_be_revoked(service: Service) -> None:
    admin = service.client(Role.ADMIN)
    [mine] = [t for t in admin.list_tokens().tokens if t.role == "admin"]
    with pytest.raises(grpc.RpcError) as exc:
        admin.revoke_token(mine.token_id)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(exc.value) == "LAST_ADMIN_TOKEN"
    second = admin.create_token("second admin", "admin")
    admin.revoke_token(mine.token_id)  # with another admin token it may go
    with pytest.raises(grpc.RpcError) as exc:  # ... and is revoked
        admin.list_tokens()
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    other = service.client(Role.ADMIN)
    other.metadata = (("authorization", f"Bearer {second.secret}"),)
    with pytest.raises(grpc.RpcError) as exc:
        other.revoke_token(second.token.token_id)
    assert error_reason(exc.value) == "LAST_ADMIN_TOKEN"


def test_create_token_repeated_with_a_request_id_makes_one_token(service: Service) -> None:
    admin = service.client(Role.ADMIN)
    before = len(admin.list_tokens().tokens)
    first = admin.create_token("station 9", "station", request_id="ops:create-9")
    again = admin.create_token("station 9", "station", request_id="ops:create-9")
    assert (again.token.token_id, again.secret) == (first.token.token_id, first.secret)
    assert len(admin.list_tokens().tokens) == before + 1
