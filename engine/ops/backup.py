"""Online, point-in-time backup of a gallery into one encrypted archive (``nasname backup create``, the
admin ``CreateBackup`` RPC, scheduled backups of ``nasname serve``).

The gallery keeps serving: ``Gallery.copy_point_in_time`` copies the database with SQLite's online
backup API inside one read transaction (never a half-written WAL) and hard-links the index snapshot of
that same change seq, holding writers only while the snapshot is brought up to date. The copy goes
to a job folder inside the data directory, is streamed into the archive (``engine.ops.archive``:
zstd, AES-256-GCM chunks) and removed. The archive is written under a temporary name and renamed
when whole, so a failed or interrupted backup never leaves a file that looks like a backup.

Members, in order: ``nasname.db``, ``snapshots/...``, ``config/nasname.toml`` (when the data
directory has one), ``config/engine.json`` (the engine configuration in force), ``models/*.json``
(the model manifests: which weights made the templates), then ``manifest.json``: format version,
nasname version, change seq, record counts by status and templates by modality, the sha256 and
size of every member, creation time, site id, the data key's id and the audit chain's head. The data
key is not in the archive unless a passphrase is given (then it is wrapped with scrypt).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.datadir import SITE_NAME, fsync_dir
from engine.errors import InvalidInput
from engine.events import job_event
from engine.fsutil import private_dir, write_atomic
from engine.jobs import new_job_id
from engine.ops.archive import ArchiveHeader, ArchiveWriter
from engine.store.audit import AuditAnchor

if TYPE_CHECKING:
    from engine.config import EngineConfig
    from engine.gallery import Gallery

__all__ = ["ARCHIVE_SUFFIX", "MANIFEST", "MANIFEST_FORMAT", "BackupResult", "create_backup", "prune_backups"]

log = logging.getLogger(__name__)

ARCHIVE_SUFFIX = ".nasbak"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_READ = 1 << 20


@dataclass(frozen=True)
class BackupResult:
    """Where the archive went, how big it is, how long it took, and its manifest."""

    path: Path
    bytes: int
    seconds: float
    manifest: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "change_seq": self.manifest["change_seq"], "records": self.manifest["records"],
                "templates": self.manifest["templates"], "created": self.manifest["created"]}


def nasname_version() -> str:
    try:
        return importlib.metadata.version("nasname")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def create_backup(gallery: Gallery, to_dir: Path, *, config: EngineConfig, passphrase: str | None = None,
                  model_dir: Path | None = None, fresh_snapshot: bool = True) -> BackupResult:
    """:func:`_create_backup`, recorded in the operations event log (``backup``: outcome, duration,
    records in the archive)."""
    with job_event(gallery.datadir.events, "backup") as ev:
        result = _create_backup(gallery, to_dir, config=config, passphrase=passphrase, model_dir=model_dir,
                                fresh_snapshot=fresh_snapshot)
        records = result.manifest.get("records", {})
        ev.count = sum(int(v) for v in records.values()) if isinstance(records, dict) else 0
        return result


def _create_backup(gallery: Gallery, to_dir: Path, *, config: EngineConfig, passphrase: str | None = None,
                   model_dir: Path | None = None, fresh_snapshot: bool = True) -> BackupResult:
    """Back up the open ``gallery`` into a new archive in ``to_dir`` (created 0700). ``passphrase``:
    also put the data key in the archive, wrapped by it (restore with the passphrase alone).
    ``model_dir``: where the model manifests are (default: the engine's model directory).
    ``fresh_snapshot``: index snapshot at the copy's change seq (default), or the latest one as it
    is, so enrollments never wait for an index save (``Gallery.copy_point_in_time``)."""
    from engine.models.manifest import model_dir as default_model_dir

    started = time.monotonic()
    datadir = gallery.datadir
    to_dir = private_dir(Path(to_dir).expanduser())
    work = private_dir(datadir.jobs_dir("backup") / new_job_id())
    try:
        seq_index, stats = gallery.copy_point_in_time(work, fresh_snapshot=fresh_snapshot)
        created = datetime.now(UTC)
        members: list[tuple[str, Path]] = [("nasname.db", work / "nasname.db")]
        members += [(f"snapshots/{p.name}", p) for p in sorted((work / "snapshots").iterdir())]
        if datadir.config_path.is_file():
            members.append(("config/nasname.toml", datadir.config_path))
        if datadir.site_path.is_file():  # the site identity (transfer): its private keys are sealed
            members.append((SITE_NAME, datadir.site_path))
        engine_json = work / "engine.json"
        write_atomic(engine_json, json.dumps(_config_json(config), indent=1).encode())
        members.append(("config/engine.json", engine_json))
        models = model_dir or default_model_dir()
        if models.is_dir():
            members += [(f"models/{p.name}", p) for p in sorted(models.glob("*.json")) if p.is_file()]
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "nasname_version": nasname_version(),
            "created": created.isoformat(timespec="seconds"),
            "site_id": config.site_id,
            "change_seq": int(stats["last_seq"]),
            "index_seq": seq_index,
            "records": stats["records"],
            "templates": stats["templates"],
            "pending_cases": stats["pending_cases"],
            "models": {m.value: str(ref) for m, ref in gallery.models().items()},
            "key_id": datadir.keyring.key_id,
            "audit_head": _anchor(datadir.store.audit_head()),
            "members": {},
        }
        wrapped = None
        if passphrase is not None:
            from engine.ops.keys import wrap_key

            wrapped = wrap_key(datadir.keyring, passphrase)
        header = ArchiveHeader(datadir.keyring.key_id, os.urandom(16).hex(),
                               created.isoformat(timespec="seconds"), wrapped_key=wrapped)
        name = f"nasname-{_slug(config.site_id)}{created.strftime('%Y%m%dT%H%M%SZ')}-seq{stats['last_seq']}"
        final = to_dir / f"{name}{ARCHIVE_SUFFIX}"
        if final.exists():
            final = to_dir / f"{name}-{new_job_id()[:4]}{ARCHIVE_SUFFIX}"
        partial = to_dir / f".{final.name}.partial"
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                writer = ArchiveWriter(out, datadir.keyring.active_key, header)
                with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for arcname, path in members:
                        manifest["members"][arcname] = _add_file(tar, arcname, path)
                    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
                    _add_bytes(tar, MANIFEST, raw, created)
                writer.close()
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, final)
            fsync_dir(to_dir)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = BackupResult(final, final.stat().st_size, time.monotonic() - started, manifest)
    log.info("backup written: %s (%d bytes, change %d, %.1f s)", final.name, result.bytes,
             manifest["change_seq"], result.seconds)
    return result


def list_backups(directory: Path) -> list[Path]:
    """The complete archives in ``directory``, oldest first (by name: names start with the UTC time)."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.glob(f"nasname-*{ARCHIVE_SUFFIX}") if p.is_file()),
                  key=lambda p: (p.stat().st_mtime, p.name))


