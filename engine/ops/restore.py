"""Restore a backup archive into a new, empty data directory (``nasname backup restore``), and verify an
archive without restoring it (``nasname backup verify``).

Nothing is half-restored: every member is streamed into a staging folder inside the target, its size
and sha256 checked against the manifest; only when all members (and nothing else) are there and
right are they moved into place. Then the gallery is opened with the archive's key and checked
(``engine.ops.check``): counts and change seq must equal the manifest's. Any failure removes what
the restore created and names the member and the reason.

The key: the archive is sealed under the data key (``engine.ops.archive``) and names its key id. It
comes from ``--key-file`` (the raw key file, or a passphrase-wrapped export with the passphrase) or,
when the backup was made with a passphrase, from the archive itself. A key recovered from a
passphrase is written as ``<target>/nasname.key``; a key file given as is stays where it is (keep
pointing ``key_file`` at it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from engine.crypto import KeyRing
from engine.datadir import DB_NAME, KEY_NAME, SITE_NAME, SNAPSHOT_DIR, create_private, fsync_dir
from engine.errors import Conflict, IntegrityError, InvalidInput, NasnameError
from engine.fsutil import private_dir, write_atomic
from engine.ops.archive import ArchiveHeader, ArchiveReader, read_header
from engine.ops.backup import MANIFEST

__all__ = ["KeySource", "RestoreResult", "archive_key_id", "key_source", "restore_backup", "verify_archive"]

log = logging.getLogger(__name__)

INFO_DIR = "restored-from-backup"  # the manifest, engine.json and model manifests of the archive
_COPY = 1 << 20


@dataclass(frozen=True)
class RestoreResult:
    target: Path
    manifest: dict[str, Any]
    key_file: Path | None  # where the key was written (None: the given key file stays the key)
    seconds: float
    check: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"data_dir": str(self.target), "change_seq": self.manifest["change_seq"],
                "records": self.manifest["records"], "templates": self.manifest["templates"],
                "created": self.manifest["created"], "site_id": self.manifest.get("site_id", ""),
                "key_file": None if self.key_file is None else str(self.key_file),
                "seconds": round(self.seconds, 3), "check": self.check}


KeySource = Callable[[ArchiveHeader], tuple[KeyRing, bool]]
"""Given the archive header, the key ring to open it and whether the key must be written into the
restored directory (it came from a passphrase)."""


def archive_key_id(archive: Path) -> ArchiveHeader:
    """The clear header of an archive (key id, creation time, whether a wrapped key is inside)."""
    with Path(archive).open("rb") as f:
        header, _ = read_header(f)
    return header


def verify_archive(archive: Path, key: KeySource, *,
                   watch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Stream the whole archive, checking every chunk and every member against the manifest; returns
    the manifest. Nothing is written. ``watch(bytes_read)`` is called as the archive is read (progress;
    it may raise to stop: ``engine.ops.verify``)."""
    with Path(archive).open("rb") as f:
        header, raw = read_header(f)
        ring, _ = key(header)
        _check_key(ring, header)
        source: Any = f if watch is None else _Watched(f, watch)
        manifest, _ = _stream(source, ring, header, raw, None)
    return manifest


class _Watched:
    """The archive file read through ``watch(position)``."""

    def __init__(self, f: IO[bytes], watch: Callable[[int], None]) -> None:
        self._f = f
        self._watch = watch

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._watch(self._f.tell())
        return data


def restore_backup(archive: Path, target: Path, key: KeySource, *,
                   check: Callable[[Any], dict[str, Any]] | None = None) -> RestoreResult:
    """Restore ``archive`` into ``target`` (missing or empty; else ``Conflict`` TARGET_NOT_EMPTY).
    ``check(gallery_dir)`` runs on the opened result (``engine.ops.check``); its failure undoes the
    restore."""
    started = time.monotonic()
    target = Path(target).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise Conflict(f"{target} is not empty; restore goes into a new, empty directory only",
                       reason="TARGET_NOT_EMPTY")
    made_target = not target.exists()
    with Path(archive).open("rb") as f:
        header, raw = read_header(f)
        ring, write_key = key(header)
        _check_key(ring, header)
        private_dir(target)
        staging = target / f".restore-{os.getpid()}"
        try:
            staging.mkdir(mode=0o700)
            manifest, files = _stream(f, ring, header, raw, staging)
            key_file = _place(staging, target, files, ring if write_key else None)
            report = _open_and_check(target, ring, manifest, check)
        except BaseException:
            _undo(target, made_target)
            raise
    log.info("restored backup of change %d (%s) into %s", manifest["change_seq"], manifest["created"], target)
    return RestoreResult(target, manifest, key_file, time.monotonic() - started, report)


