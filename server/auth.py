"""Who may call what: bearer-token authentication, THE table of RPC -> roles, and a per-token rate limit.

A caller sends ``authorization: Bearer <secret>`` metadata. The secret is looked up (by hash) in the
token store; the token's role must be in :data:`RPC_ROLES` for the method called. Health checks need no
token (load balancers and orchestrators probe them); server reflection needs a token of any role (it
reveals only the public contract, but an anonymous scanner learns nothing from us); a method missing
from the table is refused to everyone (deny by default).

Failed authentication is rate-limited per peer address (a token bucket charged only by failures): past
the burst, a peer's calls are refused with RESOURCE_EXHAUSTED / AUTH_RATE_LIMITED before any token is
looked up, so nobody can try thousands of secrets a second. Callers behind one NAT share the bucket; a
station with a wrong token slows only guesses, a right token still needs the bucket not to be empty.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from engine.errors import PermissionDenied, ResourceExhausted, Unauthenticated

__all__ = [
    "ANY_ROLE",
    "IMAGE_ROLES",
    "PUBLIC_METHODS",
    "RPC_ROLES",
    "Authenticator",
    "Principal",
    "RateLimiter",
    "Role",
    "TokenChecker",
    "TokenFacts",
    "bearer_secret",
    "caller_key",
    "may_see_images",
    "peer_host",
]

log = logging.getLogger(__name__)


class Role(StrEnum):
    STATION = "station"  # registration station: enroll, insert, verify, identify
    INVESTIGATOR = "investigator"  # fraud investigation: identify, batch, records, queue, stats
    ADJUDICATOR = "adjudicator"  # decides suspected duplicates
    ADMIN = "admin"  # everything, incl. delete and tokens


_S, _I, _J, _A = Role.STATION, Role.INVESTIGATOR, Role.ADJUDICATOR, Role.ADMIN
ANY_ROLE = frozenset(Role)

_NASNAME = "/nasname.v1.Nasname/"
_ADMIN = "/nasname.v1.Admin/"

# THE table. Full gRPC method name -> roles allowed to call it.
RPC_ROLES: dict[str, frozenset[Role]] = {
    _NASNAME + "Enroll": frozenset({_S, _A}),
    _NASNAME + "Insert": frozenset({_S, _A}),
    _NASNAME + "Verify": frozenset({_S, _A}),
    _NASNAME + "Identify": frozenset({_S, _I, _A}),
    _NASNAME + "BatchIdentify": frozenset({_I, _A}),
    _NASNAME + "GetRecord": frozenset({_I, _A}),
    _NASNAME + "ListPendingAdjudications": frozenset({_I, _J, _A}),
    _NASNAME + "Adjudicate": frozenset({_J, _A}),
    _NASNAME + "Stats": frozenset({_I, _A}),
    _NASNAME + "Delete": frozenset({_A}),
    _NASNAME + "StartDedup": frozenset({_I, _A}),
    _NASNAME + "WatchDedup": frozenset({_I, _A}),
    _NASNAME + "GetDedup": frozenset({_I, _A}),
    _NASNAME + "CancelDedup": frozenset({_I, _A}),
    _NASNAME + "ResumeDedup": frozenset({_I, _A}),
    _NASNAME + "GetDedupResult": frozenset({_I, _A}),
    _NASNAME + "FetchDedupReport": frozenset({_I, _A}),
    _NASNAME + "GetReport": frozenset({_I, _A}),
    _NASNAME + "ListRecords": frozenset({_I, _A}),
    _NASNAME + "ReopenCase": frozenset({_A}),
    _NASNAME + "UpdateBiometrics": frozenset({_S, _A}),
    _ADMIN + "CreateToken": frozenset({_A}),
    _ADMIN + "ListTokens": frozenset({_A}),
    _ADMIN + "RevokeToken": frozenset({_A}),
    _ADMIN + "CreateBackup": frozenset({_A}),
    _ADMIN + "CheckIntegrity": frozenset({_A}),
    _ADMIN + "RunMaintenance": frozenset({_A}),
    _ADMIN + "ExportTransfer": frozenset({_A}),
    _ADMIN + "ImportTransfer": frozenset({_A}),
    _ADMIN + "TransferStatus": frozenset({_A}),
    _ADMIN + "TrustPeer": frozenset({_A}),
    _ADMIN + "RevokePeer": frozenset({_A}),
    _ADMIN + "ListPeers": frozenset({_A}),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": ANY_ROLE,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": ANY_ROLE,
}

# Roles that may see stored face images (today: the thumbnails of FetchDedupReport's HTML, and only
# when the gallery keeps images). Investigators review suspected duplicates and need the faces to do
# it; stations never read back images; adjudicators cannot fetch dedup reports at all.
IMAGE_ROLES: frozenset[Role] = frozenset({_I, _A})


def may_see_images(role: Role | None) -> bool:
    return role in IMAGE_ROLES


# No token needed.
PUBLIC_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
                            "/grpc.health.v1.Health/List"})


class TokenFacts(Protocol):
    """What the interceptor needs from a token record (``engine.store.values.TokenInfo`` has it)."""

    @property
    def token_id(self) -> str: ...

    @property
    def role(self) -> str: ...


class TokenChecker(Protocol):
    """The token store as seen by authentication (``engine.store.Store`` satisfies it)."""

    def authenticate(self, secret: str) -> TokenFacts | None: ...


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. ``token_id`` goes to logs and the audit trail (never the secret)."""

    token_id: str
    role: Role


