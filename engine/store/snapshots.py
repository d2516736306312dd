"""Index snapshot bookkeeping: which index files form the current snapshot, and up to which change seq.

Layout of ``<gallery>/snapshots/``::

    snapshot.json          the sidecar (below)
    face-<S>.idx           the index's own ``save`` output, sealed (``engine.store.sealed``: chunked
    iris_left-<S>.idx ...  AES-GCM under a key derived from the data key; no template in clear)

The sidecar (format 2) names the files and their models, the change seq ``S`` they contain, the
records quarantined at that point (unreadable stored template: not in the indexes), and an anchor of
the audit chain (its seq and keyed head MAC, ``engine.store.audit``). It is authenticated by an
HMAC-SHA256 under another key derived from the data key, so neither the list of files nor the anchor
can be edited without the key. Each index file is sealed under the identity ``snapshot|<modality>|<S>``:
a file from another snapshot or modality is refused. A format-1 sidecar (older nasname: unencrypted
index files) reads as ``None`` with its files reported by :func:`legacy_files`, for removal.

A new snapshot writes its index files under new names first, then replaces ``snapshot.json``
atomically (temp file, fsync, rename, fsync directory), then removes files no longer referenced. A
crash at any point leaves a sidecar that names complete files: the old snapshot or the new one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.crypto import KeyRing
from engine.errors import IntegrityError
from engine.fsutil import write_atomic
from engine.store.audit import AuditAnchor
from engine.store.values import Quarantined
from engine.types import Modality, ModelRef

__all__ = ["SIDECAR", "Snapshot", "SnapshotScheduler", "index_identity", "index_path",
           "legacy_files", "read_sidecar", "remove_unreferenced", "write_sidecar"]

log = logging.getLogger(__name__)

SIDECAR = "snapshot.json"
_FORMAT = 2
_LEGACY_FORMAT = 1  # unencrypted index files, unauthenticated sidecar
_MAC_PURPOSE = "snapshot-sidecar"


@dataclass(frozen=True)
class Snapshot:
    """The snapshot on disk: every index in it contains exactly the changes with seq <= ``seq``.
    ``quarantined``: the active records left out of the indexes (unreadable stored template)."""

    seq: int
    files: dict[Modality, Path]
    models: dict[Modality, ModelRef]
    quarantined: tuple[Quarantined, ...] = ()
    audit: AuditAnchor | None = None


def index_path(directory: Path, modality: Modality, seq: int) -> Path:
    return Path(directory) / f"{modality.value}-{seq}.idx"


def index_identity(modality: Modality, seq: int) -> str:
    """What a sealed index file of a snapshot is (bound into its authentication)."""
    return f"snapshot|{modality.value}|{seq}"


def _mac(keyring: KeyRing, meta: Mapping[str, Any], key_id: str | None = None) -> tuple[str, str]:
    kid, key = keyring.derive(_MAC_PURPOSE, key_id)
    body = json.dumps({k: v for k, v in meta.items() if k not in ("mac", "key_id")}, sort_keys=True,
                      separators=(",", ":")).encode()
    return kid, hmac.new(key, body, hashlib.sha256).hexdigest()


def _load_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"unreadable snapshot sidecar {path.name}: {exc}",
                             reason="BAD_SNAPSHOT") from exc
    if not isinstance(meta, dict):
        raise IntegrityError(f"malformed snapshot sidecar {path.name}", reason="BAD_SNAPSHOT")
    return meta


def legacy_files(directory: Path) -> list[Path]:
    """Index files named by a format-1 sidecar (written unencrypted by an older nasname); [] otherwise."""
    try:
        meta = _load_meta(Path(directory) / SIDECAR)
        if meta is None or meta.get("format") != _LEGACY_FORMAT:
            return []
        return [Path(directory) / str(entry["file"]) for entry in meta["indexes"].values()]
    except (IntegrityError, KeyError, TypeError, AttributeError):
        return []


def read_sidecar(directory: Path, keyring: KeyRing) -> Snapshot | None:
    """The current snapshot; None when there is none or it is of the unencrypted format 1. Raises
    ``IntegrityError`` (BAD_SNAPSHOT) when malformed or when its MAC does not verify."""
    path = Path(directory) / SIDECAR
    meta = _load_meta(path)
    if meta is None or meta.get("format") == _LEGACY_FORMAT:
        return None
    try:
        if meta["format"] != _FORMAT:
            raise IntegrityError(f"unsupported snapshot format {meta['format']!r}", reason="BAD_SNAPSHOT")
        try:
            _, expected = _mac(keyring, meta, str(meta["key_id"]))
        except IntegrityError as exc:
            raise IntegrityError(f"snapshot sidecar was written under another key: {exc}",
                                 reason="BAD_SNAPSHOT") from exc
        if not hmac.compare_digest(expected, str(meta["mac"])):
            raise IntegrityError(f"snapshot sidecar {path.name} failed authentication (edited?)",
                                 reason="BAD_SNAPSHOT")
        files: dict[Modality, Path] = {}
        models: dict[Modality, ModelRef] = {}
        for name, entry in meta["indexes"].items():
            modality = Modality(name)
            files[modality] = Path(directory) / Path(str(entry["file"])).name
            models[modality] = ModelRef(str(entry["model_id"]), str(entry["model_version"]))
        quarantined = tuple(
            Quarantined(int(q["label"]), {Modality(m): str(r) for m, r in q["unreadable"].items()},
                        tuple(Modality(m) for m in q["modalities"])) for q in meta["quarantined"])
        anchor = meta.get("audit")
        audit = None if anchor is None else AuditAnchor(int(anchor["seq"]), str(anchor["head"]))
        return Snapshot(int(meta["seq"]), files, models, quarantined, audit)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"malformed snapshot sidecar {path.name}: {exc}", reason="BAD_SNAPSHOT") from exc


def write_sidecar(directory: Path, keyring: KeyRing, seq: int, files: Mapping[Modality, Path],
                  models: Mapping[Modality, ModelRef],
                  quarantined: Sequence[Quarantined] = (),
                  audit: AuditAnchor | None = None) -> None:
    """Atomically make ``files`` (already written and fsynced) the current snapshot."""
    meta: dict[str, Any] = {
        "format": _FORMAT,
        "seq": seq,
        "created": time.time(),
        "indexes": {m.value: {"file": files[m].name, "model_id": models[m].model_id,
                              "model_version": models[m].version} for m in files},
        "quarantined": [{"label": q.label, "unreadable": {m.value: r for m, r in q.unreadable.items()},
                         "modalities": [m.value for m in q.modalities]} for q in quarantined],
        "audit": None if audit is None else {"seq": audit.seq, "head": audit.head},
    }
    meta["key_id"], meta["mac"] = _mac(keyring, meta)
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
