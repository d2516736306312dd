"""The store of record: records, encrypted templates, the change log, and what hangs off them.

Every mutating method runs in one SQLite transaction that also appends a ``changes`` row (what the
indexes replay) and an ``audit`` row; when the method returns, the write is durable (acknowledged).
Labels (``records.id``) are int64, assigned here, never reused. Only ``active`` records belong in the
indexes; the change log says *which* records changed, and replay applies each one's *current* state,
which makes replay idempotent.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.crypto import KeyRing, associated_data
from engine.errors import AlreadyExists, Conflict, IntegrityError, InvalidInput, ModelMismatch, NotFound
from engine.store import audit, codec, idempotency, tokens
from engine.store.adjudication import AdjudicationMixin
from engine.store.db import Database
from engine.store.idempotency import IdempotencyKey, Idempotent
from engine.store.schema import SCHEMA_VERSION, migrate, schema_version
from engine.store.users import UsersMixin
from engine.store.values import AuditReport, Record, RecordStatus, TokenInfo, WriteResult
from engine.types import Modality, ModelRef, Template, check_template

__all__ = ["NewRecord", "RecordState", "Store"]

log = logging.getLogger(__name__)

_SQL_BATCH = 900  # host parameters per IN (...) query, well under SQLite's limit


@dataclass(frozen=True)
class RecordState:
    """A record's current index-relevant state (for replay and rebuild): templates only when active."""

    label: int
    partition: str
    status: RecordStatus
    templates: dict[Modality, Template]
    unreadable: dict[Modality, str] = field(default_factory=dict)
    """Templates of an active record that failed to decrypt or parse: modality -> reason code
    (``DECRYPTION_FAILED``, ``UNKNOWN_KEY``, ``CORRUPT_TEMPLATE``). Such a record is quarantined by
    the gallery: never searchable, never a reason to refuse start-up."""


@dataclass(frozen=True)
class NewRecord:
    """A record to insert (the arguments of :meth:`Store.insert`); ``checked()`` validates it."""

    templates: Mapping[Modality, Template]
    ref_id: str | None = None
    partition: str = ""
    attributes: Mapping[str, Any] | None = None
    status: RecordStatus = RecordStatus.ACTIVE
    candidates: Sequence[Mapping[str, Any]] | None = None
    images: Mapping[Modality, bytes] | None = None
    qualities: Mapping[Modality, float] | None = None
    attributes_json: str = ""  # set by checked(): the attributes as stored

    def checked(self) -> NewRecord:
        """This record with its id (generated when None), partition and attributes checked and its
        modalities parsed. Raises ``InvalidInput``."""
        ref_id = codec.check_ref_id(self.ref_id) if self.ref_id is not None else uuid.uuid4().hex
        codec.check_partition(self.partition)
        attributes = codec.check_attributes(self.attributes)
        if self.status is RecordStatus.DELETED:
            raise InvalidInput("a record cannot be inserted as deleted", reason="INVALID_STATUS")
        if (self.candidates is not None) != (self.status is RecordStatus.PENDING):
            raise InvalidInput("candidates are given exactly for pending records", reason="INVALID_REQUEST")
        if not self.templates:
            raise InvalidInput("a record needs at least one template", reason="NO_BIOMETRIC_DATA")
        return replace(self, ref_id=ref_id, attributes_json=attributes,
                       templates={Modality(m): t for m, t in self.templates.items()})


