"""Index snapshot bookkeeping: which index files form the current snapshot, and up to which change seq.

Layout of ``<gallery>/snapshots/``::

    snapshot.json          {"format": 1, "seq": S, "created": t, "indexes": {modality: {file, model...}}}
    face-<S>.idx           written by the index's own ``save`` (atomic)
    iris_left-<S>.idx ...

A new snapshot writes its index files under new names first, then replaces ``snapshot.json``
atomically (temp file, fsync, rename, fsync directory), then removes files no longer referenced. A
crash at any point leaves a sidecar that names complete files: the old snapshot or the new one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import IntegrityError
from engine.fsutil import write_atomic
from engine.types import Modality, ModelRef

__all__ = ["SIDECAR", "Snapshot", "SnapshotScheduler", "index_path", "read_sidecar", "remove_unreferenced",
           "write_sidecar"]

log = logging.getLogger(__name__)

SIDECAR = "snapshot.json"
_FORMAT = 1


@dataclass(frozen=True)
class Snapshot:
    """The snapshot on disk: every index in it contains exactly the changes with seq <= ``seq``."""

    seq: int
    files: dict[Modality, Path]
    models: dict[Modality, ModelRef]


def index_path(directory: Path, modality: Modality, seq: int) -> Path:
    return Path(directory) / f"{modality.value}-{seq}.idx"


def read_sidecar(directory: Path) -> Snapshot | None:
    """The current snapshot, None when there is none. Raises ``IntegrityError`` when malformed."""
    path = Path(directory) / SIDECAR
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"unreadable snapshot sidecar {path}: {exc}", reason="BAD_SNAPSHOT") from exc
    try:
        if meta["format"] != _FORMAT:
            raise IntegrityError(f"unsupported snapshot format {meta['format']!r}", reason="BAD_SNAPSHOT")
        files: dict[Modality, Path] = {}
        models: dict[Modality, ModelRef] = {}
        for name, entry in meta["indexes"].items():
            modality = Modality(name)
            files[modality] = Path(directory) / str(entry["file"])
            models[modality] = ModelRef(str(entry["model_id"]), str(entry["model_version"]))
        return Snapshot(int(meta["seq"]), files, models)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"malformed snapshot sidecar {path}: {exc}", reason="BAD_SNAPSHOT") from exc


def write_sidecar(directory: Path, seq: int, files: Mapping[Modality, Path],
                  models: Mapping[Modality, ModelRef]) -> None:
    """Atomically make ``files`` (already written and fsynced) the current snapshot."""
    meta = {
        "format": _FORMAT,
        "seq": seq,
        "created": time.time(),
        "indexes": {m.value: {"file": files[m].name, "model_id": models[m].model_id,
                              "model_version": models[m].version} for m in files},
    }
    write_atomic(Path(directory) / SIDECAR, json.dumps(meta, indent=1).encode())


def remove_unreferenced(directory: Path, keep: set[Path]) -> None:
    """Delete index files and temp files of older or interrupted snapshots."""
    for path in Path(directory).iterdir():
        if path.name == SIDECAR or path in keep:
            continue
        if path.suffix in (".idx", ".tmp"):
            try:
                path.unlink()
            except OSError as exc:
                log.warning("could not remove old snapshot file %s: %s", path.name, exc)


class SnapshotScheduler:
    """Calls ``take()`` from a background thread once ``every`` changes have accumulated, or
    ``interval_s`` seconds after the last snapshot when there are any changes (0 disables either
    trigger). ``take`` must call :meth:`taken` when it has written a snapshot."""

    def __init__(self, take: Callable[[], object], every: int, interval_s: float, pending: int = 0) -> None:
        self._take = take
        self._every = every
        self._interval = interval_s
        self._pending = pending
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        if every > 0 or interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="index-snapshots", daemon=True)
            self._thread.start()

    def changed(self, n: int = 1) -> None:
        with self._lock:
            self._pending += n
            due = self._every > 0 and self._pending >= self._every
        if due:
            self._wake.set()

    def taken(self) -> None:
        with self._lock:
            self._pending = 0
            self._last = time.monotonic()

    def stop(self) -> None:
        """Stop the thread (waits for a snapshot in progress to finish)."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _due(self) -> bool:
        with self._lock:
            if self._pending == 0:
                return False
            by_count = self._every > 0 and self._pending >= self._every
            by_time = self._interval > 0 and time.monotonic() - self._last >= self._interval
            return by_count or by_time

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(timeout=self._interval if self._interval > 0 else None)
            self._wake.clear()
            if self._stopped.is_set():
                return
            if self._due():
                try:
                    self._take()
                except Exception:  # the thread must survive: logged, and the next trigger retries
                    log.exception("background index snapshot failed")
