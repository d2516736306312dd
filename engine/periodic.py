"""A background daemon thread that calls a function every few seconds until stopped (the server's
call watchdog and heap trimmer, the operations event log's writer); an exception is logged and the
next tick comes anyway."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, every_s: float, tick: Callable[[], object]) -> None:
        self.name = name
        self.every_s = every_s
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception:  # never let the thread die
                log.exception("%s: periodic task failed", self.name)