def bearer_secret(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The secret of the first ``authorization: Bearer`` header (the scheme in any case). Several
    *different* authorization headers (a misconfigured proxy adding its own, or a probe) are tolerated:
    the first decides, and a warning is logged (without the values)."""
    values = [v.decode(errors="replace") if isinstance(v, bytes) else v
              for k, v in metadata if k.lower() == "authorization"]
    if not values:
        return None
    if len(set(values)) > 1:
        log.warning("%d conflicting authorization headers; the first one is used", len(values))
    scheme, _, secret = values[0].strip().partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return None


def caller_key(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """A stable, non-secret name for the credential a call presents (for per-caller stream limits,
    counted before the token is looked up): a hash of the bearer secret, or ``anonymous``."""
    secret = bearer_secret(metadata)
    if secret is None:
        return "anonymous"
    return "bearer:" + hashlib.sha256(secret.encode()).hexdigest()[:32]


def peer_host(peer: str) -> str:
    """``ipv4:10.0.0.7:51234`` / ``ipv6:[::1]:5`` -> the address without the port (the unit a
    failed-authentication limit applies to); anything else as it is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return "ipv4:" + rest.rpartition(":")[0]
    if kind == "ipv6":
        return "ipv6:" + rest.rpartition(":")[0].strip("[]")
    return peer


class RateLimiter:
    """Token bucket per token id: ``rate`` requests per second on average, bursts up to ``burst``.
    ``rate == 0`` disables it."""

    # Buckets kept at most; beyond, the full (refilled) ones are forgotten: a flood of new peer
    # addresses cannot grow memory without bound.
    MAX_KEYS = 10_000

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._now = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens left, last refill)
        self._lock = threading.Lock()

    def _left(self, key: str, now: float) -> float:
        left, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), left + (now - last) * self.rate)

    def allow(self, key: str) -> bool:
        """Take one token from ``key``'s bucket; False (nothing taken) when it is empty."""
        if self.rate <= 0:
            return True
        now = self._now()
        with self._lock:
            left = self._left(key, now)
            if left < 1.0:
                self._buckets[key] = (left, now)
                return False
            if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
                self._prune(now)
            self._buckets[key] = (left - 1.0, now)
            return True

    def available(self, key: str) -> bool:
        """Whether ``key``'s bucket holds a token (nothing taken)."""
        if self.rate <= 0:
            return True
        with self._lock:
            return self._left(key, self._now()) >= 1.0

    def _prune(self, now: float) -> None:
        full = [k for k in self._buckets if self._left(k, now) >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.MAX_KEYS:  # all busy: forget the oldest half
            for k in list(self._buckets)[: self.MAX_KEYS // 2]:
                del self._buckets[k]


class Authenticator:
    """Decides whether a call may proceed: :meth:`check` returns the principal (None for public
    methods) or raises Unauthenticated / PermissionDenied / ResourceExhausted."""

    def __init__(self, tokens: TokenChecker, limiter: RateLimiter | None = None,
                 table: Mapping[str, frozenset[Role]] = RPC_ROLES,
                 failures: RateLimiter | None = None) -> None:
        self.tokens = tokens
        self.limiter = limiter or RateLimiter(0.0, 1)
        self.table = table
        self.failures = failures or RateLimiter(0.0, 1)  # failed authentications per peer

    def check(self, method: str, metadata: Sequence[tuple[str, str | bytes]], peer: str = ""
              ) -> Principal | None:
        """``peer``: gRPC's peer string of the caller (for the failed-authentication limit)."""
        if method in PUBLIC_METHODS:
            return None
        host = peer_host(peer)
        if not self.failures.available(host):
            raise ResourceExhausted("too many failed authentications from this address; wait and retry "
                                    "with a valid token", reason="AUTH_RATE_LIMITED",
                                    details={"failures_per_s": self.failures.rate})
        secret = bearer_secret(metadata)
        if secret is None:
            self.failures.allow(host)
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata",
                                  reason="MISSING_TOKEN")
        facts = self.tokens.authenticate(secret)
        if facts is None:
            self.failures.allow(host)
            raise Unauthenticated("unknown or revoked token", reason="INVALID_TOKEN")
        try:
            role = Role(facts.role)
        except ValueError:
            raise PermissionDenied(f"token role {facts.role!r} is not a known role",
                                   reason="UNKNOWN_ROLE") from None
        allowed = self.table.get(method)
        if allowed is None or role not in allowed:
            raise PermissionDenied(f"role {role.value} may not call {method.rsplit('/', 1)[-1]}",
                                   details={"role": role.value})
        if not self.limiter.allow(facts.token_id):
            raise ResourceExhausted("rate limit exceeded for this token; slow down", reason="RATE_LIMITED",
                                    details={"rate_per_s": self.limiter.rate})
        return Principal(facts.token_id, role)
