"""Assembling and running the gRPC server.

    server, port = create_server("127.0.0.1:0", engine, tokens=engine.tokens)   # tests, embedding
    server.start(); ...; server.stop(grace=5)
    serve(config_path)                                                         # `nasname serve`

``create_server`` builds everything but the engine (which the caller owns and closes); ``serve`` owns the
process: configuration, logging, engine, first admin token, signals, graceful shutdown.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine.engine import Engine
from engine.errors import ConfigurationError, Unavailable
from engine.ops.schedule import BackupScheduler, BackupSettings
from engine.store.idempotency import DEFAULT_RETENTION_S
from engine.store.locks import DirectoryLock
from server._gen.nasname.v1 import nasname_pb2 as pb
from server._gen.nasname.v1 import nasname_pb2_grpc as pb_grpc
from server.auth import Authenticator, RateLimiter, Role, TokenChecker
from server.calls import CallRegistry
from server.config import ServerConfig, split_address
from server.interceptor import Gate, ServiceInterceptor
from server.memory import Trimmer, fix_mmap_threshold
from server.servicer import AdminServicer, NasnameServicer, TokenAdmin

__all__ = ["Server", "bootstrap_admin_token", "create_server", "preflight", "serve"]

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
                 config: ServerConfig, servicer: NasnameServicer, calls: CallRegistry | None = None,
                 pools: tuple[ThreadPoolExecutor, ...] = (), trimmer: Trimmer | None = None) -> None:
        self.grpc = grpc_server
        self.gate = gate
        self.health = health_servicer
        self.config = config
        self.servicer = servicer
        self.calls = calls or CallRegistry()
        self.pools = pools
        self.trimmer = trimmer or Trimmer()

    def start(self) -> None:
        self.grpc.start()
        self.calls.start()
        self.trimmer.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting (new calls: UNAVAILABLE / SHUTTING_DOWN; health: NOT_SERVING), let in-flight
        calls finish for up to ``grace`` seconds, then cancel what is left. Blocks until done."""
        self.gate.close()
        self.health.enter_graceful_shutdown()
        self.grpc.stop(self.config.grace_s if grace is None else grace).wait()
        self.calls.stop()
        self.trimmer.stop()
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)
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
    authenticator = Authenticator(tokens, RateLimiter(config.rate_limit, config.effective_rate_burst),
                                  failures=RateLimiter(config.auth_failure_rate, config.auth_failure_burst))
    calls = CallRegistry(max_streams=config.effective_max_streams,
                         max_per_caller=config.max_streams_per_caller, idle_s=config.stream_idle_s,
                         active_tokens=functools.partial(_active_tokens, tokens))
    # Streams and health checks get threads of their own (server.interceptor): idle streams cannot
    # take the threads unary calls need, and nothing can keep health from answering.
    stream_pool = ThreadPoolExecutor(max_workers=config.effective_max_streams,
                                     thread_name_prefix="nasname-stream")
    health_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nasname-health")
    limit = config.effective_max_message_bytes
    trimmer = Trimmer()
    interceptor = ServiceInterceptor(authenticator, max_message_bytes=limit, gate=gate, calls=calls,
                                     stream_pool=stream_pool, health_pool=health_pool,
                                     on_received=trimmer.received)
    # gRPC core rejects anything above the hard cap without a reason; between the configured limit and
    # the cap the interceptor answers RESOURCE_EXHAUSTED with reason MESSAGE_TOO_LARGE.
    hard_cap = limit + 1024 * 1024
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
    # (an engine without configuration, e.g. a test fake: the default window)
    retention = getattr(getattr(engine, "config", None), "idempotency_retention_s", DEFAULT_RETENTION_S)
    admin = AdminServicer(tokens, engine, backup, retention_s=retention, on_revoke=calls.revoke)
    pb_grpc.add_AdminServicer_to_server(admin, grpc_server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    for name in SERVICE_NAMES:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if config.reflection:
        _serve_reflection(grpc_server)
    try:
        if credentials is None:
            port = grpc_server.add_insecure_port(address)
        else:
            port = grpc_server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises instead of returning 0 on some versions
        port = 0
    if port == 0:
        raise ConfigurationError(f"cannot bind {address} (in use, or not a local address); choose "
                                 "another with --address")
    pools = (stream_pool, health_pool)
    return Server(grpc_server, gate, health_servicer, config, servicer, calls, pools, trimmer), port


def _active_tokens(tokens: TokenStore, ids: set[str]) -> set[str]:
    """Which of ``ids`` are active tokens (the call watchdog's look for revocations)."""
    return {t.token_id for t in tokens.list_tokens() if t.token_id in ids and t.revoked is None}


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _serve_reflection(grpc_server: grpc.Server) -> None:
    """Server reflection under both names generic clients ask for: grpcio-reflection implements only
    ``v1alpha``; ``v1`` has the same messages on the wire, so the same servicer answers it."""
    names = (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.ReflectionServicer(names)
    reflection.enable_server_reflection(names, grpc_server)
    from grpc_reflection.v1alpha import reflection_pb2 as rpb

    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo, request_deserializer=rpb.ServerReflectionRequest.FromString,
        response_serializer=rpb.ServerReflectionResponse.SerializeToString)
    grpc_server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),))


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


