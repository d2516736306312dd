"""A real gRPC server on 127.0.0.1:0 around a fake engine, with one token per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from server.app import Server, create_server
from server.auth import Role
from server.client import Client
from server.config import ServerConfig
from tests.unit.server.fakes import THRESHOLD, FakeEngine, FakeTokens


@dataclass
class Running:
    server: Server
    address: str
    engine: FakeEngine
    tokens: FakeTokens
    secrets: dict[Role, str]

    def client(self, role: Role | None = None, **kw: object) -> Client:
        token = self.secrets[role] if role is not None else None
        return Client(self.address, token=token, plaintext=True, timeout=10.0, **kw)  # type: ignore[arg-type]


def start(config: ServerConfig | None = None) -> Running:
    engine, tokens = FakeEngine(), FakeTokens()
    secrets = {role: tokens.create_token(f"{role.value} test", role.value)[1] for role in Role}
    # the failed-authentication limit is off here: the auth matrix fails on purpose, many times
    config = config or ServerConfig(address="127.0.0.1:0", allow_plaintext=True, auth_failure_rate=0.0)
    server, port = create_server("127.0.0.1:0", engine, tokens=tokens, config=config)  # type: ignore[arg-type]
    server.start()
    return Running(server, f"127.0.0.1:{port}", engine, tokens, secrets)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    r = start()
    yield r
    r.server.stop(0)


@pytest.fixture
def fresh(running: Running) -> Running:
    running.engine.fail = None
    running.engine.fail_times = 0
    running.engine.delay = 0.0
    running.engine.threshold = THRESHOLD
    running.engine.calls.clear()
    return running