def _check_key(ring: KeyRing, header: ArchiveHeader) -> None:
    if not ring.holds(header.key_id):
        raise IntegrityError(f"the backup was sealed with key id {header.key_id}, the key given is "
                             f"{ring.key_id}: give this gallery's key file (or its export and passphrase)",
                             reason="WRONG_KEY")


def _stream(f: IO[bytes], ring: KeyRing, header: ArchiveHeader, raw: bytes, staging: Path | None
            ) -> tuple[dict[str, Any], dict[str, Path]]:
    """Read every member; with ``staging``, write each there (0600). Verify against the manifest."""
    import hashlib

    reader = ArchiveReader(f, _key_bytes(ring, header.key_id), header, raw)
    found: dict[str, tuple[str, int]] = {}
    files: dict[str, Path] = {}
    manifest: dict[str, Any] | None = None
    current = "(archive start)"
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for info in tar:
                current = info.name
                _safe_name(info)
                src = tar.extractfile(info)
                if src is None:
                    raise IntegrityError("is not a regular file", reason="ARCHIVE_CORRUPT")
                if info.name == MANIFEST:
                    try:
                        manifest = json.loads(src.read())
                    except ValueError as exc:
                        raise IntegrityError(f"is not valid JSON: {exc}", reason="ARCHIVE_CORRUPT") from exc
                    continue
                sha, n = hashlib.sha256(), 0
                out: IO[bytes] | None = None
                if staging is not None:
                    path = staging / info.name
                    private_dir(path.parent)
                    create_private(path)
                    out = path.open("wb")
                    files[info.name] = path
                try:
                    while block := src.read(_COPY):
                        sha.update(block)
                        n += len(block)
                        if out is not None:
                            out.write(block)
                    if out is not None:
                        out.flush()
                        os.fsync(out.fileno())
                finally:
                    if out is not None:
                        out.close()
                found[info.name] = (sha.hexdigest(), n)
        current = "(archive end)"
        while reader.read(_COPY):  # through the last chunk: a cut or extended archive is refused too
            pass
    except NasnameError as exc:
        raise type(exc)(f"backup member {current}: {exc}", reason=exc.reason,
                        details={"member": current}) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise IntegrityError(f"backup member {current}: unreadable ({exc})", reason="ARCHIVE_CORRUPT",
                             details={"member": current}) from exc
    if manifest is None:
        raise IntegrityError(f"backup member {MANIFEST} is missing: the archive is incomplete",
                             reason="ARCHIVE_TRUNCATED", details={"member": MANIFEST})
    listed = {str(k): (str(v["sha256"]), int(v["bytes"])) for k, v in manifest.get("members", {}).items()}
    for name in sorted(set(listed) | set(found)):
        if name not in found:
            raise IntegrityError(f"backup member {name} is listed in the manifest but missing",
                                 reason="MEMBER_MISSING", details={"member": name})
        if name not in listed:
            raise IntegrityError(f"backup member {name} is not in the manifest", reason="MEMBER_UNEXPECTED",
                                 details={"member": name})
        if found[name] != listed[name]:
            raise IntegrityError(f"backup member {name} does not match its sha256 / size in the manifest",
                                 reason="MEMBER_CORRUPT", details={"member": name})
    if DB_NAME not in found:
        raise IntegrityError(f"backup member {DB_NAME} is missing", reason="MEMBER_MISSING",
                             details={"member": DB_NAME})
    return manifest, files


def _key_bytes(ring: KeyRing, key_id: str) -> bytes:
    if ring.key_id != key_id:
        raise IntegrityError("restore needs the archive's key as the active key", reason="WRONG_KEY")
    return ring.active_key


