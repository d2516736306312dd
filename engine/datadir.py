"""The data directory's one owner: its layout, process lock, key (and the key's check value), store,
index snapshot folder, job folders and backup folder.

    <data_dir>/                 0700; every file nasname writes under it is 0600
      LOCK                      flock held by the exclusive owner (engine / server / offline tools)
      nasname.db  (-wal, -shm)  the store (engine.store)
      nasname.key               default key file (``key_file`` may keep it elsewhere, as production should)
      nasname.toml              optional configuration
      snapshots/                index snapshots (engine.store.snapshots)
      jobs/<kind>/<id>/         resumable jobs (engine.jobs): dedup, face-switch, backup ...
      backups/                  default folder of scheduled backups; databases kept by the face switch
      site.json                 this site's id and key pairs, private keys sealed by the data key
                                (engine.transfer.site)

Everything in ``engine/`` that needs the store, the key or a folder of the gallery gets it from an
open ``DataDir`` (through ``Engine`` / ``Gallery``), never by re-opening paths or re-reading
configuration. Two modes: *exclusive* (the lock is held; the engine, the face switch, maintenance,
restore) and *shared* (no lock, nothing created: reading a gallery a server is serving, e.g. a
command-line dedup job; SQLite WAL lets it read while the server writes).

Key safety: a new key is created only for a brand-new directory (no database yet). The database
keeps the key's id (``meta.key_check``, a SHA-256 derived id, not secret); a gallery that holds data
is refused when its key is missing or is not the key its data was sealed with, with the fix in the
message, instead of acknowledging writes under a key nobody will have.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from engine.crypto import KEY_ENV, KeyRing
from engine.errors import ConfigurationError, IntegrityError, NotFound, Unavailable
from engine.events import EventLog
from engine.fsutil import private_dir
from engine.store import Store

if TYPE_CHECKING:
    from engine.config import EngineConfig
    from engine.store.locks import DirectoryLock

__all__ = ["DB_NAME", "KEY_NAME", "RESTORE_HINT", "SNAPSHOT_DIR", "DataDir"]

log = logging.getLogger(__name__)

DB_NAME = "nasname.db"
KEY_NAME = "nasname.key"
CONFIG_NAME = "nasname.toml"
SNAPSHOT_DIR = "snapshots"
JOBS_DIR = "jobs"
BACKUP_DIR = "backups"
LOCK_NAME = "LOCK"
SITE_NAME = "site.json"
KEY_CHECK = "key_check"
DIR_MODE = 0o700
FILE_MODE = 0o600
RESTORE_HINT = ("restore the last good backup into a new, empty directory with: nasname backup restore "
                "ARCHIVE --data-dir NEW_DIR --key-file KEY_FILE, then serve from NEW_DIR")


class DataDir:
    """An open data directory. Build with :meth:`open` (or :meth:`from_config`); :meth:`close` closes
    the store and releases the lock. Thread-safe as far as its parts are (the store is)."""

    def __init__(self, root: Path, keyring: KeyRing, store: Store, lock: DirectoryLock | None,
                 key_source: str) -> None:
        self.root = root
        self.keyring = keyring
        self.store = store
        self.key_source = key_source
        self._lock = lock
        self._closed = False
        self._events: EventLog | None = None
        self._events_lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: EngineConfig, *, exclusive: bool = True,
                    env: Mapping[str, str] | None = None) -> DataDir:
        """The data directory of an engine configuration (its ``data_dir``, ``key_file``,
        ``keep_images``)."""
        return cls.open(config.data_dir, key_file=config.key_file, keep_images=config.keep_images,
                        exclusive=exclusive, env=env)

    @classmethod
    def open(cls, root: Path, *, keyring: KeyRing | None = None, key_file: Path | None = None,
             keep_images: bool = False, exclusive: bool = True,
             env: Mapping[str, str] | None = None) -> DataDir:
        """Open ``root``. Exclusive: created (0700) when missing, locked (``Unavailable``
        GALLERY_LOCKED when another process holds it). Shared: it must already hold a gallery
        (``NotFound`` NO_GALLERY). The key is ``keyring`` when given (tests), else ``$NASNAME_KEY``,
        else ``key_file`` (default ``<root>/nasname.key``), created only for a brand-new directory.
        Raises ``ConfigurationError`` (KEY_MISSING, KEY_MISMATCH) when the key does not fit the data
        and ``IntegrityError`` (STORE_CORRUPT) when the database is unreadable, naming the fix."""
        from engine.store.locks import DirectoryLock

        root = Path(root).expanduser()
        db = root / DB_NAME
        fresh = not db.exists()
        if not exclusive:
            if fresh:
                raise NotFound(f"no nasname gallery in {root}", reason="NO_GALLERY")
        else:
            private_dir(root)
            make_private(root)
        lock = DirectoryLock(root) if exclusive else None
        store: Store | None = None
        try:
            source = "the given key"
            if keyring is None:
                keyring, source = _load_key(root, key_file, create=fresh and exclusive,
                                            env=os.environ if env is None else env)
            if fresh:
                create_private(db)
            try:
                store = Store(db, keyring, keep_images=keep_images)
            except IntegrityError as exc:
                raise IntegrityError(f"the database {db} is damaged ({exc}); {RESTORE_HINT}",
                                     reason=exc.reason) from exc
            _check_key(store, keyring, source, root)
            if exclusive:
                (root / SNAPSHOT_DIR).mkdir(mode=DIR_MODE, exist_ok=True)
        except BaseException:
            if store is not None:
                store.close()
            if lock is not None:
                lock.release()
            raise
        return cls(root, keyring, store, lock, source)

    # -- layout --------------------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def snapshot_dir(self) -> Path:
        return self.root / SNAPSHOT_DIR

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def site_path(self) -> Path:
        """This site's identity file (``engine.transfer.site`` reads and creates it)."""
        return self.root / SITE_NAME

    @property
    def exclusive(self) -> bool:
        return self._lock is not None

    def jobs_dir(self, kind: str) -> Path:
        """``<root>/jobs/<kind>`` (created, 0700): the folder of one kind of resumable job."""
        return private_dir(self.root / JOBS_DIR / kind)

    def backups_dir(self) -> Path:
        return private_dir(self.root / BACKUP_DIR)

    def quick_check(self) -> None:
        """SQLite's ``quick_check`` of the whole database file (seconds per GB): raises
        ``IntegrityError`` STORE_CORRUPT with the restore command when the file is damaged. The
        service runs it before it accepts a call."""
        problems = self.store.sqlite_check(quick=True)
        if problems:
            raise IntegrityError(f"the database {self.db_path} is damaged ({'; '.join(problems[:3])}). "
                                 f"Refusing to start on it: {RESTORE_HINT}. `nasname check --data-dir "
                                 f"{self.root}` lists what is wrong.", reason="STORE_CORRUPT",
                                 details={"problems": problems[:10]})

    # -- the database file itself --------------------------------------------------------------

    def replace_database(self, new_db: Path, keep_old_as: Path | None = None) -> None:
        """Make ``new_db`` (a complete, self-contained SQLite file: no WAL beside it) the gallery's
        database in one atomic rename; the old file is hard-linked (or copied) to ``keep_old_as``
        first. The store is closed for the rename and reopened. Exclusive mode only."""
        import shutil

        if not self.exclusive:
            raise ConfigurationError("replacing the database needs the data directory's lock",
                                     reason="GALLERY_LOCKED")
        keep_images = self.store.keep_images
        self.store.close()  # checkpoints and removes the WAL: the live file is whole
        try:
            wal = self.db_path.with_name(DB_NAME + "-wal")
            if wal.exists() and wal.stat().st_size:
                raise Unavailable(f"{wal.name} could not be checkpointed into the database; the database "
                                  "was not replaced (try again)", reason="STORE_UNAVAILABLE")
            if keep_old_as is not None and not keep_old_as.exists():
                private_dir(keep_old_as.parent)
                try:
                    os.link(self.db_path, keep_old_as)
                except OSError:  # another file system
                    shutil.copy2(self.db_path, keep_old_as)
            os.chmod(new_db, FILE_MODE)
            os.replace(new_db, self.db_path)
            fsync_dir(self.root)
        finally:
            self.store = Store(self.db_path, self.keyring, keep_images=keep_images)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def events(self) -> EventLog:
        """The operations event log in this directory's store (``engine.events``): started on first
        use, so a tool that records nothing starts no writer thread; closed (flushed) with the store."""
        with self._events_lock:
            if self._events is None:
                self._events = EventLog(self.store.db)
            return self._events

    def close(self) -> None:
        """Close the store and release the lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._events_lock:
                if self._events is not None:
                    self._events.close()  # queued events reach the store before it closes
            self.store.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- key ---------------------------------------------------------------------------------------------


def _load_key(root: Path, key_file: Path | None, *, create: bool,
              env: Mapping[str, str]) -> tuple[KeyRing, str]:
    path = Path(key_file).expanduser() if key_file is not None else root / KEY_NAME
    if env.get(KEY_ENV):
        return KeyRing.load(None, env=env), f"${KEY_ENV}"
    if not path.exists() and not create:
        raise ConfigurationError(
            f"the key file {path} is missing, and the gallery in {root} already holds data sealed with "
            f"its key. Nothing was started: a new key would make every record unreadable. Put the "
            f"original key file back at {path} (or set ${KEY_ENV}, or point key_file at it); if it is "
            f"lost, restore the key from its passphrase-protected export with: nasname key import "
            f"EXPORT_FILE --to {path}",
            reason="KEY_MISSING")
    return KeyRing.load(path, env={}, create=create), f"key file {path}"


def _check_key(store: Store, keyring: KeyRing, source: str, root: Path) -> None:
    """Refuse a key that is not the gallery's; record the key's id on first use."""
    stored = store.get_meta(KEY_CHECK)
    if stored is None:
        # a gallery from before key checks: its templates name the key that sealed them
        unknown = [k for k in store.template_key_ids() if not keyring.holds(k)]
        if unknown:
            _mismatch(source, keyring, unknown[0], root)
        store.set_meta(KEY_CHECK, keyring.key_id)
        return
    if not keyring.holds(stored):
        _mismatch(source, keyring, stored, root)
    if stored != keyring.key_id:
        # a rotated ring (new active key, the recorded one still held): the check follows the active
        # key, so the old one may later leave the ring (its records are then quarantined, not lost)
        store.set_meta(KEY_CHECK, keyring.key_id)
        log.warning("data key rotated: new records are sealed under key %s (was %s)", keyring.key_id, stored)


def _mismatch(source: str, keyring: KeyRing, expected: str, root: Path) -> None:
    raise ConfigurationError(
        f"the key from {source} (key id {keyring.key_id}) is not the key of the gallery in {root} "
        f"(key id {expected}). Nothing was started. Use the gallery's own key: check ${KEY_ENV} and "
        "key_file, or restore the key from its passphrase-protected export (nasname key import).",
        reason="KEY_MISMATCH", details={"expected_key_id": expected, "given_key_id": keyring.key_id})


# -- permissions -------------------------------------------------------------------------------------


def make_private(root: Path) -> int:
    """Tighten ``root`` to 0700 and every file under it to 0600 (directories 0700); returns how many
    entries were changed (a gallery made by an older nasname, or files copied in by hand)."""
    changed = 0
    for path in [root, *root.rglob("*")]:
        try:
            st = path.lstat()
        except FileNotFoundError:  # removed meanwhile (a snapshot being replaced)
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        want = DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE
        if stat.S_IMODE(st.st_mode) & 0o077:
            try:
                os.chmod(path, stat.S_IMODE(st.st_mode) & want)
                changed += 1
            except OSError as exc:
                log.warning("cannot make %s private: %s", path.name, exc)
    if changed:
        log.warning("made %d file(s) or folder(s) in the data directory private (0600 / 0700)", changed)
    return changed


def create_private(path: Path) -> None:
    """Create an empty file with 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
    database file's permissions)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