def prune_backups(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` archives in ``directory`` (and leftover partial files);
    returns what was deleted."""
    if keep < 1:
        raise InvalidInput("keep must be at least 1", reason="INVALID_REQUEST")
    removed: list[Path] = []
    for path in list_backups(directory)[:-keep]:
        path.unlink(missing_ok=True)
        removed.append(path)
    for partial in directory.glob(f".nasname-*{ARCHIVE_SUFFIX}.partial") if directory.is_dir() else []:
        if time.time() - partial.stat().st_mtime > 24 * 3600:  # an interrupted backup of long ago
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def _slug(site: str) -> str:
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in site.strip())[:40]
    return f"{clean}-" if clean else ""


def _config_json(config: EngineConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(config).items()}


class _Hashing:
    """Reads a file for tarfile while hashing it (one pass over each member)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.sha.update(data)
        self.n += len(data)
        return data


def _add_file(tar: tarfile.TarFile, arcname: str, path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        info = tarfile.TarInfo(arcname)
        info.size, info.mode, info.mtime = size, 0o600, int(time.time())
        hashing = _Hashing(f)
        tar.addfile(info, hashing)  # type: ignore[arg-type]
    if hashing.n != size:
        raise InvalidInput(f"{arcname} changed size while being backed up", reason="BACKUP_SOURCE_CHANGED")
    return {"sha256": hashing.sha.hexdigest(), "bytes": size}


def _add_bytes(tar: tarfile.TarFile, arcname: str, data: bytes, when: datetime) -> None:
    import io

    info = tarfile.TarInfo(arcname)
    info.size, info.mode, info.mtime = len(data), 0o600, int(when.timestamp())
    tar.addfile(info, io.BytesIO(data))


def iter_members(manifest: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(name, sha256, bytes) of every member a manifest lists."""
    for name, entry in manifest.get("members", {}).items():
        yield str(name), str(entry["sha256"]), int(entry["bytes"])


def _anchor(head: AuditAnchor | None) -> dict[str, Any]:
    """The keyed audit chain's head as the manifest records it: a log cut short after this backup
    is then told from a whole one (``verify_audit(anchor)``)."""
    return {"seq": 0, "head": ""} if head is None else {"seq": head.seq, "head": head.head}
