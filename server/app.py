"""Assembling and running the gRPC server.

    server, port = create_server("127.0.0.1:0", engine, tokens=engine.tokens)   # tests, embedding
    server.start(); ...; server.stop(grace=5)
    serve(config_path)                                                         # `nasname serve`

``create_server`` builds everything but the engine (which the caller owns and closes); ``serve`` owns the
process: configuration, logging, engine, first admin token, signals, graceful shutdown.
"""

from __future__ import annotations

import functools
import logging
import signal
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
from engine.store.idempotency import DEFAULT_RETENTION_S
from server._gen.nasname.v1 import nasname_pb2 as pb
from server._gen.nasname.v1 import nasname_pb2_grpc as pb_grpc
from server.auth import Authenticator, RateLimiter, Role, TokenChecker
from server.calls import CallRegistry
from server.config import ServerConfig
from server.interceptor import Gate, ServiceInterceptor
from server.memory import Trimmer, fix_mmap_threshold
from server.servicer import AdminServicer, NasnameServicer, TokenAdmin

__all__ = ["Server", "bootstrap_admin_token", "create_server", "serve"]

log = logging.getLogger(__name__)

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
                  credentials: grpc.ServerCredentials | None = None) -> tuple[Server, int]:
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
    admin = AdminServicer(tokens, retention_s=retention, on_revoke=calls.revoke)
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
    pools = (stream_pool, health_pool)
    return Server(grpc_server, gate, health_servicer, config, servicer, calls, pools, trimmer), port


def _active_tokens(tokens: TokenStore, ids: set[str]) -> set[str]:
    """Which of ``ids`` are active tokens (the call watchdog's look for revocations)."""
    return {t.token_id for t in tokens.list_tokens() if t.token_id in ids and t.revoked is None}


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


def start_web(engine: Engine, server: Server, web: Any, cert: Path, key: Path, started: float) -> Any:
    """The console (``server.web``) on its own port with the service's TLS certificate, running."""
    from server.web.app import create_app
    from server.web.serving import WebServer

    app = create_app(engine, web, dedup=server.servicer.dedup, started=started)
    console = WebServer(app, web.host, web.port, cert, key)
    console.start()
    return console


def serve(config_path: Path | None = None, web_overrides: dict[str, Any] | None = None,
          **overrides: Any) -> int:
    """Run until SIGTERM/SIGINT: open the engine (creating the data dir, key and store on a fresh
    machine), bind, serve; then drain in-flight calls and close the engine. Returns the exit code."""
    from engine.config import EngineConfig, load_toml
    from server.logs import setup_logging
    from server.metrics import observe_extraction
    from server.tls import AUTO_CERT, ensure_self_signed, server_credentials
    from server.web.config import WebConfig

    toml = load_toml(config_path)
    config = ServerConfig.load(toml, **overrides)
    web = WebConfig.load(toml, **(web_overrides or {}))
    setup_logging(config.log_format)
    fix_mmap_threshold()  # server.memory: large request buffers go back to the system
    engine_config = EngineConfig.load(config_path)
    credentials = server_credentials(config, engine_config.data_dir)  # config errors before opening
    engine = Engine.open(engine_config)
    try:
        tokens: TokenStore = engine.tokens
        bootstrap_admin_token(tokens)
        engine.on_extraction(observe_extraction)
        server, port = create_server(config.address, engine, tokens=tokens, config=config,
                                     credentials=credentials)
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
                console = start_web(engine, server, web, cert, key, time.time())
            except BaseException:
                server.stop(0)
                raise
            print(f"web console on {console.url}", flush=True)
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
        if console is not None:
            console.stop()
        server.stop()
        log.info("stopped; closing the engine")
    except BaseException:
        _close_engine(engine, engine_config.data_dir)
        raise
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