def bootstrap_admin_user(users: Any, out: TextIO = sys.stdout) -> str | None:
    """On a store without console accounts, create user ``admin`` (role admin) and print its password
    once (to ``out``, never to the log). Returns the password, or None when accounts exist."""
    import secrets

    if users.list_users():
        return None
    password = secrets.token_urlsafe(15)
    users.create_user("admin", Role.ADMIN.value, password, actor="system")
    out.write("First start: created the web console account 'admin' (password shown only this once; "
              f"change it with `nasname user reset admin`):\n  password: {password}\n\n")
    out.flush()
    return password


def start_web(engine: Engine, server: Server, web: Any, cert: Path, key: Path, started: float,
              backup: BackupSettings | None = None) -> Any:
    """The console (``server.web``) on its own port with the service's TLS certificate, running."""
    from server.web.app import create_app
    from server.web.serving import WebServer

    app = create_app(engine, web, dedup=server.servicer.dedup, started=started, backup=backup)
    console = WebServer(app, web.host, web.port, cert, key)
    console.start()
    return console


def preflight(config: ServerConfig, data_dir: Path) -> list[str]:
    """The mistakes that would stop ``serve``, found without creating anything: each one line with
    its fix. Checks the configuration, the port, the data directory (writable, not in use) and TLS
    files."""
    problems: list[str] = []
    try:
        plaintext = config.plaintext
    except ConfigurationError as exc:
        problems.append(f"{exc}")
        plaintext = False
    host, port = split_address(config.address)
    if port:
        problem = _port_problem(host, port)
        if problem:
            problems.append(problem)
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"data directory {data_dir} cannot be created or written ({existing} is not a "
                        "writable directory); choose another with --data-dir or NASNAME_DATA_DIR")
    elif existing == data_dir and (data_dir / "LOCK").exists():
        try:
            DirectoryLock(data_dir).release()
        except Unavailable:
            problems.append(f"data directory {data_dir} is in use by another nasname process (a running "
                            "server?); stop it, or give this one another --data-dir")
    if not plaintext:
        for what, path in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key),
                           ("--tls-client-ca", config.tls_client_ca)):
            if path is not None and not os.access(path, os.R_OK):
                problems.append(f"{what} {path} cannot be read; give the right file")
    return problems


