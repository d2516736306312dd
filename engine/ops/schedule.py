"""Scheduled backups of a serving gallery, and ``nasname maintenance``.

    [backup]                 # in the nasname TOML file, read by `nasname serve`
    every = "6h"             # s / m / h / d; "" or "0" = no scheduled backups (the default)
    keep = 14                # archives kept in ``dir`` (older ones are deleted after a good backup)
    dir = "/mnt/usb/nasname-backups"   # default <data_dir>/backups (better: another disk)
    fresh_snapshot = true    # index snapshot at the backup's change (enrollments wait while the
                             # indexes are saved); false: the latest snapshot, replayed on restore

A failed backup is logged at ERROR and retried at the next tick. The last good backup (time, file,
size, change) is kept in the store (``meta``), for Stats and health, whichever way it was made.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import settings_kwargs
from engine.errors import ConfigurationError, NasnameError
from engine.jobs import JobFiles
from engine.ops.backup import BackupResult, create_backup, prune_backups

if TYPE_CHECKING:
    from engine.config import EngineConfig
    from engine.datadir import DataDir
    from engine.gallery import Gallery

__all__ = [
    "BackupScheduler",
    "BackupSettings",
    "last_good_backup",
    "parse_duration",
    "record_good_backup",
    "run_maintenance",
]

log = logging.getLogger(__name__)

LAST_GOOD = "backup.last_good"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"6h"``, ``"1d"`` (or bare seconds) -> seconds; ``""`` / ``"0"`` -> 0."""
    t = str(text).strip().lower()
    if t in ("", "0"):
        return 0.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", t)
    if m is None:
        raise ConfigurationError(f"backup every = {text!r}: expected a duration like 30m, 6h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass(frozen=True)
class BackupSettings:
    every: str = ""
    keep: int = 14
    dir: Path | None = None
    fresh_snapshot: bool = True

    def __post_init__(self) -> None:
        parse_duration(self.every)
        if self.keep < 1:
            raise ConfigurationError("backup keep must be at least 1")

    @property
    def interval_s(self) -> float:
        return parse_duration(self.every)

    def directory(self, datadir: DataDir) -> Path:
        return self.dir if self.dir is not None else datadir.backups_dir()

    @classmethod
    def from_toml(cls, toml: Mapping[str, Any]) -> BackupSettings:
        return cls(**settings_kwargs(cls, dict(toml.get("backup", {})), "backup"))


def record_good_backup(datadir: DataDir, result: BackupResult) -> None:
    datadir.store.set_meta(LAST_GOOD, json.dumps({
        "time": time.time(), "file": result.path.name, "bytes": result.bytes,
        "change_seq": result.manifest["change_seq"], "seconds": round(result.seconds, 3)}))


def last_good_backup(datadir: DataDir) -> dict[str, Any] | None:
    """``{"time", "age_s", "file", "bytes", "change_seq"}`` of the last good backup, or None."""
    raw = datadir.store.get_meta(LAST_GOOD)
    if raw is None:
        return None
    doc: dict[str, Any] = json.loads(raw)
    doc["age_s"] = max(0.0, time.time() - float(doc["time"]))
    return doc


def backup_now(gallery: Gallery, config: EngineConfig, settings: BackupSettings) -> BackupResult:
    """One backup into the configured folder, recorded as the last good one, then retention."""
    directory = settings.directory(gallery.datadir)
    result = create_backup(gallery, directory, config=config, fresh_snapshot=settings.fresh_snapshot)
    record_good_backup(gallery.datadir, result)
    for old in prune_backups(directory, settings.keep):
        log.info("backup retention: removed %s", old.name)
    return result


class BackupScheduler:
    """Backs the gallery up every ``settings.every`` from a daemon thread (counted from the last good
    backup, so a restarted server does not back up again at once)."""

    def __init__(self, gallery: Gallery, config: EngineConfig, settings: BackupSettings,
                 on_result: Callable[[bool], None] | None = None) -> None:
        self._on_result = on_result
        self._gallery = gallery
        self._config = config
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._settings.interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="nasname-backups", daemon=True)
        self._thread.start()
        log.info("scheduled backups every %s into %s, keeping %d", self._settings.every,
                 self._settings.directory(self._gallery.datadir), self._settings.keep)

    def _due_in(self) -> float:
        last = last_good_backup(self._gallery.datadir)
        return 0.0 if last is None else max(0.0, self._settings.interval_s - float(last["age_s"]))

    def healthy(self) -> bool:
        """Backups are on time: the last good one is at most twice the interval old."""
        last = last_good_backup(self._gallery.datadir)
        return last is not None and float(last["age_s"]) <= 2 * self._settings.interval_s

    def _run(self) -> None:
        while not self._stop.wait(self._due_in()):
            try:
                backup_now(self._gallery, self._config, self._settings)
                if self._on_result is not None:
                    self._on_result(True)
            except Exception as exc:
                if self._on_result is not None:
                    self._on_result(self.healthy())  # the thread lives on: ERROR now, retry next tick
                reason = exc.reason if isinstance(exc, NasnameError) else type(exc).__name__
                log.error("scheduled backup FAILED (%s): %s; next attempt in %s", reason, exc,
                          self._settings.every)
                if self._stop.wait(self._settings.interval_s):
                    return

    def stop(self) -> None:
        """Stop the thread (a backup in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def run_maintenance(gallery: Gallery, *, settings: BackupSettings | None = None,
                    job_age_days: float = 30.0) -> dict[str, Any]:
    """WAL checkpoint and VACUUM of the database, an index snapshot now, finished job folders older
    than ``job_age_days`` removed, backups pruned to ``settings.keep``. Safe while serving: writes wait
    during the VACUUM (seconds per GB); searches go on."""
    datadir = gallery.datadir
    started = time.monotonic()
    db = datadir.store.maintain()
    seq = gallery.snapshot()
    removed_jobs: list[str] = []
    cutoff = time.time() - job_age_days * 86400
    jobs_root = datadir.root / "jobs"
    for kind in sorted(jobs_root.iterdir()) if jobs_root.is_dir() else []:
        for d in sorted(kind.iterdir()) if kind.is_dir() else []:
            files = JobFiles(d)
            if not files.exists:
                continue
            meta = files.meta()
            finished = meta.get("state") in ("done", "failed", "cancelled")
            if finished and float(meta.get("updated", 0)) < cutoff:
                shutil.rmtree(d, ignore_errors=True)
                removed_jobs.append(f"{kind.name}/{d.name}")
    pruned = [] if settings is None else [p.name for p in prune_backups(settings.directory(datadir),
                                                                         settings.keep)]
    report = {"database": db, "snapshot_seq": seq, "jobs_removed": removed_jobs, "backups_removed": pruned,
              "seconds": round(time.monotonic() - started, 3)}
    log.info("maintenance done: %s", json.dumps(report))
    return report
