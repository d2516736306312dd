"""Server behaviour around the calls: size limits, deadlines, rate limits, graceful shutdown, TLS, logs."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import grpc
import pytest

from server.app import bootstrap_admin_token, create_server
from server.auth import Role
from server.client import Client, error_reason, image_sample
from server.config import ServerConfig
from server.tls import make_self_signed, server_credentials
from tests.unit.server.conftest import Running, start
from tests.unit.server.fakes import FakeEngine, FakeTokens

SC = grpc.StatusCode


def test_oversized_message_has_a_reason_and_hard_cap() -> None:
    r = start(ServerConfig(address="127.0.0.1:0", allow_plaintext=True, max_message_bytes=64 * 1024))
    try:
        c = r.client(Role.STATION)
        assert c.enroll([image_sample("face", b"x" * 60_000)]).reference_id  # under the limit
        with pytest.raises(grpc.RpcError) as soft:
            c.enroll([image_sample("face", b"x" * 100_000)])
        assert soft.value.code() == SC.RESOURCE_EXHAUSTED and error_reason(soft.value) == "MESSAGE_TOO_LARGE"
        with pytest.raises(grpc.RpcError) as hard:  # above 2x the limit: gRPC core refuses, no reason
            c.enroll([image_sample("face", b"x" * 200_000)])
        assert hard.value.code() == SC.RESOURCE_EXHAUSTED
        assert len(r.engine.calls) == 1
    finally:
        r.server.stop(0)


def test_rate_limit_per_token() -> None:
    r = start(ServerConfig(address="127.0.0.1:0", allow_plaintext=True, rate_limit=0.01, rate_burst=2))
    try:
        c = r.client(Role.INVESTIGATOR)
        c.stats()
        c.stats()
        with pytest.raises(grpc.RpcError) as exc:
            c.stats()
        assert exc.value.code() == SC.RESOURCE_EXHAUSTED and error_reason(exc.value) == "RATE_LIMITED"
        r.client(Role.ADMIN).stats()  # another token has its own bucket
    finally:
        r.server.stop(0)


def test_deadline_is_reported(fresh: Running) -> None:
    fresh.engine.delay = 0.5
    with pytest.raises(grpc.RpcError) as exc:
        fresh.client(Role.INVESTIGATOR).stats(timeout=0.1)
    assert exc.value.code() == SC.DEADLINE_EXCEEDED


def test_graceful_shutdown_drains_in_flight_and_refuses_new() -> None:
    r = start()
    r.engine.delay = 0.6
    c = r.client(Role.STATION)
    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(c.enroll([image_sample("face", b"x")],
                                                                reference_id="R-slow")))
    t.start()
    time.sleep(0.2)  # the enroll is in flight
    stopper = threading.Thread(target=r.server.stop, args=(5.0,))
    stopper.start()
    time.sleep(0.1)
    with pytest.raises(grpc.RpcError) as refused:
        Client(r.address, token=r.secrets[Role.STATION], plaintext=True, retries=0).stats(timeout=2)
    assert refused.value.code() == SC.UNAVAILABLE
    t.join(5)
    stopper.join(10)
    assert len(results) == 1 and results[0].reference_id == "R-slow"  # type: ignore[attr-defined]


def test_one_log_line_per_rpc_without_personal_data(fresh: Running, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="server.rpc"):
        fresh.client(Role.STATION).enroll([image_sample("face", b"JPEGBYTES")], reference_id="R-person",
                                          attributes={"name": "Alice"}, request_id="req-42")
    [rec] = [r for r in caplog.records if r.name == "server.rpc"]
    assert (rec.rpc, rec.code, rec.request_id, rec.token_id) == ("Enroll", "OK", "req-42", "tok_1")  # type: ignore[attr-defined]
    text = rec.getMessage()
    assert "Alice" not in text and "R-person" not in text and "JPEGBYTES" not in text


def test_bootstrap_admin_token_only_on_empty_store() -> None:
    import io

    tokens = FakeTokens()
    out = io.StringIO()
    secret = bootstrap_admin_token(tokens, out)  # type: ignore[arg-type]
    assert secret and secret in out.getvalue()
    [info] = tokens.list_tokens()
    assert info.role == "admin"
    assert bootstrap_admin_token(tokens, io.StringIO()) is None  # type: ignore[arg-type]


def _tls_server(tmp_path: Path, client_ca: Path | None = None) -> tuple[Running, bytes]:
    cfg = ServerConfig(address="127.0.0.1:0", tls_client_ca=client_ca)
    creds = server_credentials(cfg, tmp_path)  # auto_tls: self-signed in tmp_path/tls
    engine, tokens = FakeEngine(), FakeTokens()
    secrets = {role: tokens.create_token(role.value, role.value)[1] for role in Role}
    server, port = create_server("127.0.0.1:0", engine, tokens=tokens, config=cfg,  # type: ignore[arg-type]
                                 credentials=creds)
    server.start()
    running = Running(server, f"127.0.0.1:{port}", engine, tokens, secrets)
    return running, (tmp_path / "tls/server.crt").read_bytes()


def test_tls_with_auto_certificate(tmp_path: Path) -> None:
    r, cert = _tls_server(tmp_path)
    try:
        assert (tmp_path / "tls/server.key").stat().st_mode & 0o077 == 0
        ok = Client(r.address, token=r.secrets[Role.ADMIN], ca=cert)
        assert ok.stats().total == 3
        with pytest.raises(grpc.RpcError) as plain:  # plaintext client against a TLS server
            Client(r.address, token=r.secrets[Role.ADMIN], plaintext=True, retries=0).stats(timeout=2)
        assert plain.value.code() == SC.UNAVAILABLE
        other_ca, _ = make_self_signed(["localhost"])
        with pytest.raises(grpc.RpcError) as untrusted:
            Client(r.address, token=r.secrets[Role.ADMIN], ca=other_ca, retries=0).stats(timeout=2)
        assert untrusted.value.code() == SC.UNAVAILABLE
    finally:
        r.server.stop(0)


def test_mutual_tls(tmp_path: Path) -> None:
    client_cert, client_key = make_self_signed(["station-1"])
    ca_path = tmp_path / "clients.pem"
    ca_path.write_bytes(client_cert)
    r, cert = _tls_server(tmp_path, client_ca=ca_path)
    try:
        ok = Client(r.address, token=r.secrets[Role.ADMIN], ca=cert, client_cert=client_cert,
                    client_key=client_key)
        assert ok.stats().total == 3
        with pytest.raises(grpc.RpcError) as no_cert:
            Client(r.address, token=r.secrets[Role.ADMIN], ca=cert, retries=0).stats(timeout=2)
        assert no_cert.value.code() == SC.UNAVAILABLE
    finally:
        r.server.stop(0)


def test_batch_identify_interactive_client_and_size_limit() -> None:
    import queue

    r = start(ServerConfig(address="127.0.0.1:0", allow_plaintext=True, max_batch_items=3))
    try:
        c = r.client(Role.INVESTIGATOR)
        outbox: queue.Queue[object] = queue.Queue()

        def requests():  # type: ignore[no-untyped-def]
            while (item := outbox.get()) is not None:
                yield item

        replies = c.batch_identify(requests())
        for i in range(3):  # one probe at a time, each answered before the next is sent
            outbox.put(c.identify_request([image_sample("face", b"x")], request_id=f"q{i}"))
            assert next(replies).request_id == f"q{i}"
        outbox.put(c.identify_request([image_sample("face", b"x")], request_id="q3"))
        with pytest.raises(grpc.RpcError) as exc:
            next(replies)
        assert exc.value.code() == SC.RESOURCE_EXHAUSTED and error_reason(exc.value) == "BATCH_TOO_LARGE"
        outbox.put(None)
    finally:
        r.server.stop(0)


def test_batch_identify_searches_concurrently_and_keeps_order(fresh: Running) -> None:
    fresh.engine.delay = 0.2
    fresh.engine.max_active = 0
    c = fresh.client(Role.INVESTIGATOR)
    reqs = [c.identify_request([image_sample("face", b"x")], request_id=f"b{i}") for i in range(8)]
    out = [o.request_id for o in c.batch_identify(reqs)]
    assert out == [f"b{i}" for i in range(8)]
    assert fresh.engine.max_active > 1  # probes of one stream were searched concurrently