def _port_problem(host: str, port: int) -> str:
    """Try to bind ``host:port`` the way gRPC will (a test socket, closed at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        shown = f"[{host}]" if ":" in host else host
        if exc.errno == errno.EADDRINUSE:
            return (f"port {port} on {shown} is in use (another nasname serve?); stop that process or "
                    f"choose a free port with --address {shown}:PORT")
        return f"cannot listen on {shown}:{port} ({exc.strerror}); give a local address with --address"
    return ""


def serve(config_path: Path | None = None, web_overrides: dict[str, Any] | None = None,
          **overrides: Any) -> int:
    """Run until SIGTERM/SIGINT: open the engine (creating the data dir, key and store on a fresh
    machine), bind, serve; then drain in-flight calls and close the engine. Returns the exit code."""
    from engine.config import EngineConfig, load_toml
    from server.logs import setup_logging
    from server.metrics import observe_extraction
    from server.tls import AUTO_CERT, ensure_self_signed, server_credentials
    from server.web.config import WebConfig

    try:
        toml = load_toml(config_path)
        config = ServerConfig.load(toml, **overrides)
        web = WebConfig.load(toml, **(web_overrides or {}))
        engine_config = EngineConfig.load(config_path)
    except ConfigurationError as exc:
        print(f"nasname serve: {exc}; fix the option, the NASNAME_* variable or the config file",
              file=sys.stderr)
        return 2
    problems = preflight(config, engine_config.data_dir)
    if problems:  # before anything is created: no data directory, key, certificate or token yet
        for line in problems:
            print(f"nasname serve: {line}", file=sys.stderr)
        return 2
    setup_logging(config.log_format)
    fix_mmap_threshold()  # server.memory: large request buffers go back to the system
    backup = BackupSettings.from_toml(toml)
    credentials = server_credentials(config, engine_config.data_dir)
    engine = Engine.open(engine_config)
    scheduler: BackupScheduler | None = None
    try:
        engine.datadir.quick_check()  # a damaged database is refused, with the restore command
        tokens: TokenStore = engine.tokens
        bootstrap_admin_token(tokens)
        engine.on_extraction(observe_extraction)
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
        console = None
        if web.enabled:
            bootstrap_admin_user(engine.gallery.store)
            cert, key = ((config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key
                         else ensure_self_signed(engine_config.data_dir, web.host))
            try:
                console = start_web(engine, server, web, cert, key, time.time(), backup)
            except BaseException:
                server.stop(0)
                raise
            print(f"web console on {console.url}", flush=True)
        if backup.interval_s > 0:
            backups_on_time(scheduler.healthy())
            scheduler.start()
        host = config.host
        shown = f"[{host}]" if ":" in host else host
        log.info("listening on %s:%d (%s)", shown, port, "plaintext" if credentials is None else "TLS")
        print(f"nasname listening on {shown}:{port} ({'plaintext' if credentials is None else 'TLS'}), "
              f"data in {engine_config.data_dir}", flush=True)
        if credentials is not None and config.tls_cert is None:
            cert = engine_config.data_dir / AUTO_CERT
            print(f"self-signed certificate for clients to trust: {cert}\n"
                  f"  stations: copy it, then `nasname login --address HOST:{port} --ca server.crt "
                  "--token T`",
                  flush=True)
        try:
            stopping.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if console is not None:
            console.stop()
        server.stop()
        log.info("stopped; closing the engine")
    except BaseException:
        if scheduler is not None:
            scheduler.stop()
        _close_engine(engine, engine_config.data_dir)
        raise
    scheduler.stop()  # before the engine closes: a running backup finishes or is abandoned cleanly
    return _close_engine(engine, engine_config.data_dir)


def _close_engine(engine: Engine, data_dir: Path) -> int:
    """Close the engine (index snapshot, WAL checkpoint). A failure here, typically a full disk, loses
    nothing: every acknowledged write is committed in the database, and the indexes are rebuilt from
    it at the next start. So it gets a clear message and exit code 1, not a traceback."""
    from engine.errors import NasnameError

    try:
        engine.close()
    except (OSError, RuntimeError, NasnameError) as exc:  # faiss reports write errors as RuntimeError
        log.error("closing the engine failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        print(f"nasname: could not save the index snapshot at shutdown ({exc}).\n"
              "No acknowledged write is lost: the database holds them all, and the indexes are rebuilt "
              f"from it at the next start (slower). Check free space and permissions in {data_dir}.",
              file=sys.stderr, flush=True)
        return 1
    return 0
