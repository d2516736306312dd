"""Assembling and running the gRPC server.

    server, port = create_server("127.0.0.1:0", engine, tokens=engine.tokens)   # tests, embedding
    server.start(); ...; server.stop(grace=5)
    serve(config_path)                                                         # `nasname serve`

``create_server`` builds everything but the engine (which the caller owns and closes); ``serve`` owns the
process: configuration, logging, engine, first admin token, signals, graceful shutdown.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine.engine import Engine
from engine.ops.schedule import BackupScheduler, BackupSettings
from server._gen.nasname.v1 import nasname_pb2 as pb
from server._gen.nasname.v1 import nasname_pb2_grpc as pb_grpc
from server.auth import Authenticator, RateLimiter, Role, TokenChecker
from server.config import ServerConfig
from server.interceptor import Gate, ServiceInterceptor
from server.servicer import AdminServicer, NasnameServicer, TokenAdmin

__all__ = ["Server", "bootstrap_admin_token", "create_server", "serve"]

log = logging.getLogger(__name__)

BACKUP_HEALTH = "nasname.backup"  # health service name: SERVING while scheduled backups are on time

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["Nasname"].full_name,
    pb.DESCRIPTOR.services_by_name["Admin"].full_name,
)


class TokenStore(TokenChecker, TokenAdmin, Protocol):
    """Authentication plus management: what ``engine.tokens`` provides."""


class Server:
    """A configured gRPC server and the parts a graceful shutdown needs."""

    def __init__(self, grpc_server: grpc.Server, gate: Gate, health_servicer: health.HealthServicer,
                 config: ServerConfig, servicer: NasnameServicer) -> None:
        self.grpc = grpc_server
        self.gate = gate
        self.health = health_servicer
        self.config = config
        self.servicer = servicer

    def start(self) -> None:
        self.grpc.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting (new calls: UNAVAILABLE / SHUTTING_DOWN; health: NOT_SERVING), let in-flight
        calls finish for up to ``grace`` seconds, then cancel what is left. Blocks until done."""
        self.gate.close()
        self.health.enter_graceful_shutdown()
        self.grpc.stop(self.config.grace_s if grace is None else grace).wait()
        self.servicer.close()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(self.grpc.wait_for_termination(timeout))


def create_server(address: str, engine: Engine, *, tokens: TokenStore,
                  config: ServerConfig | None = None,
                  credentials: grpc.ServerCredentials | None = None,
                  backup: BackupSettings | None = None) -> tuple[Server, int]:
    """A server for ``engine`` bound to ``address`` (port 0: a free one), not started yet. Returns it
    and the bound port. ``credentials`` None binds without TLS: the caller (``serve``, tests) decides."""
    config = config or ServerConfig(address=address)
    gate = Gate()
    authenticator = Authenticator(tokens, RateLimiter(config.rate_limit, config.effective_rate_burst))
    interceptor = ServiceInterceptor(authenticator, max_message_bytes=config.max_message_bytes, gate=gate)
    # gRPC core rejects anything above the hard cap without a reason; between the configured limit and
    # the cap the interceptor answers RESOURCE_EXHAUSTED with reason MESSAGE_TOO_LARGE.
    hard_cap = 2 * config.max_message_bytes
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", hard_cap),
        ("grpc.max_send_message_length", hard_cap),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]
    grpc_server = grpc.server(
        ThreadPoolExecutor(max_workers=config.effective_workers, thread_name_prefix="nasname-rpc"),
        interceptors=[interceptor], options=options,
        maximum_concurrent_rpcs=config.effective_max_concurrent_rpcs)
    servicer = NasnameServicer(engine, max_batch_items=config.max_batch_items)
    pb_grpc.add_NasnameServicer_to_server(servicer, grpc_server)  # type: ignore[no-untyped-call]
    admin = AdminServicer(tokens, engine, backup)
    pb_grpc.add_AdminServicer_to_server(admin, grpc_server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    for name in SERVICE_NAMES:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if config.reflection:
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), grpc_server)
    if credentials is None:
        port = grpc_server.add_insecure_port(address)
    else:
        port = grpc_server.add_secure_port(address, credentials)
    if port == 0:
        from engine.errors import ConfigurationError

        raise ConfigurationError(f"cannot bind {address} (in use, or not a local address)")
    return Server(grpc_server, gate, health_servicer, config, servicer), port


def bootstrap_admin_token(tokens: TokenStore, out: TextIO = sys.stdout) -> str | None:
    """On a store without any token, create an admin token and print its secret once (to ``out``, never
    to the log). Returns the secret, or None when tokens already exist."""
    if tokens.list_tokens():
        return None
    token_id, secret = tokens.create_token("initial admin", Role.ADMIN.value, actor="system")
    out.write(
        "\nFirst start: created an admin API token (shown only this once, keep it safe):\n"
        f"  token id: {token_id}\n  secret:   {secret}\n"
        f"  export NASNAME_TOKEN={secret}\n\n")
    out.flush()
    return secret


def serve(config_path: Path | None = None, **overrides: Any) -> int:
    """Run until SIGTERM/SIGINT: open the engine (creating the data dir, key and store on a fresh
    machine), bind, serve; then drain in-flight calls and close the engine. Returns the exit code."""
    from engine.config import EngineConfig, load_toml
    from server.logs import setup_logging
    from server.tls import AUTO_CERT, server_credentials

    toml = load_toml(config_path)
    config = ServerConfig.load(toml, **overrides)
    setup_logging(config.log_format)
    engine_config = EngineConfig.load(config_path)
    backup = BackupSettings.from_toml(toml)
    credentials = server_credentials(config, engine_config.data_dir)  # config errors before opening
    engine = Engine.open(engine_config)
    scheduler: BackupScheduler | None = None
    try:
        engine.datadir.quick_check()  # a damaged database is refused, with the restore command
        tokens: TokenStore = engine.tokens
        bootstrap_admin_token(tokens)
        server, port = create_server(config.address, engine, tokens=tokens, config=config,
                                     credentials=credentials, backup=backup)
        health_of_backups = server.health

        def backups_on_time(ok: bool) -> None:  # health service "nasname.backup": overdue = NOT_SERVING
            health_of_backups.set(BACKUP_HEALTH, health_pb2.HealthCheckResponse.SERVING if ok
                                  else health_pb2.HealthCheckResponse.NOT_SERVING)

        scheduler = BackupScheduler(engine.gallery, engine_config, backup, on_result=backups_on_time)
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: shutting down (grace %.1f s)", signal.Signals(signum).name, config.grace_s)
            stopping.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        server.start()
        if backup.interval_s > 0:
            backups_on_time(scheduler.healthy())
            scheduler.start()
        host = config.host
        shown = f"[{host}]" if ":" in host else host
        log.info("listening on %s:%d (%s)", shown, port, "plaintext" if credentials is None else "TLS")
        print(f"nasname listening on {shown}:{port} ({'plaintext' if credentials is None else 'TLS'}), "
              f"data in {engine_config.data_dir}", flush=True)
        if credentials is not None and config.tls_cert is None:
            print(f"self-signed certificate for clients to trust: {engine_config.data_dir / AUTO_CERT}",
                  flush=True)
        try:
            stopping.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        server.stop()
        log.info("stopped; closing the engine")
    finally:
        if scheduler is not None:
            scheduler.stop()
        engine.close()
    return 0
