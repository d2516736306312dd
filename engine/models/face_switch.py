"""Switching a gallery's face model: an explicit, resumable re-extraction job from the kept images.

    job = FaceSwitchJob(datadir, "mobilefacenet", extractor, drop_missing=False)   # datadir: exclusive
    summary = job.run(on_progress=print)      # blocks; a killed job resumes on the next run()

A gallery's face templates all come from one model (``Store.models()``), so changing the model means
re-extracting every face template from its kept image (``EngineConfig.keep_images``). The job never
touches the live database until the very end:

``prepare``  runs on the data directory opened exclusively by the caller (``engine.datadir``: the
             engine must be stopped), counts the records with a face template and those without a
             kept face image (refused unless ``drop_missing``), and copies the database (SQLite
             backup API) into ``<data_dir>/jobs/face-switch/work/``.
``extract``  in label order, batches of records: decrypt the kept image, extract with the new model,
             replace the face template in the copy; the batch, its change rows, its audit rows (one per
             dropped record) and the position reached commit in ONE transaction of the copy, so a
             killed job resumes exactly where it stopped. Iris templates are left as they are.
``swap``     pins the new model and template shape in the copy, audits the switch, and has the data
             directory replace its database with the copy (``DataDir.replace_database``: the old
             file is kept in ``<data_dir>/backups/`` until the operator deletes it; one rename).
             Index snapshots of the old model no longer fit and are rebuilt on the next open.

If the live gallery changed between runs (the engine was started while the job was interrupted), the
copy is stale: the job starts again from ``prepare``. The job folder, states, cancel (between
batches) and progress with ETA are those of ``engine.jobs``, the one job framework (a ``hook`` for
tests).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.crypto import KeyRing
from engine.datadir import DB_NAME, DataDir
from engine.errors import (
    Conflict,
    IntegrityError,
    InvalidImage,
    ModelMismatch,
    SampleRejected,
    Unavailable,
)
from engine.extractor import Extractor
from engine.jobs import JobCancelled, JobFiles, Progress, eta_s
from engine.store import Store, audit
from engine.store.codec import open_template, seal_template, shape_of
from engine.types import Modality

__all__ = ["FaceSwitchJob", "SwitchSummary", "face_records"]

log = logging.getLogger(__name__)

JOB_KIND = "face-switch"
_POS_KEY = "face_switch.after_label"  # meta of the work copy: last label done (same txn as the batch)
_DROPPED_KEY = "face_switch.dropped"
_FACE = Modality.FACE.value

Hook = Callable[[str, int], None]
"""Called before each record as ``hook(stage, records_done)`` (tests raise from it to simulate a kill)."""


@dataclass(frozen=True)
class SwitchSummary:
    job_id: str
    from_model: str
    to_model: str
    reextracted: int
    dropped: dict[str, str]  # ref id -> why its face template was dropped
    backup: str  # path of the previous database (delete it once the new gallery is accepted)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def face_records(conn: sqlite3.Connection, after_label: int = 0, limit: int = -1
                 ) -> list[tuple[int, str, bool]]:
    """(label, ref id, has kept face image) of records holding a face template, label > after."""
    rows = conn.execute(
        "SELECT t.record_id, r.ref_id, i.record_id IS NOT NULL FROM templates t "
        "JOIN records r ON r.id = t.record_id "
        "LEFT JOIN images i ON i.record_id = t.record_id AND i.modality = t.modality "
        "WHERE t.modality = ? AND t.record_id > ? ORDER BY t.record_id LIMIT ?",
        (_FACE, after_label, limit)).fetchall()
    return [(int(a), str(b), bool(c)) for a, b, c in rows]


class FaceSwitchJob:
    """Re-extract the face templates of the gallery in ``datadir`` with ``extractor`` (whose
    ``model`` becomes the gallery's face model; ``target`` is its registry name, for messages and the
    audit). ``drop_missing``: records whose kept image is missing (or no longer yields a face) lose
    their face template instead of stopping the job; each is reported. ``batch``: records per commit."""

    def __init__(self, datadir: DataDir, target: str, extractor: Extractor, *,
                 drop_missing: bool = False, hook: Hook | None = None, batch: int = 64,
                 actor: str = "local") -> None:
        if extractor.kind != "face":
            raise Conflict(f"the {extractor.kind} extractor cannot make face templates",
                           reason="INVALID_REQUEST")
        if not datadir.exclusive:
            raise Unavailable("the face switch needs the data directory to itself; stop the nasname "
                              "server first", reason="GALLERY_LOCKED")
        self.datadir = datadir
        self.target = target
        self.extractor = extractor
        self.drop_missing = drop_missing
        self._hook = hook
        self._batch = max(1, batch)
        self._actor = actor
        self.dir = datadir.jobs_dir(JOB_KIND)
        self.files = JobFiles(self.dir)
        self.work_db = self.dir / "work" / DB_NAME

    # -- job files (engine.jobs: the one job framework) --------------------------------------------

    def _read(self, name: str) -> dict[str, Any]:
        if name == "checkpoint.json":
            return self.files.checkpoint()
        return self.files.meta() if self.files.exists else {}

    def cancel(self) -> None:
        """Ask the running switch (any process) to stop after its current batch (resumable)."""
        self.files.cancel()

    def progress(self) -> Progress:
        """Records handled of those with a face template, dropped ones, and the ETA."""
        meta = self._read("job.json")
        cp = self.files.checkpoint()
        done, total = int(cp.get("done", 0)), int(cp.get("total", 0))
        elapsed = float(cp.get("elapsed_s", 0.0))
        eta = 0.0 if cp.get("stage") == "done" else eta_s(done - int(cp.get("done_at_start", 0)), total - int(
            cp.get("done_at_start", 0)), elapsed)
        return Progress(str(meta.get("id", "")), str(meta.get("state", "none")), str(cp.get("stage", "none")),
                        done, total, len(cp.get("dropped", {})), elapsed, eta, str(meta.get("error", "")))

    # -- run -----------------------------------------------------------------------------------

    def resume(self, on_progress: Callable[[Progress], None] | None = None) -> SwitchSummary:
        """Withdraw a cancel request and run on from the last checkpoint."""
        self.files.clear_cancel()
        return self.run(on_progress)

    def run(self, on_progress: Callable[[Progress], None] | None = None) -> SwitchSummary:
        """Run (or resume) to the end. Raises ``Conflict`` (IMAGES_NOT_KEPT, NOTHING_TO_SWITCH,
        SWITCH_IN_PROGRESS) when it cannot start, ``JobCancelled`` when cancelled (resumable)."""
        started = False
        keyring = self.datadir.keyring
        try:
            cp = self._start(keyring)
            started = True
            if cp["stage"] == "extract":
                cp = self._extract(keyring, cp, on_progress)
            if cp["stage"] == "swap":
                cp = self._swap(keyring, cp)
        except JobCancelled:
            self.files.set_state("cancelled")
            raise
        except BaseException as exc:
            if self.files.exists and started:  # a refusal to start leaves an earlier job's record alone
                self.files.set_state("failed", error=str(exc) or type(exc).__name__)
            raise
        meta = self.files.set_state("done")
        summary = SwitchSummary(meta["id"], meta["from"], meta["to"], int(cp["reextracted"]),
                                dict(cp["dropped"]), str(cp["backup"]))
        log.info("face model switched from %s to %s: %d re-extracted, %d dropped", summary.from_model,
                 summary.to_model, summary.reextracted, len(summary.dropped))
        return summary

    def _start(self, keyring: KeyRing) -> dict[str, Any]:
        """The checkpoint to continue from: a fresh one (prepare) unless a job for the same target is
        under way and the live gallery has not changed since its copy was made."""
        meta, cp = self._read("job.json"), self._read("checkpoint.json")
        target_ref = str(self.extractor.model)
        if meta and meta.get("state") != "done":
            if meta["to"] != target_ref:
                raise Conflict(f"a switch of the face model to {meta['to']} is under way in {self.dir}; "
                               f"resume it with --to {meta['target']}, or delete that directory to "
                               "abandon it",
                               reason="SWITCH_IN_PROGRESS")
            if cp.get("stage") == "done" or (cp.get("stage") == "swap" and not self.work_db.exists()):
                return cp  # killed after the rename: only bookkeeping is left
            if cp.get("stage") in ("extract", "swap") and self.work_db.is_file():
                if self._fingerprint(keyring) == cp.get("source"):
                    self.files.set_state("running")
                    cp["done_at_start"], cp["elapsed_s"] = cp.get("done", 0), 0.0
                    return cp
                log.warning("the gallery changed since the switch job copied it; starting again")
        return self._prepare(keyring, target_ref)

    def _fingerprint(self, keyring: KeyRing) -> dict[str, int]:
        """What must not change under a running job: last change seq and audit length of the live db."""
        store = self.datadir.store
        with store.db.read() as conn:
            audit_rows = int(conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
        return {"seq": store.last_seq(), "audit": audit_rows}

    def _prepare(self, keyring: KeyRing, target_ref: str) -> dict[str, Any]:
        store = self.datadir.store
        current = store.models().get(Modality.FACE)
        with store.db.read() as conn:
            rows = face_records(conn)
        if current is None or not rows:
            raise Conflict(f"the gallery in {self.datadir.root} holds no face template; set "
                           f"face_model = {self.target!r} instead (an empty gallery takes the "
                           "first model)",
                           reason="NOTHING_TO_SWITCH")
        if str(current) == target_ref:
            raise Conflict(f"the gallery's face templates are already of {current}",
                           reason="NOTHING_TO_SWITCH")
        missing = [ref for _, ref, has_image in rows if not has_image]
        if missing and not self.drop_missing:
            raise Conflict(
                f"{len(missing)} of {len(rows)} records with a face template have no kept face image "
                "(keep_images was off when they were stored), so they cannot be re-extracted with "
                f"{target_ref}. Nothing was changed. Re-run with --drop-missing to drop their face "
                "templates (each is reported and audited), or keep the current model.",
                reason="IMAGES_NOT_KEPT", details={"missing": len(missing), "total": len(rows)})
        fingerprint = self._fingerprint(keyring)
        if self.work_db.parent.exists():
            shutil.rmtree(self.work_db.parent)
        self.work_db.parent.mkdir(mode=0o700, parents=True)
        with _plain(self.datadir.db_path) as src, _plain(self.work_db) as dst:
            src.backup(dst)  # a consistent copy; nobody writes (the data directory is ours)
        os.chmod(self.work_db, 0o600)
        for name in ("job.json", "checkpoint.json"):  # the previous switch's record (done or abandoned)
            (self.dir / name).unlink(missing_ok=True)
        self.files.clear_cancel()
        JobFiles.create(self.dir, JOB_KIND, target=self.target, drop_missing=self.drop_missing,
                        to=target_ref, **{"from": str(current)})
        meta = self.files.set_state("running")
        cp = {"stage": "extract", "source": fingerprint, "total": len(rows), "done": 0, "reextracted": 0,
              "dropped": {}, "done_at_start": 0, "elapsed_s": 0.0}
        self.files.save_checkpoint(cp)
        log.info("face switch %s: %d face templates to re-extract (%s -> %s)", meta["id"], len(rows),
                 meta["from"], target_ref)
        return cp

    # -- extract -------------------------------------------------------------------------------

    def _extract(self, keyring: KeyRing, cp: dict[str, Any],
                 on_progress: Callable[[Progress], None] | None) -> dict[str, Any]:
        work = Store(self.work_db, keyring, keep_images=True)
        started = time.monotonic() - float(cp.get("elapsed_s", 0.0))
        try:
            with work.db.read() as conn:
                after = _meta_int(conn, _POS_KEY)
                dropped: dict[str, str] = json.loads(_meta(conn, _DROPPED_KEY) or "{}")
                # dropped records no longer hold a face template: every face template up to ``after``
                # is a re-extracted one
                reextracted = int(conn.execute(
                    "SELECT COUNT(*) FROM templates WHERE modality = ? AND record_id <= ?",
                    (_FACE, after)).fetchone()[0])
            done = reextracted + len(dropped)
            while True:
                if self.files.cancel_requested():
                    raise JobCancelled(f"face switch cancelled after {done} of {cp['total']} records; "
                                       "run it again to resume")
                with work.db.read() as conn:
                    rows = face_records(conn, after, self._batch)
                if not rows:
                    break
                updates: list[tuple[int, bytes]] = []
                drops: list[tuple[int, str, str]] = []
                for label, ref_id, _ in rows:
                    if self._hook is not None:
                        self._hook("extract", done + len(updates) + len(drops))
                    blob, why = self._reextract(work, keyring, label, ref_id)
                    if blob is None:
                        drops.append((label, ref_id, why))
                    else:
                        updates.append((label, blob))
                with work.db.write() as conn:
                    self._commit_batch(conn, keyring.key_id, updates, drops, dropped, rows[-1][0])
                after = rows[-1][0]
                done += len(rows)
                reextracted += len(updates)
                cp.update(done=done, reextracted=reextracted, dropped=dropped,
                          elapsed_s=time.monotonic() - started)
                self.files.save_checkpoint(cp)
                if on_progress is not None:
                    on_progress(self.progress())
            with work.db.read() as conn:
                stale = conn.execute("SELECT COUNT(*) FROM templates WHERE modality = ? AND "
                                     "(model_id || '@' || model_version) != ?",
                                     (_FACE, str(self.extractor.model))).fetchone()[0]
            if stale:
                raise IntegrityError(f"{stale} face templates of the old model remain in the work copy",
                                     reason="SWITCH_INCOMPLETE")
        finally:
            work.close()
        cp.update(stage="swap", done=done, reextracted=reextracted, dropped=dropped)
        self.files.save_checkpoint(cp)
        return cp

    def _reextract(self, work: Store, keyring: KeyRing, label: int, ref_id: str) -> tuple[bytes | None, str]:
        """The sealed new template of one record, or (None, why) when it is dropped."""
        image = work.get_image(ref_id, Modality.FACE)
        if image is None:
            return None, "no kept face image"
        try:
            template = self.extractor.extract(image).template
        except (SampleRejected, InvalidImage) as exc:
            if not self.drop_missing:
                raise Conflict(f"the kept face image of {ref_id} gives no template with {self.target}: "
                               f"{exc}; re-run with --drop-missing to drop its face template",
                               reason="REEXTRACTION_FAILED", details={"ref_id": ref_id}) from exc
            return None, f"re-extraction failed: {exc.reason}"
        if template.model != self.extractor.model:
            raise ModelMismatch(f"the extractor made a template of {template.model}, "
                                f"expected {self.extractor.model}")
        return seal_template(keyring, label, Modality.FACE, template), ""

    def _commit_batch(self, conn: sqlite3.Connection, key_id: str, updates: list[tuple[int, bytes]],
                      drops: list[tuple[int, str, str]], dropped: dict[str, str], last: int) -> None:
        model, now = self.extractor.model, time.time()
        for label, blob in updates:
            conn.execute("UPDATE templates SET model_id = ?, model_version = ?, key_id = ?, blob = ? "
                         "WHERE record_id = ? AND modality = ?",
                         (model.model_id, model.version, key_id, blob, label, _FACE))
            conn.execute("INSERT INTO changes (record_id, op, time) VALUES (?, 'upsert', ?)", (label, now))
        for label, ref_id, why in drops:
            conn.execute("DELETE FROM templates WHERE record_id = ? AND modality = ?", (label, _FACE))
            conn.execute("INSERT INTO changes (record_id, op, time) VALUES (?, 'upsert', ?)", (label, now))
            audit.append(conn, self._actor, "drop_face_template", ref_id, {"reason": why, "to": str(model)})
            dropped[ref_id] = why
        _set_meta(conn, _POS_KEY, str(last))
        _set_meta(conn, _DROPPED_KEY, json.dumps(dropped))

    # -- swap ----------------------------------------------------------------------------------

    def _swap(self, keyring: KeyRing, cp: dict[str, Any]) -> dict[str, Any]:
        meta = self._read("job.json")
        backup = self.datadir.backups_dir() / f"{DB_NAME}.before-face-switch-{meta['id']}"
        if self.work_db.exists():
            work = Store(self.work_db, keyring)
            try:
                with work.db.write() as conn:
                    self._pin(conn, keyring, meta, cp)
            finally:
                work.close()
            with _plain(self.work_db) as conn:  # one self-contained file: no WAL beside it to rename
                conn.execute("PRAGMA journal_mode=DELETE")
            self.datadir.replace_database(self.work_db, keep_old_as=backup)  # the switch: one rename
            shutil.rmtree(self.work_db.parent, ignore_errors=True)
        cp.update(stage="done", backup=str(backup))
        self.files.save_checkpoint(cp)
        return cp

    def _pin(self, conn: sqlite3.Connection, keyring: KeyRing, meta: dict[str, Any], cp: dict[str, Any]
             ) -> None:
        """The new model and template shape become the gallery's; the switch is audited. Idempotent."""
        model = self.extractor.model
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     (f"model.{_FACE}", json.dumps({"model_id": model.model_id, "version": model.version})))
        one = conn.execute("SELECT record_id, blob FROM templates WHERE modality = ? LIMIT 1",
                           (_FACE,)).fetchone()
        if one is not None:  # else every face template was dropped: the next template sets the shape
            shape = shape_of(Modality.FACE, open_template(keyring, int(one[0]), Modality.FACE, one[1]))
            _set_meta(conn, f"shape.{_FACE}", shape)
        else:
            conn.execute("DELETE FROM meta WHERE key = ?", (f"shape.{_FACE}",))
        if _meta(conn, "face_switch.audited") != meta["id"]:
            audit.append(conn, self._actor, "switch_face_model", None,
                         {"job": meta["id"], "from": meta["from"], "to": meta["to"],
                          "model_name": self.target, "reextracted": int(cp["reextracted"]),
                          "dropped": len(cp["dropped"])})
            _set_meta(conn, "face_switch.audited", meta["id"])
        conn.execute("DELETE FROM meta WHERE key IN (?, ?)", (_POS_KEY, _DROPPED_KEY))


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _meta_int(conn: sqlite3.Connection, key: str) -> int:
    value = _meta(conn, key)
    return 0 if value is None else int(value)


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


@contextmanager
def _plain(path: Path) -> Iterator[sqlite3.Connection]:
    """A bare connection (no nasname pragmas) for the backup copy and the journal-mode change."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()

