from __future__ import annotations

import pytest

from engine.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.auth import PUBLIC_METHODS, RPC_ROLES, Authenticator, RateLimiter, Role, bearer_secret
from tests.unit.server.fakes import FakeTokens


def test_every_rpc_of_the_contract_is_in_the_table() -> None:
    methods = {f"/{s.full_name}/{m.name}" for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert methods <= set(RPC_ROLES), methods - set(RPC_ROLES)
    assert all(RPC_ROLES[m] for m in methods)
    assert not methods & PUBLIC_METHODS


def test_admin_may_call_everything_and_only_admin_deletes() -> None:
    assert all(Role.ADMIN in roles for roles in RPC_ROLES.values())
    assert RPC_ROLES["/nasname.v1.Nasname/Delete"] == {Role.ADMIN}


@pytest.mark.parametrize(("metadata", "expected"), [
    ([("authorization", "Bearer nsk_a")], "nsk_a"),
    ([("Authorization", "bearer  nsk_b ")], "nsk_b"),
    ([("authorization", b"Bearer nsk_c")], "nsk_c"),
    ([("authorization", "Basic abc")], None),
    ([("authorization", "Bearer ")], None),
    ([("x-other", "Bearer nsk_a")], None),
    ([], None),
])
def test_bearer_secret(metadata: list[tuple[str, str | bytes]], expected: str | None) -> None:
    assert bearer_secret(metadata) == expected


def test_authenticator_decisions() -> None:
    tokens = FakeTokens()
    _, station = tokens.create_token("s", "station")
    _, odd = tokens.create_token("o", "janitor")
    auth = Authenticator(tokens)
    enroll, delete = "/nasname.v1.Nasname/Enroll", "/nasname.v1.Nasname/Delete"
    assert auth.check("/grpc.health.v1.Health/Check", []) is None
    principal = auth.check(enroll, [("authorization", f"Bearer {station}")])
    assert principal is not None and principal.role is Role.STATION
    with pytest.raises(Unauthenticated) as e1:
        auth.check(enroll, [])
    assert e1.value.reason == "MISSING_TOKEN"
    with pytest.raises(Unauthenticated) as e2:
        auth.check(enroll, [("authorization", "Bearer nsk_wrong")])
    assert e2.value.reason == "INVALID_TOKEN"
    with pytest.raises(PermissionDenied):
        auth.check(delete, [("authorization", f"Bearer {station}")])
    with pytest.raises(PermissionDenied) as e3:
        auth.check(enroll, [("authorization", f"Bearer {odd}")])
    assert e3.value.reason == "UNKNOWN_ROLE"
    with pytest.raises(PermissionDenied):  # not in the table: denied by default
        auth.check("/nasname.v1.Nasname/Secret", [("authorization", f"Bearer {station}")])


def test_revoked_token_is_refused() -> None:
    tokens = FakeTokens()
    token_id, secret = tokens.create_token("s", "admin")
    tokens.revoke_token(token_id)
    with pytest.raises(Unauthenticated):
        Authenticator(tokens).check("/nasname.v1.Nasname/Stats", [("authorization", f"Bearer {secret}")])


def test_rate_limiter_token_bucket() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # buckets are per token
    now[0] += 0.5  # one request's worth refilled
    assert limiter.allow("a") and not limiter.allow("a")
    now[0] += 100.0  # never more than the burst
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert all(RateLimiter(0.0, 1).allow("x") for _ in range(100))


def test_rate_limit_raises_resource_exhausted() -> None:
    tokens = FakeTokens()
    _, secret = tokens.create_token("s", "admin")
    auth = Authenticator(tokens, RateLimiter(rate=0.001, burst=1))
    md = [("authorization", f"Bearer {secret}")]
    auth.check("/nasname.v1.Nasname/Stats", md)
    with pytest.raises(ResourceExhausted) as exc:
        auth.check("/nasname.v1.Nasname/Stats", md)
    assert exc.value.reason == "RATE_LIMITED"
