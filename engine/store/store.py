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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.crypto import KeyRing, associated_data
from engine.errors import AlreadyExists, Conflict, InvalidInput, ModelMismatch, NotFound
from engine.store import audit, codec, tokens
from engine.store.adjudication import AdjudicationMixin
from engine.store.db import Database
from engine.store.schema import SCHEMA_VERSION, migrate
from engine.store.values import AuditReport, Record, RecordStatus, TokenInfo, WriteResult
from engine.types import Modality, ModelRef, Template

__all__ = ["RecordState", "Store"]

log = logging.getLogger(__name__)

_SQL_BATCH = 900  # host parameters per IN (...) query, well under SQLite's limit


@dataclass(frozen=True)
class RecordState:
    """A record's current index-relevant state (for replay and rebuild): templates only when active."""

    label: int
    partition: str
    status: RecordStatus
    templates: dict[Modality, Template]


class Store(AdjudicationMixin):
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
        except BaseException:
            self.db.close()
            raise
        if found != SCHEMA_VERSION:
            log.info("database schema migrated from version %d to %d", found, SCHEMA_VERSION)

    def close(self) -> None:
        self.db.close()

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
        shape = codec.shape_of(modality, template)
        self._ensure_model(conn, modality, template.model, replace_if_empty=False)
        key = f"shape.{modality.value}"
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, shape))
        elif row[0] != shape:
            raise InvalidInput(f"{modality.value} template shape {shape} differs from the gallery's {row[0]}",
                               reason="INVALID_TEMPLATE")

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
        actor: str = "system",
    ) -> WriteResult:
        """Store a new record (``ref_id`` generated when None). ``status`` is ACTIVE or PENDING; a
        PENDING record carries the ``candidates`` that made it a suspected duplicate. ``images`` are
        kept (encrypted) only when the store was opened with ``keep_images``.

        Raises ``AlreadyExists`` (also for the id of a deleted record: ids are never reused),
        ``ModelMismatch``, ``InvalidInput``.
        """
        ref_id = codec.check_ref_id(ref_id) if ref_id is not None else uuid.uuid4().hex
        codec.check_partition(partition)
        attrs = codec.check_attributes(attributes)
        if status is RecordStatus.DELETED:
            raise InvalidInput("a record cannot be inserted as deleted", reason="INVALID_STATUS")
        if (candidates is not None) != (status is RecordStatus.PENDING):
            raise InvalidInput("candidates are given exactly for pending records", reason="INVALID_REQUEST")
        if not templates:
            raise InvalidInput("a record needs at least one template", reason="NO_BIOMETRIC_DATA")
        slots = {Modality(m): t for m, t in templates.items()}
        now = time.time()
        with self.db.write() as conn:
            existing = conn.execute("SELECT status FROM records WHERE ref_id = ?", (ref_id,)).fetchone()
            if existing is not None:
                raise AlreadyExists(f"reference id {ref_id} already exists",
                                    details={"ref_id": ref_id, "status": existing[0]})
            for modality, template in slots.items():
                self._check_template(conn, modality, template)
            cur = conn.execute(
                "INSERT INTO records (ref_id, partition, status, attributes, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)", (ref_id, partition, status.value, attrs, now, now))
            label = int(cur.lastrowid or 0)
            for modality, template in slots.items():
                conn.execute(
                    "INSERT INTO templates (record_id, modality, model_id, model_version, key_id, blob) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (label, modality.value, template.model.model_id, template.model.version,
                     self.keyring.key_id, codec.seal_template(self.keyring, label, modality, template)))
            if images and self.keep_images:
                for modality, image in images.items():
                    slot = Modality(modality).value
                    blob = self.keyring.encrypt(bytes(image), associated_data("image", label, slot))
                    conn.execute("INSERT INTO images (record_id, modality, key_id, blob) VALUES (?, ?, ?, ?)",
                                 (label, slot, self.keyring.key_id, blob))
            if candidates is not None:
                self._open_case(conn, label, candidates, now)
            seq = self._change(conn, label, "upsert", now)
            audit.append(conn, actor, "insert", ref_id,
                         {"status": status.value, "partition": partition,
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

    def delete(self, ref_id: str, *, actor: str = "system") -> WriteResult:
        """Erase the record's templates, images and attributes; keep the row as DELETED (audit trail)."""
        with self.db.write() as conn:
            label, current = self._live(conn, ref_id)
            seq = self._erase(conn, label)
            audit.append(conn, actor, "delete", ref_id, {"from": current.value})
        return WriteResult(ref_id, label, seq)

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
        for label, modality, blob in blobs:
            m = Modality(modality)
            templates.setdefault(int(label), {})[m] = codec.open_template(self.keyring, int(label), m, blob)
        states = [RecordState(int(i), str(p), RecordStatus(s), templates.get(int(i), {})) for i, p, s in rows]
        return states, seq

    # -- audit ---------------------------------------------------------------------------------

    def audit_entries(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return audit.entries(conn, after=after, limit=limit)

    def verify_audit(self) -> AuditReport:
        with self.db.read() as conn:
            return audit.verify(conn)

    # -- tokens --------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, *, actor: str = "system") -> tuple[str, str]:
        """A new API token: returns ``(token_id, secret)``; the secret is shown once, never stored."""
        with self.db.write() as conn:
            info, secret = tokens.create(conn, name, role)
            audit.append(conn, actor, "create_token", None, {"token_id": info.token_id, "role": role})
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

    def revoke_token(self, token_id: str, *, actor: str = "system") -> None:
        """Revoke an active token. Raises ``NotFound`` for an unknown or already revoked id."""
        with self.db.write() as conn:
            if not tokens.revoke(conn, token_id):
                raise NotFound(f"no active token {token_id}", reason="TOKEN_NOT_FOUND")
            audit.append(conn, actor, "revoke_token", None, {"token_id": token_id})
