"""Server settings: the ``[server]`` section of the nasname TOML file plus ``NASNAME_SERVER_*`` overrides.

    [server]                          # every key optional; defaults below
    address = "127.0.0.1:50051"       # host:port; port 0 picks a free port
    tls_cert = "/etc/nasname/server.crt"   # PEM chain; with tls_key. Neither: see auto_tls
    tls_key = "/etc/nasname/server.key"
    tls_client_ca = ""                # PEM CA: when set, clients must present a certificate it signed
    auto_tls = true                   # no cert configured: self-signed one in <data_dir>/tls/
    tls_hosts = ["nasname.camp-a", "10.0.0.5"]   # extra names/IPs of the self-signed certificate
    allow_plaintext = false           # honoured only when the address is a loopback address
    max_message_bytes = 0             # larger requests: RESOURCE_EXHAUSTED / MESSAGE_TOO_LARGE;
                                      # 0 = three images at the image size limit, plus 1 MiB
    workers = 0                       # RPC worker threads for unary calls; 0 = sized for the machine
    max_concurrent_rpcs = 0           # beyond this, RESOURCE_EXHAUSTED; 0 = 16 x workers
    max_streams = 0                   # open streaming calls (own threads); 0 = workers
    max_streams_per_caller = 4        # open streaming calls per token
    stream_idle_s = 60.0              # a request stream silent this long is ended
    max_batch_items = 10000           # probes per BatchIdentify stream
    rate_limit = 0.0                  # requests per second per token (0 = off)
    rate_burst = 0                    # bucket size (0 = 2 x rate_limit, at least 1)
    auth_failure_rate = 2.0           # failed authentications per second per peer address (0 = off)
    auth_failure_burst = 30           # ... after a burst of this many
    reflection = true                 # server reflection, for authenticated callers only
    grace_s = 10.0                    # drain time for in-flight RPCs on shutdown
    log_format = "json"               # json | text

Environment: ``NASNAME_SERVER_<KEY>`` (e.g. ``NASNAME_SERVER_ADDRESS=0.0.0.0:50051``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import settings_kwargs
from engine.cpus import threads
from engine.errors import ConfigurationError
from engine.imageio import ImageLimits

__all__ = ["ServerConfig", "default_workers", "is_loopback", "section_values", "split_address"]


def default_workers() -> int:
    """Threads for unary RPC handlers: 16 per available CPU, within [8, 64].

    Why so many: an identify handler spends its time waiting for the face index's micro-batch
    (engine.index.batcher), and a batch can only hold the identifies whose handlers are in flight.
    With 4 per CPU (8 here) 32 stations were served in batches of at most 8; with 32 handlers,
    measured in one session at 100k on the shared 2-core box (`benchmarks/load.py --clients 32
    --server-pid`), 343 vs 230 identifies/s and 2.5 vs 3.9 server CPU-ms per call. CPU-bound image
    extraction is limited to one per CPU inside the engine, so the extra threads only wait."""
    return max(8, min(64, 16 * threads()))


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[::1]:port"`` -> (host without brackets, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ConfigurationError(f"server address {address!r} must be host:port")
    try:
        number = int(port)
    except ValueError:
        raise ConfigurationError(f"server address {address!r}: port is not a number") from None
    if not 0 <= number <= 65535:
        raise ConfigurationError(f"server address {address!r}: port out of range")
    return host.strip("[]"), number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    address: str = "127.0.0.1:50051"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auto_tls: bool = True
    tls_hosts: tuple[str, ...] = ()
    allow_plaintext: bool = False
    max_message_bytes: int = 0
    workers: int = 0
    max_concurrent_rpcs: int = 0
    max_streams: int = 0
    max_streams_per_caller: int = 4
    stream_idle_s: float = 60.0
    max_batch_items: int = 10_000
    rate_limit: float = 0.0
    rate_burst: int = 0
    auth_failure_rate: float = 2.0
    auth_failure_burst: int = 30
    reflection: bool = True
    grace_s: float = 10.0
    log_format: str = "json"

    def __post_init__(self) -> None:
        split_address(self.address)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError("tls_cert and tls_key must be given together")
        if self.tls_client_ca is not None and self.tls_cert is None and not self.auto_tls:
            raise ConfigurationError("tls_client_ca needs TLS (tls_cert/tls_key or auto_tls)")
        if self.max_message_bytes and self.max_message_bytes < 1024:
            raise ConfigurationError("max_message_bytes must be at least 1024")
        for name in ("workers", "max_concurrent_rpcs", "rate_burst", "max_batch_items", "max_streams",
                     "max_message_bytes", "auth_failure_burst"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must not be negative")
        if self.max_streams_per_caller < 1:
            raise ConfigurationError("max_streams_per_caller must be at least 1")
        if self.rate_limit < 0 or self.grace_s < 0 or self.auth_failure_rate < 0:
            raise ConfigurationError("rate_limit, auth_failure_rate and grace_s must not be negative")
        if not self.stream_idle_s > 0:
            raise ConfigurationError("stream_idle_s must be positive")
        if self.log_format not in {"json", "text"}:
            raise ConfigurationError("log_format must be 'json' or 'text'")

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def effective_workers(self) -> int:
        return self.workers or default_workers()

    @property
    def effective_max_message_bytes(self) -> int:
        """The largest legitimate request is an enroll with three images at the image size limit;
        1 MiB more covers templates, attributes and framing. Larger requests are refused."""
        return self.max_message_bytes or 3 * ImageLimits().max_bytes + 1024 * 1024

    @property
    def effective_max_streams(self) -> int:
        return self.max_streams or self.effective_workers

    @property
    def effective_max_concurrent_rpcs(self) -> int:
        return self.max_concurrent_rpcs or 16 * self.effective_workers

    @property
    def effective_rate_burst(self) -> int:
        return self.rate_burst or max(1, int(2 * self.rate_limit))

    @property
    def plaintext(self) -> bool:
        """True when the server listens without TLS: only when allowed, on loopback, with no cert.
        Raises ConfigurationError when plaintext is allowed on a non-loopback address."""
        if self.tls_cert is not None:
            return False
        if self.allow_plaintext:
            if not is_loopback(self.host):
                raise ConfigurationError(
                    f"allow_plaintext is honoured on loopback addresses only, not {self.address}; "
                    "configure tls_cert/tls_key (or auto_tls) for a network address")
            return True
        if not self.auto_tls:
            raise ConfigurationError("no TLS certificate configured, auto_tls is off and plaintext "
                                     "is not allowed")
        return False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ServerConfig:
        return cls(**settings_kwargs(cls, values, "server"))

    @classmethod
    def load(cls, toml: Mapping[str, Any], environ: Mapping[str, str] | None = None,
             **overrides: Any) -> ServerConfig:
        """``toml`` is the whole parsed file (``engine.config.load_toml``); then the environment, then
        explicit overrides (command-line options; ``None`` values are ignored)."""
        return cls.from_mapping(section_values(cls, toml, "server", environ, overrides))


def section_values(cls: Any, toml: Mapping[str, Any], section: str, environ: Mapping[str, str] | None,
                   overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Raw settings of the dataclass ``cls`` from the TOML table ``[section]``, then the environment
    (``NASNAME_<SECTION>_<KEY>``), then explicit overrides (``None`` values ignored)."""
    table = toml.get(section, {})
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"[{section}] must be a table")
    values = dict(table)
    env = os.environ if environ is None else environ
    for f in dataclasses.fields(cls):
        raw = env.get(f"NASNAME_{section.upper()}_{f.name.upper()}")
        if raw is not None:
            values[f.name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values