def _safe_name(info: tarfile.TarInfo) -> None:
    p = PurePosixPath(info.name)
    if p.is_absolute() or ".." in p.parts or not info.isfile() or len(p.parts) > 2:
        raise IntegrityError("has an unsafe name or type", reason="ARCHIVE_CORRUPT")
    if len(p.parts) == 2 and p.parts[0] not in (SNAPSHOT_DIR, "config", "models"):
        raise IntegrityError("is in an unknown folder", reason="ARCHIVE_CORRUPT")


def _place(staging: Path, target: Path, files: dict[str, Path], ring: KeyRing | None) -> Path | None:
    """Move the verified members into the layout of a data directory."""
    info = private_dir(target / INFO_DIR)
    for name, path in files.items():
        parts = PurePosixPath(name).parts
        if name == DB_NAME:
            dest = target / DB_NAME
        elif parts[0] == SNAPSHOT_DIR:
            dest = private_dir(target / SNAPSHOT_DIR) / parts[1]
        elif name == "config/nasname.toml":
            dest = target / "nasname.toml"
        elif name == SITE_NAME:
            dest = target / SITE_NAME
        else:
            dest = private_dir(info / parts[0]) / parts[-1]
        os.replace(path, dest)
    shutil.rmtree(staging)
    key_file = None
    if ring is not None:
        key_file = target / KEY_NAME
        import base64

        write_atomic(key_file, base64.b64encode(ring.active_key) + b"\n")
    fsync_dir(target)
    return key_file


def _open_and_check(target: Path, ring: KeyRing, manifest: dict[str, Any],
                    check: Callable[[Any], dict[str, Any]] | None) -> dict[str, Any]:
    from engine.gallery import Gallery, default_index_factory, load_index

    write_atomic(target / INFO_DIR / MANIFEST, json.dumps(manifest, indent=1).encode())
    with Gallery(target, ring, default_index_factory(), load_index) as gallery:
        stats = gallery.store.stats()
        if stats["last_seq"] != manifest["change_seq"] or stats["records"] != manifest["records"] \
                or stats["templates"] != manifest["templates"]:
            raise IntegrityError(
                f"the restored gallery (change {stats['last_seq']}, records {stats['records']}) does not "
                f"match the backup's manifest (change {manifest['change_seq']}, records "
                f"{manifest['records']})", reason="RESTORE_MISMATCH")
        report: dict[str, Any] = check(gallery) if check is not None else {"ok": True, "checks": []}
    if not report.get("ok", False):
        checks: list[dict[str, Any]] = report.get("checks", [])
        failed = [str(c["name"]) for c in checks if not c.get("ok")]
        raise IntegrityError(f"the restored gallery fails its integrity check: {', '.join(failed)}",
                             reason="RESTORE_CHECK_FAILED", details={"failed": failed})
    return report


def _undo(target: Path, made_target: bool) -> None:
    """Remove what the restore created (the target was missing or empty before)."""
    if made_target:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir() if target.exists() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def key_source(key_file: Path | None, passphrase: str | None) -> KeySource:
    """How a restore gets its key: ``key_file`` (a raw key file; or a key export, opened with
    ``passphrase``), else the key wrapped inside the archive (with ``passphrase``)."""
    from engine.ops.keys import is_export, unwrap_key

    def get(header: ArchiveHeader) -> tuple[KeyRing, bool]:
        if key_file is not None:
            path = Path(key_file).expanduser()
            if not is_export(path):
                return KeyRing.from_file(path, create=False), False
            if passphrase is None:
                raise InvalidInput(f"{path} is a passphrase-protected key export: give its passphrase",
                                   reason="PASSPHRASE_REQUIRED")
            return unwrap_key(json.loads(path.read_text(encoding="utf-8")), passphrase), True
        if passphrase is None:
            raise InvalidInput("give the gallery's key: --key-file (key file or key export) or --passphrase "
                               "(when the backup holds the key wrapped by one)", reason="NO_KEY")
        if header.wrapped_key is None:
            raise InvalidInput("this backup does not hold the key (made without --passphrase): give the key "
                               "file or key export with --key-file", reason="NO_KEY")
        return unwrap_key(header.wrapped_key, passphrase), True

    return get
