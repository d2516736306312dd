"""Retries over a flaky link: the response to a write is lost after the commit, the client retries with
the same request id, and exactly one record exists (issue 18, item 11).

The loss is injected by an engine wrapper passed to the server through its constructor: the real
engine commits, then the wrapper fails the call (UNAVAILABLE) or stalls it past the client's deadline
(DEADLINE_EXCEEDED), as a cut connection would look to the station.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from engine.engine import Engine
from engine.errors import Unavailable
from engine.fusion import Fusion
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.app import create_server
from server.auth import Role
from tests.integration.test_service_support import Service, face, make_fusion, open_engine, unit

WRITES = ("enroll", "insert", "delete", "adjudicate")


class LosesResponses:
    """The real engine, but the next ``lose`` writes lose their response after committing."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.lose = 0
        self.stall = 0.0  # > 0: stall this long instead of failing (client deadline passes)
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._engine, name)
        if name not in WRITES:
            return target

        def write(*args: Any, **kw: Any) -> Any:
            result = target(*args, **kw)  # committed
            with self._lock:
                self.calls.append(name)
                lost, self.lose = self.lose > 0, max(0, self.lose - 1)
            if lost and self.stall:
                time.sleep(self.stall)
            elif lost:
                raise Unavailable("connection reset after the commit", reason="INJECTED")
            return result

        return write


@pytest.fixture(scope="module")
def fusion(tmp_path_factory: pytest.TempPathFactory) -> Fusion:
    return make_fusion(tmp_path_factory.mktemp("cal"))


@pytest.fixture
def flaky(tmp_path: Path, fusion: Fusion) -> Iterator[tuple[Service, LosesResponses]]:
    engine = open_engine(tmp_path / "data", fusion)
    wrapper = LosesResponses(engine)
    secrets = {role: engine.tokens.create_token(role.value, role.value)[1] for role in Role}
    server, port = create_server("127.0.0.1:0", cast(Engine, wrapper), tokens=engine.tokens)
    server.start()
    service = Service(engine, server, f"127.0.0.1:{port}", secrets)
    yield service, wrapper
    service.stop()


def _total(service: Service) -> int:
    return service.engine.stats().total


def test_enroll_retried_after_a_lost_response_makes_one_record(
        flaky: tuple[Service, LosesResponses]) -> None:
    service, wrapper = flaky
    station = service.client(Role.STATION, retries=3)
    v = unit(np.random.default_rng(1))
    wrapper.lose = 1
    r = station.enroll(face(v))  # server-generated reference id: the dangerous case
    assert wrapper.calls == ["enroll", "enroll"]
    assert r.outcome == pb.ENROLL_OUTCOME_ENROLLED and _total(service) == 1
    assert service.engine.get(r.reference_id).status.value == "active"
    # a new request (new id) of the same person is a suspected duplicate of that one record
    again = station.enroll(face(v))
    assert again.outcome == pb.ENROLL_OUTCOME_PENDING_ADJUDICATION
    assert [c.reference_id for c in again.candidates] == [r.reference_id]


def test_insert_with_caller_id_retried_gets_success_not_already_exists(
        flaky: tuple[Service, LosesResponses]) -> None:
    service, wrapper = flaky
    station = service.client(Role.STATION, retries=3)
    wrapper.lose = 1
    r = station.insert(face(unit(np.random.default_rng(2))), reference_id="R-1", request_id="st-7:0001")
    assert (r.reference_id, r.request_id) == ("R-1", "st-7:0001") and _total(service) == 1


def test_deadline_exceeded_is_retried_too(flaky: tuple[Service, LosesResponses]) -> None:
    service, wrapper = flaky
    station = service.client(Role.STATION, retries=3)
    station.timeout = 1.0
    wrapper.lose, wrapper.stall = 1, 2.0
    r = station.enroll(face(unit(np.random.default_rng(3))))
    assert r.outcome == pb.ENROLL_OUTCOME_ENROLLED and _total(service) == 1


def test_delete_and_adjudicate_retried(flaky: tuple[Service, LosesResponses]) -> None:
    service, wrapper = flaky
    station, admin = service.client(Role.STATION), service.client(Role.ADMIN, retries=3)
    v = unit(np.random.default_rng(4))
    first = station.enroll(face(v))
    pending = station.enroll(face(v))
    assert pending.outcome == pb.ENROLL_OUTCOME_PENDING_ADJUDICATION
    wrapper.lose = 1
    out = service.client(Role.ADJUDICATOR, retries=3).adjudicate(
        pending.reference_id, same=True, mate_reference_id=first.reference_id)
    assert out.record.status == pb.RECORD_STATUS_DELETED  # not FAILED_PRECONDITION on the retry
    wrapper.lose = 1
    assert admin.delete(first.reference_id).reference_id == first.reference_id  # not NOT_FOUND
    assert service.engine.stats().by_status.get("deleted") == 2
