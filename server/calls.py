"""Open streaming calls: how many may run, which ones went idle, and ending those of a revoked token.

A streaming call holds a server thread for as long as it is open, so without limits a few idle
``BatchIdentify`` streams took every thread and the server stopped answering anything, health
included. Streams therefore run on their own thread pool (sized to ``max_streams``, see server.app),
and this registry

- admits a new stream only while fewer than ``max_streams`` are open in total and fewer than
  ``max_per_caller`` for the credential it presents (refused: RESOURCE_EXHAUSTED / TOO_MANY_STREAMS);
- ends a request stream that sent nothing for ``idle_s`` seconds (its thread is needed elsewhere);
- ends, within a second, every open call of a token that was revoked: at once when the revocation
  comes through this server (:meth:`CallRegistry.revoke`), else when the watchdog's once-a-second look
  at the token store finds it revoked (e.g. ``nasname token revoke`` from another process).

Ending a call from outside its handler thread can only cancel it (gRPC offers no other way to stop a
handler blocked waiting for the client), so the client sees CANCELLED; the log line says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc

from engine.periodic import Periodic

__all__ = ["CallRegistry", "OpenCall", "Slot"]

log = logging.getLogger(__name__)

# How often the watchdog looks for idle streams, and how often it asks the token store which of the
# tokens holding open calls are still active (revocations from another process).
_TICK_S = 0.25
_TOKEN_CHECK_S = 0.5


@dataclass
class Slot:
    """An admitted stream's place in the limits; released once, when the call ends (any way)."""

    registry: CallRegistry
    key: str
    released: bool = False

    def release(self) -> None:
        self.registry._release(self)


@dataclass(eq=False)
class OpenCall:
    """A running streaming call of an authenticated token."""

    token_id: str
    context: grpc.ServicerContext
    method: str
    reads_requests: bool  # a request stream: may go idle
    last_activity: float = field(default=0.0)
    ended_because: str = ""

    def touch(self, now: float) -> None:
        self.last_activity = now

    def done_reading(self) -> None:
        """The client half-closed: nothing more to wait for, so it cannot be idle."""
        self.reads_requests = False


class CallRegistry:
    """See the module doc. ``active_tokens(ids)`` returns which of ``ids`` are still active tokens
    (None: only in-process revocations are seen)."""

    def __init__(self, *, max_streams: int = 64, max_per_caller: int = 8, idle_s: float = 60.0,
                 active_tokens: Callable[[set[str]], set[str]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_streams = max_streams
        self.max_per_caller = max_per_caller
        self.idle_s = idle_s
        self._active_tokens = active_tokens
        self._now = clock
        self._lock = threading.Lock()
        self._open = 0
        self._per_key: dict[str, int] = {}
        self._calls: set[OpenCall] = set()
        self._last_check = 0.0
        self._watchdog = Periodic("nasname-calls", _TICK_S, self._tick)

    # -- admission (called on gRPC's serving thread: only counters, no I/O) ------------------------

    def admit(self, key: str) -> Slot | None:
        """A slot for a new stream presenting credential ``key``, or None when a limit is reached."""
        with self._lock:
            held = self._per_key.get(key, 0)
            if self._open >= self.max_streams or held >= self.max_per_caller:
                return None
            self._open += 1
            self._per_key[key] = held + 1
        return Slot(self, key)

    def _release(self, slot: Slot) -> None:
        with self._lock:
            if slot.released:
                return
            slot.released = True
            self._open -= 1
            left = self._per_key.get(slot.key, 1) - 1
            if left > 0:
                self._per_key[slot.key] = left
            else:
                self._per_key.pop(slot.key, None)

    @property
    def open_streams(self) -> int:
        with self._lock:
            return self._open

    # -- open calls ----------------------------------------------------------------------------

    def register(self, token_id: str, context: grpc.ServicerContext, method: str, *,
                 reads_requests: bool) -> OpenCall:
        call = OpenCall(token_id, context, method, reads_requests, self._now())
        with self._lock:
            self._calls.add(call)
        return call

    def unregister(self, call: OpenCall) -> None:
        with self._lock:
            self._calls.discard(call)

    def touch(self, call: OpenCall) -> None:
        call.touch(self._now())

    def revoke(self, token_id: str) -> int:
        """End every open call of ``token_id`` now; returns how many."""
        with self._lock:
            victims = [c for c in self._calls if c.token_id == token_id]
        return self._end(victims, "token revoked")

    def _end(self, calls: Iterable[OpenCall], why: str) -> int:
        n = 0
        for call in calls:
            self.unregister(call)
            call.ended_because = why
            log.warning("ending %s call of token %s: %s", call.method, call.token_id, why,
                        extra={"rpc": call.method, "token_id": call.token_id, "reason": why})
            call.context.cancel()  # type: ignore[no-untyped-call]
            n += 1
        return n

    # -- watchdog ------------------------------------------------------------------------------

    def sweep(self, check_tokens: bool = True) -> int:
        """One watchdog pass: end idle request streams and (``check_tokens``) calls of tokens the
        store no longer lists as active. Returns how many calls were ended."""
        now = self._now()
        with self._lock:
            calls = list(self._calls)
        idle = [c for c in calls if c.reads_requests and now - c.last_activity > self.idle_s]
        ended = self._end(idle, f"no request for {self.idle_s:g} s")
        if check_tokens and self._active_tokens is not None:
            holders = {c.token_id for c in calls if c not in idle}
            if holders:
                try:
                    active = self._active_tokens(holders)
                except Exception:  # the store is closing or busy: look again on the next pass
                    log.debug("token check failed", exc_info=True)
                    return ended
                ended += self._end([c for c in calls if c not in idle and c.token_id not in active],
                                   "token revoked")
        return ended

    def start(self) -> None:
        self._watchdog.start()

    def stop(self) -> None:
        self._watchdog.stop()

    def _tick(self) -> None:
        now = time.monotonic()
        check = now - self._last_check >= _TOKEN_CHECK_S
        if check:
            self._last_check = now
        self.sweep(check_tokens=check)