class Store(AdjudicationMixin, UsersMixin):
    """Open (creating and migrating as needed) the database at ``path``.

    ``keep_images``: whether sample images passed to :meth:`insert` are kept (encrypted); off by
    default (data minimisation). Thread-safe.
    """

    def __init__(self, path: Path, keyring: KeyRing, *, keep_images: bool = False) -> None:
        self.path = Path(path)
        self.keyring = keyring
        self.keep_images = keep_images
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.path)
        try:
            with self.db.exclusive() as conn:
                found = migrate(conn)
            with self.db.write() as conn:
                self._chain, key = audit.open_chain(conn, keyring)
            self.db.on_connect(lambda c: audit.bind(c, key))
        except BaseException:
            self.db.close()
            raise
        if found != SCHEMA_VERSION:
            log.info("database schema migrated from version %d to %d", found, SCHEMA_VERSION)

    def close(self) -> None:
        self.db.close()

    # -- meta values (the data directory's key check, ...) ----------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def template_key_ids(self) -> list[str]:
        """The distinct key ids that sealed this store's templates and images."""
        with self.db.read() as conn:
            return [str(k) for (k,) in conn.execute(
                "SELECT DISTINCT key_id FROM templates UNION SELECT DISTINCT key_id FROM images")]

    # -- models --------------------------------------------------------------------------------

    def models(self) -> dict[Modality, ModelRef]:
        """The model each modality's templates were made with (only modalities already configured)."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT key, value FROM meta WHERE key LIKE 'model.%'").fetchall()
        out: dict[Modality, ModelRef] = {}
        for key, value in rows:
            ref = json.loads(value)
            out[Modality.parse(key[len("model."):])] = ModelRef(ref["model_id"], ref["version"])
        return out

    def set_model(self, modality: Modality, model: ModelRef) -> None:
        """Fix the model of ``modality``. Changing it is refused (``ModelMismatch``) while templates of
        the previous model exist: a gallery never mixes models."""
        with self.db.write() as conn:
            self._ensure_model(conn, modality, model, replace_if_empty=True)

    def _ensure_model(self, conn: sqlite3.Connection, modality: Modality, model: ModelRef,
                      *, replace_if_empty: bool) -> None:
        key = f"model.{modality.value}"
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            ref = json.loads(row[0])
            current = ModelRef(ref["model_id"], ref["version"])
            if current == model:
                return
            used = conn.execute("SELECT 1 FROM templates WHERE modality = ? LIMIT 1",
                                (modality.value,)).fetchone()
            if used or not replace_if_empty:
                raise ModelMismatch(
                    f"{modality.value} templates of this gallery are made by {current}, not {model}",
                    details={"modality": modality.value, "gallery_model": str(current),
                             "template_model": str(model)})
            conn.execute("DELETE FROM meta WHERE key = ?", (f"shape.{modality.value}",))
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     (key, json.dumps({"model_id": model.model_id, "version": model.version})))
        audit.append(conn, "system", "set_model", None, {"modality": modality.value, "model": str(model)})

    @staticmethod
    def _release_unused_models(conn: sqlite3.Connection, modalities: Sequence[str]) -> None:
        """Forget the model (and template shape) of each of ``modalities`` that no template uses any
        more, so that the next template of that modality fixes it anew: a gallery never stays locked
        to the model of records that are gone (e.g. a mistaken or malicious first template, erased).
        Called by every erase, in its transaction."""
        for slot in modalities:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"model.{slot}",)).fetchone()
            if row is None or conn.execute("SELECT 1 FROM templates WHERE modality = ? LIMIT 1",
                                           (slot,)).fetchone() is not None:
                continue
            conn.execute("DELETE FROM meta WHERE key IN (?, ?)", (f"model.{slot}", f"shape.{slot}"))
            ref = json.loads(row[0])
            audit.append(conn, "system", "release_model", None,
                         {"modality": slot, "model": str(ModelRef(ref["model_id"], ref["version"]))})
            log.info("%s holds no templates any more: its model is released", slot)

    def _check_template(self, conn: sqlite3.Connection, modality: Modality, template: Template) -> None:
        check_template(modality, template)
        self._ensure_model(conn, modality, template.model, replace_if_empty=False)
        key = f"shape.{modality.value}"
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        shape = check_template(modality, template, None if row is None else str(row[0]))
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, shape))

    def shapes(self) -> dict[Modality, str]:
        """The template shape of each modality that holds (or held) templates (``check_template``)."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT key, value FROM meta WHERE key LIKE 'shape.%'").fetchall()
        return {Modality.parse(key[len("shape."):]): str(value) for key, value in rows}

    # -- writes --------------------------------------------------------------------------------

    def insert(
        self,
        templates: Mapping[Modality, Template],
        *,
        ref_id: str | None = None,
        partition: str = "",
        attributes: Mapping[str, Any] | None = None,
        status: RecordStatus = RecordStatus.ACTIVE,
        candidates: Sequence[Mapping[str, Any]] | None = None,
        images: Mapping[Modality, bytes] | None = None,
        qualities: Mapping[Modality, float] | None = None,
        actor: str = "system",
        idem: Idempotent | None = None,
    ) -> WriteResult:
        """Store a new record (``ref_id`` generated when None). ``status`` is ACTIVE or PENDING; a
        PENDING record carries the ``candidates`` that made it a suspected duplicate. ``images`` are
        kept (encrypted) only when the store was opened with ``keep_images``. ``qualities`` are the
        extractor's quality scores per modality, kept for data-quality checks.

        Raises ``AlreadyExists`` (also for the id of a deleted record: ids are never reused),
        ``ModelMismatch``, ``InvalidInput``; ``idempotency.Replay`` when ``idem``'s key was used already
        (nothing written). With ``idem`` the key and its result are kept in the same transaction.
        """
        new = NewRecord(templates, ref_id=ref_id, partition=partition, attributes=attributes, status=status,
                        candidates=candidates, images=images, qualities=qualities)
        with self.db.write() as conn:
            idempotency.begin(conn, self.keyring, idem)
            result = self._insert(conn, new.checked(), actor, time.time())
            idempotency.finish(conn, self.keyring, idem, result)
        return result

    def insert_many(self, records: Sequence[NewRecord], *, actor: str = "system",
                    also: Callable[[sqlite3.Connection, list[WriteResult]], None] | None = None
                    ) -> list[WriteResult]:
        """Store several new records (each as :meth:`insert`) and run ``also(conn, results)`` in ONE
        transaction: all of them are durable when this returns, or none is (any refusal rolls the
        whole batch back). ``also`` lets the caller commit its own bookkeeping (a job's checkpoint)
        atomically with the records."""
        checked = [r.checked() for r in records]
        now = time.time()
        with self.db.write() as conn:
            results = [self._insert(conn, r, actor, now) for r in checked]
            if also is not None:
                also(conn, results)
        return results

    def _insert(self, conn: sqlite3.Connection, new: NewRecord, actor: str, now: float) -> WriteResult:
        """The rows of one checked record, inside the caller's transaction."""
        assert new.ref_id is not None
        ref_id, status, slots = new.ref_id, new.status, new.templates
        existing = conn.execute("SELECT status FROM records WHERE ref_id = ?", (ref_id,)).fetchone()
        if existing is not None:
            raise AlreadyExists(f"reference id {ref_id} already exists",
                                details={"ref_id": ref_id, "status": existing[0]})
        for modality, template in slots.items():
            self._check_template(conn, modality, template)
        cur = conn.execute(
            "INSERT INTO records (ref_id, partition, status, attributes, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?)", (ref_id, new.partition, status.value, new.attributes_json, now, now))
        label = int(cur.lastrowid or 0)
        for modality, template in slots.items():
            conn.execute(
                "INSERT INTO templates (record_id, modality, model_id, model_version, key_id, blob, "
                "quality) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (label, modality.value, template.model.model_id, template.model.version,
                 self.keyring.key_id, codec.seal_template(self.keyring, label, modality, template),
                 (new.qualities or {}).get(modality)))
        if new.images and self.keep_images:
            for modality, image in new.images.items():
                slot = Modality(modality).value
                blob = self.keyring.encrypt(bytes(image), associated_data("image", label, slot))
                conn.execute("INSERT INTO images (record_id, modality, key_id, blob) VALUES (?, ?, ?, ?)",
                             (label, slot, self.keyring.key_id, blob))
        if new.candidates is not None:
            self._open_case(conn, label, new.candidates, now, actor=actor)
        seq = self._change(conn, label, "upsert", now)
        audit.append(conn, actor, "insert", ref_id,
                     {"status": status.value, "partition": new.partition,
                      "modalities": sorted(m.value for m in slots)})
        return WriteResult(ref_id, label, seq)

    def set_status(self, ref_id: str, status: RecordStatus, *, actor: str = "system") -> WriteResult:
        """Move a record between ACTIVE and PENDING (deletion goes through :meth:`delete`)."""
        if status is RecordStatus.DELETED:
            raise InvalidInput("use delete() to delete a record", reason="INVALID_STATUS")
        with self.db.write() as conn:
            label, current = self._live(conn, ref_id)
            if current is status:
                raise Conflict(f"record {ref_id} is already {status.value}", details={"ref_id": ref_id})
            seq = self._set_status(conn, label, status)
            audit.append(conn, actor, "set_status", ref_id, {"from": current.value, "to": status.value})
        return WriteResult(ref_id, label, seq)

    def delete(self, ref_id: str, *, actor: str = "system", idem: Idempotent | None = None) -> WriteResult:
        """Erase the record's templates, images and attributes; keep the row as DELETED (audit trail).
        ``idem``: as for :meth:`insert`."""
        with self.db.write() as conn:
            idempotency.begin(conn, self.keyring, idem)
            label, current = self._live(conn, ref_id)
            seq = self._erase(conn, label)
            audit.append(conn, actor, "delete", ref_id, {"from": current.value})
            result = WriteResult(ref_id, label, seq)
            idempotency.finish(conn, self.keyring, idem, result)
        return result

    def _live(self, conn: sqlite3.Connection, ref_id: str) -> tuple[int, RecordStatus]:
        row = conn.execute("SELECT id, status FROM records WHERE ref_id = ?", (ref_id,)).fetchone()
        if row is None or row[1] == RecordStatus.DELETED.value:
            raise NotFound(f"reference id {ref_id} not found", details={"ref_id": ref_id})
        return int(row[0]), RecordStatus(row[1])

    def _set_status(self, conn: sqlite3.Connection, label: int, status: RecordStatus) -> int:
        now = time.time()
        conn.execute("UPDATE records SET status = ?, updated = ? WHERE id = ?", (status.value, now, label))
        return self._change(conn, label, "status", now)

    def _erase(self, conn: sqlite3.Connection, label: int) -> int:
        now = time.time()
        slots = [str(m) for (m,) in
                 conn.execute("SELECT modality FROM templates WHERE record_id = ?", (label,))]
        conn.execute("DELETE FROM templates WHERE record_id = ?", (label,))
        self._release_unused_models(conn, slots)
        conn.execute("DELETE FROM images WHERE record_id = ?", (label,))
        conn.execute("UPDATE records SET status = 'deleted', attributes = '{}', updated = ? WHERE id = ?",
                     (now, label))
        return self._change(conn, label, "delete", now)

    @staticmethod
    def _change(conn: sqlite3.Connection, label: int, op: str, now: float) -> int:
        cur = conn.execute("INSERT INTO changes (record_id, op, time) VALUES (?, ?, ?)", (label, op, now))
        return int(cur.lastrowid or 0)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, ref_id: str, *, with_templates: bool = True) -> Record:
        """The record (deleted ones too, with no templates). Raises ``NotFound``."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT id, partition, status, attributes, created, updated FROM records WHERE ref_id = ?",
                (ref_id,)).fetchone()
            if row is None:
                raise NotFound(f"reference id {ref_id} not found", details={"ref_id": ref_id})
            label = int(row[0])
            blobs = conn.execute("SELECT modality, blob FROM templates WHERE record_id = ? ORDER BY modality",
                                 (label,)).fetchall()
        modalities = tuple(Modality(m) for m, _ in blobs)
        templates = ({Modality(m): codec.open_template(self.keyring, label, Modality(m), b) for m, b in blobs}
                     if with_templates else {})
        return Record(ref_id, label, row[1], RecordStatus(row[2]), json.loads(row[3]), float(row[4]),
                      float(row[5]), templates, modalities)

    def list_records(self, *, partition: str | None = None, status: RecordStatus | None = None,
                     created_from: float | None = None, created_to: float | None = None,
                     limit: int = 100, offset: int = 0) -> tuple[list[Record], int]:
        """A page of records (no templates; ``modalities`` filled), oldest first, matching every filter
        given (``created_from`` <= created < ``created_to``), and how many match in all."""
        where, args = ["1 = 1"], []
        for clause, value in (("partition = ?", partition), ("status = ?", status and status.value),
                              ("created >= ?", created_from), ("created < ?", created_to)):
            if value is not None:
                where.append(clause)
                args.append(value)
        cond = " AND ".join(where)
        with self.db.read() as conn:
            total = int(conn.execute(f"SELECT COUNT(*) FROM records WHERE {cond}", args).fetchone()[0])
            rows = conn.execute(
                f"SELECT id, ref_id, partition, status, attributes, created, updated FROM records "
                f"WHERE {cond} ORDER BY id LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
            mods: dict[int, list[Modality]] = {}
            if rows:
                marks = ",".join("?" * len(rows))
                for label, m in conn.execute(f"SELECT record_id, modality FROM templates WHERE record_id IN "
                                             f"({marks}) ORDER BY modality", [r[0] for r in rows]):
                    mods.setdefault(int(label), []).append(Modality(m))
        return [Record(str(r[1]), int(r[0]), str(r[2]), RecordStatus(r[3]), json.loads(r[4]), float(r[5]),
                       float(r[6]), {}, tuple(mods.get(int(r[0]), ()))) for r in rows], total

    def replace_template(self, ref_id: str, modality: Modality, template: Template, *,
                         image: bytes | None = None, actor: str = "system") -> WriteResult:
        """Add or replace one modality's template (and kept image) of an ACTIVE record, with its change
        row and an audit row. Raises ``NotFound``, ``Conflict`` (``NOT_ACTIVE``), ``ModelMismatch``,
        ``InvalidInput``."""
        now = time.time()
        with self.db.write() as conn:
            label, status = self._live(conn, ref_id)
            if status is not RecordStatus.ACTIVE:
                raise Conflict(f"record {ref_id} is {status.value}, not active", reason="NOT_ACTIVE",
                               details={"ref_id": ref_id, "status": status.value})
            self._check_template(conn, modality, template)
            replaced = conn.execute("DELETE FROM templates WHERE record_id = ? AND modality = ?",
                                    (label, modality.value)).rowcount > 0
            conn.execute(
                "INSERT INTO templates (record_id, modality, model_id, model_version, key_id, blob) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (label, modality.value, template.model.model_id, template.model.version,
                 self.keyring.key_id, codec.seal_template(self.keyring, label, modality, template)))
            conn.execute("DELETE FROM images WHERE record_id = ? AND modality = ?", (label, modality.value))
            if image is not None and self.keep_images:
                blob = self.keyring.encrypt(bytes(image), associated_data("image", label, modality.value))
                conn.execute("INSERT INTO images (record_id, modality, key_id, blob) VALUES (?, ?, ?, ?)",
                             (label, modality.value, self.keyring.key_id, blob))
            conn.execute("UPDATE records SET updated = ? WHERE id = ?", (now, label))
            seq = self._change(conn, label, "upsert", now)
            audit.append(conn, actor, "replace_template" if replaced else "add_template", ref_id,
                         {"modality": modality.value})
        return WriteResult(ref_id, label, seq)

    def get_image(self, ref_id: str, modality: Modality) -> bytes | None:
        """The kept sample image of a record's modality (None when none was kept)."""
        with self.db.read() as conn:
            row = conn.execute("SELECT r.id, i.blob FROM records r LEFT JOIN images i ON i.record_id = r.id "
                               "AND i.modality = ? WHERE r.ref_id = ?", (modality.value, ref_id)).fetchone()
        if row is None:
            raise NotFound(f"reference id {ref_id} not found", details={"ref_id": ref_id})
        if row[1] is None:
            return None
        return self.keyring.decrypt(row[1], associated_data("image", int(row[0]), modality.value))

    def labels_of(self, ref_ids: Sequence[str], status: RecordStatus | None = RecordStatus.ACTIVE
                  ) -> dict[str, int]:
        """ref id -> label for the given ids that exist (with ``status``, unless None)."""
        out: dict[str, int] = {}
        with self.db.read() as conn:
            for i in range(0, len(ref_ids), _SQL_BATCH):
                chunk = list(ref_ids[i:i + _SQL_BATCH])
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT ref_id, id FROM records WHERE ref_id IN ({marks})"
                if status is not None:
                    sql += f" AND status = '{status.value}'"
                out.update((str(r), int(i_)) for r, i_ in conn.execute(sql, chunk))
        return out

    def ref_ids_of(self, labels: Sequence[int] | npt.NDArray[np.int64]) -> dict[int, str]:
        """label -> ref id for the given labels that exist."""
        wanted = [int(x) for x in labels]
        out: dict[int, str] = {}
        with self.db.read() as conn:
            for i in range(0, len(wanted), _SQL_BATCH):
                chunk = wanted[i:i + _SQL_BATCH]
                marks = ",".join("?" * len(chunk))
                out.update((int(i_), str(r)) for i_, r in
                           conn.execute(f"SELECT id, ref_id FROM records WHERE id IN ({marks})", chunk))
        return out

    def active_labels_by_partition(self) -> dict[str, npt.NDArray[np.int64]]:
        """partition -> sorted labels of its active records (one covering-index scan per partition)."""
        with self.db.read() as conn:
            parts = [str(p) for (p,) in conn.execute("SELECT DISTINCT partition FROM records")]
            return {p: np.fromiter((i for (i,) in conn.execute(
                "SELECT id FROM records WHERE partition = ? AND status = 'active' ORDER BY id", (p,))),
                dtype=np.int64) for p in parts}

    def count(self, status: RecordStatus | None = RecordStatus.ACTIVE, partition: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM records WHERE 1 = 1", []
        if status is not None:
            sql, args = sql + " AND status = ?", [status.value]
        if partition is not None:
            sql, args = sql + " AND partition = ?", [*args, partition]
        with self.db.read() as conn:
            return int(conn.execute(sql, args).fetchone()[0])

    def count_templates(self, modality: Modality) -> int:
        """Templates of ``modality`` held by active records (what its index must contain)."""
        with self.db.read() as conn:
            return int(conn.execute(
                "SELECT COUNT(*) FROM templates t JOIN records r ON r.id = t.record_id "
                "WHERE t.modality = ? AND r.status = 'active'", (modality.value,)).fetchone()[0])

    def active_template_labels(self, modality: Modality) -> tuple[npt.NDArray[np.int64], Template | None]:
        """Labels of the active records holding a ``modality`` template (sorted), and one of those
        templates (decrypted) to probe an index with; (empty, None) when there is none."""
        with self.db.read() as conn:
            labels = np.fromiter((i for (i,) in conn.execute(
                "SELECT t.record_id FROM templates t JOIN records r ON r.id = t.record_id "
                "WHERE t.modality = ? AND r.status = 'active' ORDER BY t.record_id", (modality.value,))),
                dtype=np.int64)
            example: Template | None = None
            for label in labels[:20].tolist():  # the first readable one (a damaged blob is check's to name)
                blob = conn.execute("SELECT blob FROM templates WHERE record_id = ? AND modality = ?",
                                    (label, modality.value)).fetchone()[0]
                try:
                    example = codec.open_template(self.keyring, int(label), modality, blob)
                    break
                except IntegrityError:
                    continue
        return labels, example

    def stats(self) -> dict[str, Any]:
        """Counts per status, per partition and status, active templates per modality, open cases."""
        with self.db.read() as conn:
            by_part: dict[str, dict[str, int]] = {}
            for part, status, n in conn.execute(
                    "SELECT partition, status, COUNT(*) FROM records GROUP BY partition, status"):
                by_part.setdefault(str(part), {})[str(status)] = int(n)
            templates = {str(m): int(n) for m, n in conn.execute(
                "SELECT t.modality, COUNT(*) FROM templates t JOIN records r ON r.id = t.record_id "
                "WHERE r.status = 'active' GROUP BY t.modality")}
            open_cases = int(conn.execute(
                "SELECT COUNT(*) FROM adjudication a JOIN records r ON r.id = a.record_id "
                "WHERE a.outcome IS NULL AND r.status = 'pending'").fetchone()[0])
            last_seq = self._last_seq(conn)
        totals = {s.value: sum(p.get(s.value, 0) for p in by_part.values()) for s in RecordStatus}
        return {"records": totals, "partitions": by_part, "templates": templates,
                "pending_cases": open_cases, "last_seq": last_seq}

    # -- change log (for the indexes) ----------------------------------------------------------

    @staticmethod
    def _last_seq(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])

    def last_seq(self) -> int:
        with self.db.read() as conn:
            return self._last_seq(conn)

    def pages(self, page: int = 20_000) -> Iterator[list[RecordState]]:
        """Every record in label order, ``page`` at a time (:meth:`scan` paged to the end): what a
        rebuild, a shard reload, a dedup job or a data-quality check reads."""
        after = 0
        while True:
            states, _ = self.scan(after, page)
            if not states:
                return
            yield states
            after = states[-1].label

    def scan(self, after_label: int = 0, limit: int = 10_000, since_seq: int | None = None
             ) -> tuple[list[RecordState], int]:
        """Up to ``limit`` records with label > ``after_label`` in label order (only those changed
        after ``since_seq`` when given), with decrypted templates for active ones, and the change
        seq the read saw. Page with ``after_label = states[-1].label``; an empty list ends."""
        changed = ("" if since_seq is None else
                   " AND r.id IN (SELECT record_id FROM changes WHERE seq > :since)")
        args = {"after": after_label, "since": since_seq or 0, "limit": limit}
        with self.db.read() as conn:
            seq = self._last_seq(conn)
            rows = conn.execute(
                f"SELECT r.id, r.partition, r.status FROM records r WHERE r.id > :after{changed} "
                "ORDER BY r.id LIMIT :limit", args).fetchall()
            if not rows:
                return [], seq
            args["last"] = int(rows[-1][0])
            blobs = conn.execute(
                "SELECT t.record_id, t.modality, t.blob FROM templates t "
                "JOIN records r ON r.id = t.record_id WHERE r.id > :after AND r.id <= :last "
                f"AND r.status = 'active'{changed}", args).fetchall()
        templates: dict[int, dict[Modality, Template]] = {}
        unreadable: dict[int, dict[Modality, str]] = {}
        for label, modality, blob in blobs:
            m = Modality(modality)
            try:
                opened = codec.open_template(self.keyring, int(label), m, blob)
                templates.setdefault(int(label), {})[m] = opened
            except IntegrityError as exc:  # one bad row must not stop a rebuild: reported, not raised
                unreadable.setdefault(int(label), {})[m] = exc.reason
        states = [RecordState(int(i), str(p), RecordStatus(s), templates.get(int(i), {}),
                              unreadable.get(int(i), {})) for i, p, s in rows]
        return states, seq

    # -- audit ---------------------------------------------------------------------------------

    def audit_entries(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return audit.entries(conn, after=after, limit=limit)

    def sqlite_check(self, *, quick: bool = False) -> list[str]:
        """SQLite's ``integrity_check`` (or the faster ``quick_check``): the problems found, [] when
        the file is sound."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            with self.db.read() as conn:
                rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}(100)")]
        except IntegrityError as exc:  # so damaged that the check itself cannot run
            return [str(exc)]
        return [] if rows == ["ok"] else rows

    def maintain(self) -> dict[str, int]:
        """Checkpoint, VACUUM and optimize the database (``Database.maintain``)."""
        return self.db.maintain()

    def schema_version(self) -> int:
        with self.db.read() as conn:
            return schema_version(conn)

    def audit_event(self, actor: str, action: str, ref_id: str | None = None,
                    details: Mapping[str, Any] | None = None) -> int:
        """Append an audit row for something that changes no data (a person viewing a record's images
        in the console, a re-capture refused after its 1:1 check). ``details`` must hold no biometric
        or personal data."""
        with self.db.write() as conn:
            return audit.append(conn, actor, action, ref_id, details)

    def audit_of(self, ref_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """The newest ``limit`` audit rows about one record, oldest first (a record's history)."""
        with self.db.read() as conn:
            return audit.entries_of(conn, ref_id, limit=limit)

    def cases_naming(self, ref_id: str, limit: int = 100) -> list[tuple[str, str | None]]:
        """``(waiting record's ref id, outcome or None while open)`` of the newest ``limit`` adjudication
        cases that name ``ref_id`` as a candidate (who a record was compared with, from its side)."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT r.ref_id, a.outcome FROM adjudication a JOIN records r ON r.id = a.record_id, "
                "json_each(a.candidates) j WHERE json_extract(j.value, '$.ref_id') = ? "
                "ORDER BY a.created DESC LIMIT ?", (ref_id, limit)).fetchall()
        return [(str(r), None if o is None else str(o)) for r, o in rows]

    def verify_audit(self, anchor: audit.AuditAnchor | None = None, *, quick: bool = False) -> AuditReport:
        """Check the keyed audit chain (``engine.store.audit.verify``): every row, or with ``quick`` and
        an ``anchor`` only from the anchored row on; a missing tail is found against the anchor."""
        with self.db.read() as conn:
            return audit.verify(conn, self._chain, anchor, quick=quick)

    def audit_head(self) -> audit.AuditAnchor | None:
        """The newest audit row's seq and MAC (what the snapshot sidecar and the log anchor)."""
        with self.db.read() as conn:
            return audit.head(conn)

    # -- tokens --------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, *, actor: str = "system",
                     key: IdempotencyKey | None = None) -> tuple[str, str]:
        """A new API token: returns ``(token_id, secret)``; the secret is shown once, never stored in
        clear. With ``key`` (see ``engine.store.idempotency``) a repeat returns the same token instead
        of making a second one: for that the secret is kept encrypted under the data key, like
        templates, for the retention window."""
        idem = None if key is None else Idempotent(key, lambda r: {"token_id": r[0], "secret": r[1]})
        try:
            with self.db.write() as conn:
                idempotency.begin(conn, self.keyring, idem)
                info, secret = tokens.create(conn, name, role)
                audit.append(conn, actor, "create_token", None, {"token_id": info.token_id, "role": role})
                idempotency.finish(conn, self.keyring, idem, (info.token_id, secret))
        except idempotency.Replay as replay:
            return str(replay.result["token_id"]), str(replay.result["secret"])
        return info.token_id, secret

    def authenticate(self, secret: str) -> TokenInfo | None:
        """The active token for ``secret``, or None. Updates ``last_used`` at most once a minute."""
        with self.db.read() as conn:
            info = tokens.find(conn, secret)
        if info is None:
            return None
        now = time.time()
        if info.last_used is None or now - info.last_used >= tokens.LAST_USED_RESOLUTION_S:
            with self.db.write() as conn:
                tokens.touch(conn, info.token_id, now)
        return info

    def list_tokens(self) -> list[TokenInfo]:
        with self.db.read() as conn:
            return tokens.list_all(conn)

    def revoke_token(self, token_id: str, *, actor: str = "system",
                     key: IdempotencyKey | None = None) -> None:
        """Revoke an active token. Raises ``NotFound`` for an unknown or already revoked id (unless this
        is a repeat of the same revocation under ``key``), ``Conflict`` (LAST_ADMIN_TOKEN) for the last
        active admin token: nobody could manage tokens afterwards."""
        idem = None if key is None else Idempotent(key, lambda _: {"token_id": token_id})
        try:
            with self.db.write() as conn:
                idempotency.begin(conn, self.keyring, idem)
                tokens.revoke(conn, token_id)
                audit.append(conn, actor, "revoke_token", None, {"token_id": token_id})
                idempotency.finish(conn, self.keyring, idem, None)
        except idempotency.Replay:
            return

    # -- idempotency ---------------------------------------------------------------------------

    def idempotent_result(self, key: IdempotencyKey) -> dict[str, Any] | None:
        """The remembered result of an earlier write with ``key`` (None: none within the window). A
        cheap look before expensive work; the write itself checks again in its transaction."""
        with self.db.read() as conn:
            return idempotency.lookup(conn, self.keyring, key)
