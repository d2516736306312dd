"""Gallery = the durable ``Store`` + one in-memory ``TemplateIndex`` per modality.

Write path (insert / set_status / delete / decide): validate -> one SQLite transaction (record,
encrypted templates, change row, audit row) -> commit (= acknowledgement; durable) -> apply to the
in-memory indexes under the writer side of a readers-writer lock -> return. Writes are serialised by a
mutex around that whole sequence, so indexes apply changes in commit order; searches hold the reader
side only while an index is being searched (FAISS / BLAS / numba release the GIL, so searches run in
parallel). Only ACTIVE records are in the indexes. Once ``insert`` returns, every later search sees
the record; once ``delete`` returns, no later search returns it.

Indexes are derived data. ``snapshot()`` saves each index with the last change seq it contains; on open
the gallery loads the snapshot when its models fit and replays newer changes (idempotent: a changed
record's *current* state is applied), or rebuilds from the store. A background thread snapshots every
``snapshot_every`` changes or ``snapshot_interval_s`` seconds; close() snapshots too. Snapshot files
are sealed (``engine.store.sealed``: encrypted and authenticated under a key derived from the data
key); one that fails authentication is rebuilt from the store with a warning.

A stored template that cannot be read (``RecordState.unreadable``) never stops the open: its record is
*quarantined* (in no index, named by label in the log, counted in ``stats``, listed by
:meth:`Gallery.quarantined`, kept in the sidecar) until an admin restores or deletes it. The open also
checks the audit chain from the anchor the sidecar keeps (``engine.store.audit``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt

from engine.crypto import KeyRing
from engine.datadir import DataDir
from engine.errors import InvalidInput, ModelMismatch, NasnameError, Unavailable
from engine.index.base import TemplateIndex
from engine.store import (
    AuditReport,
    NewRecord,
    PendingCase,
    Quarantined,
    Record,
    RecordState,
    RecordStatus,
    WriteResult,
    sealed,
)
from engine.store import snapshots as snap
from engine.store.audit import AuditAnchor
from engine.store.idempotency import Idempotent
from engine.store.locks import RWLock
from engine.store.partitions import PartitionMap
from engine.types import (
    FaceTemplate,
    IrisTemplate,
    Modality,
    ModelRef,
    Template,
    check_template,
    template_shape,
)

if TYPE_CHECKING:
    from engine.config import EngineConfig

__all__ = ["Gallery", "GalleryConfig", "Hit", "IndexFactory", "IndexLoader", "Quarantined",
           "default_index_factory", "load_index"]

log = logging.getLogger(__name__)

IndexFactory = Callable[[Modality, Template], TemplateIndex]
"""Makes an empty index for templates like the given one (its model, its dimension / code size)."""
IndexLoader = Callable[[Modality, ModelRef, BinaryIO], TemplateIndex]
"""Reads a snapshot written by ``TemplateIndex.save`` (of that model) from the decrypted stream it is
given; raises a ``NasnameError`` when unusable (the gallery then rebuilds from the store)."""

_PAGE = 20_000  # records per page when rebuilding / replaying


@dataclass(frozen=True)
class GalleryConfig:
    keep_images: bool = False  # keep (encrypted) sample images given to insert
    snapshot_every: int = 10_000  # changes between background snapshots (0 = never by count)
    snapshot_interval_s: float = 300.0  # max seconds a change waits for a snapshot (0 = never by time)
    snapshot_on_close: bool = True


@dataclass(frozen=True)
class Hit:
    """One search result: ``similarity`` per ``engine.types`` (higher = more alike)."""

    ref_id: str
    label: int
    similarity: float


class Gallery:
    """Open the gallery in ``directory`` (a path: opened here as an exclusive ``DataDir`` with
``keyring``; or an open ``DataDir``, which the gallery then owns and closes).

    A modality's index is created (``index_factory``) when its first template arrives, or on open
    when the store holds templates of it. ``models`` optionally pins the model of some modalities up
    front; otherwise the first template of a modality fixes its model, and a template of another
    model is refused with ``ModelMismatch`` (as is reopening with pins that contradict the store).
    Raises ``Unavailable`` when another process has the directory open.
    """

    def __init__(self, directory: Path | DataDir, keyring: KeyRing | None, index_factory: IndexFactory,
                 index_loader: IndexLoader | None = None, *,
                 models: Mapping[Modality, ModelRef] | None = None,
                 config: GalleryConfig | None = None) -> None:
        self.config = config or GalleryConfig()
        # The gallery owns its data directory (engine.datadir): given open, or opened here (exclusive).
        self.datadir = directory if isinstance(directory, DataDir) else DataDir.open(
            Path(directory), keyring=keyring, keep_images=self.config.keep_images)
        self.directory = self.datadir.root
        self.store = self.datadir.store
        self._keyring = self.datadir.keyring  # sealed snapshots and their sidecar derive keys from it
        self._factory = index_factory
        self._loader = index_loader
        self._snap_dir = self.datadir.snapshot_dir
        self._snap_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._rw = RWLock()
        self._write_mutex = threading.RLock()
        self._indexes: dict[Modality, TemplateIndex] = {}
        self._parts = PartitionMap()
        self._quarantine: dict[int, Quarantined] = {}
        self._applied_seq = 0
        self._snapshot_seq = -1
        self._snapshot_anchor: AuditAnchor | None = None
        # the quarantine changed the indexes without a new change seq: the next snapshot rewrites them
        self._indexes_moved = False
        self._audit_report: AuditReport | None = None
        self._stale = False  # an index failed to apply a committed change: never snapshot that state
        self._closed = False
        try:
            for modality, model in (models or {}).items():
                self.store.set_model(modality, model)
            self._models = self.store.models()
            self._shapes = self.store.shapes()
            self._open_indexes()
        except BaseException:
            self.datadir.close()
            raise
        self._scheduler = snap.SnapshotScheduler(self.snapshot, self.config.snapshot_every,
                                                 self.config.snapshot_interval_s,
                                                 pending=self._applied_seq - max(self._snapshot_seq, 0))

    @classmethod
    def open(cls, config: EngineConfig) -> Gallery:
        """The gallery of an engine configuration: its data directory (``engine.datadir``: lock, key
        from the environment or key file, created only for a new directory, store), the configured
        index kinds (on Ray shard actors with ``[cluster] backend = "ray"``, ``engine.cluster``),
        snapshots every ``config.snapshot_every`` changes."""
        factory, loader = default_index_factory(config.face_index, config.iris_index), load_index
        cluster = None
        if config.cluster.backend == "ray":  # indexes on Ray shard actors (engine.cluster)
            from engine.cluster.backend import RayBackend

            cluster = RayBackend.start(config.cluster, config.face_index, config.iris_index)
            factory, loader = cluster.index_factory, cluster.index_loader
        try:
            gallery = cls(DataDir.from_config(config), None, factory, loader,
                          config=GalleryConfig(keep_images=config.keep_images,
                                               snapshot_every=config.snapshot_every))
        except BaseException:
            if cluster is not None:
                cluster.close()
            raise
        if cluster is not None:
            cluster.bind(gallery.store)  # restarted shards reload from the store of record
        return gallery

    def models(self) -> dict[Modality, ModelRef]:
        """The model of each modality that has one (fixed by pins or by its first template)."""
        return dict(self._models)

    # -- open: snapshot + replay, or rebuild ----------------------------------------------------

    def _open_indexes(self) -> None:
        started = time.perf_counter()
        for part, labels in self.store.active_labels_by_partition().items():
            self._parts.set(labels, part)
        how = "loaded snapshot"
        try:
            if not self._load_snapshot() or not self._consistent():
                how = "rebuilt"
        except NasnameError as exc:
            log.warning("index snapshot unusable (%s); rebuilding from the store", exc)
            how = "rebuilt"
        if how == "rebuilt":
            self._stale = False
            self._indexes = {}
            self._quarantine = {}
            self._applied_seq = self._replay(None)
            self._snapshot_seq = -1
            if not self._consistent():
                raise Unavailable("indexes rebuilt from the store do not match it",
                                  reason="INDEX_INCONSISTENT")
        log.info("gallery open (%s) at change %d in %.2f s", how, self._applied_seq,
                 time.perf_counter() - started)
        self._check_audit()
        if self._quarantine:
            log.error("%d record(s) quarantined (unreadable stored template; not searchable): labels %s",
                      len(self._quarantine), ", ".join(map(str, sorted(self._quarantine)[:20])))

    def _anchor(self) -> AuditAnchor | None:
        """The audit anchor of the snapshot sidecar (None when there is no usable sidecar)."""
        try:
            found = snap.read_sidecar(self._snap_dir, self._keyring)
        except NasnameError as exc:
            log.warning("no audit anchor: %s", exc)
            return None
        return None if found is None else found.audit

    def _check_audit(self) -> None:
        """Quick check of the audit chain at open: from the sidecar's anchor to the end (everything
        when there is no anchor). Tampering is logged loudly and shown in ``stats``; the gallery still
        opens (registration goes on; the damage is named for whoever investigates)."""
        started = time.perf_counter()
        anchor = self._anchor()
        report = self.store.verify_audit(anchor, quick=anchor is not None)
        self._audit_report = report
        if report.ok:
            log.info("%s from %s in %.2f s", report.describe(),
                     f"anchor seq {anchor.seq}" if anchor else "the first row", time.perf_counter() - started)
        else:
            log.error("%s; run `nasname check` and compare with backups", report.describe())
        self._log_audit_head()

    def _log_audit_head(self) -> None:
        """The periodic anchor in the log: the chain's newest seq and MAC (no personal data)."""
        head = self.store.audit_head()
        if head is not None:
            log.info("audit chain head seq %d mac %s", head.seq, head.head)

    def check_templates(self) -> list[tuple[str, Quarantined]]:
        """Decrypt and validate every stored template of the active records (what ``nasname check``
        runs; reads the whole store). A record found unreadable is quarantined now, even when a loaded
        snapshot still holds an older good copy of it in an index: the store of record can no longer
        back it, and the next rebuild would drop it anyway. Returns :meth:`quarantined`."""
        self._check_open()
        for states in self.store.pages(_PAGE):
            for s in states:
                if s.unreadable and s.label not in self._quarantine:
                    with self._write_mutex:  # re-read under the mutex: a write may have changed it
                        fresh, seq = self.store.scan(s.label - 1, 1)
                        self._apply([f for f in fresh if f.label == s.label], seq)
        return self.quarantined()

    def verify_audit(self) -> AuditReport:
        """Full check of the audit chain, against the snapshot sidecar's anchor (a deleted tail shows)
        as well as SQLite's sequence counter: what ``nasname check`` reports."""
        self._check_open()
        return self.store.verify_audit(self._anchor())

    def _consistent(self) -> bool:
        """Cheap check that each index holds as many templates as the store has for active records."""
        for modality in Modality:
            index = self._indexes.get(modality)
            expected = self.store.count_templates(modality) - sum(
                modality in q.modalities for q in self._quarantine.values())
            size = 0 if index is None else len(index)
            if size != expected:
                log.warning("%s index holds %d templates, the store %d", modality.value, size, expected)
                return False
        return True

    def _load_snapshot(self) -> bool:
        legacy = snap.legacy_files(self._snap_dir)
        if legacy:  # an older nasname wrote templates in clear there: rebuild, and remove them now
            snap.remove_unreferenced(self._snap_dir, set())
            (self._snap_dir / snap.SIDECAR).unlink(missing_ok=True)
            log.warning("removed %d unencrypted index snapshot file(s) of an older nasname; rebuilding",
                        len(legacy))
            return False
        found = snap.read_sidecar(self._snap_dir, self._keyring)
        if found is None or self._loader is None:
            return False
        if any(self._models.get(m) != model for m, model in found.models.items()) \
                or found.seq > self.store.last_seq():
            log.info("index snapshot does not fit (other models, or newer than the store); rebuilding")
            return False
        loader = self._loader
        indexes: dict[Modality, TemplateIndex] = {}
        for m, path in found.files.items():
            with sealed.open_sealed(path, self._keyring, snap.index_identity(m, found.seq)) as plain:
                indexes[m] = loader(m, found.models[m], plain)
        for m, index in indexes.items():
            if index.model != found.models[m]:
                raise ModelMismatch(f"{m.value} snapshot holds {index.model}, expected {found.models[m]}")
        self._indexes = indexes
        self._quarantine = {q.label: q for q in found.quarantined}
        quarantined = np.array(sorted(self._quarantine), dtype=np.int64)
        self._parts.set(quarantined, None)
        self._snapshot_seq = found.seq
        self._applied_seq = self._replay(found.seq)
        if quarantined.size:  # retried on every open: a restored row or a key back in the ring heals it
            for label in quarantined.tolist():
                states, _ = self.store.scan(label - 1, 1)
                self._apply([s for s in states if s.label == label], self._applied_seq)
        return True

    def _replay(self, since_seq: int | None) -> int:
        """Apply the current state of every record changed after ``since_seq`` (all when None)."""
        seq, after = since_seq or 0, 0
        while True:
            states, seen = self.store.scan(after, _PAGE, since_seq)
            if not states:
                return max(seq, seen)
            self._apply(states, seen, remove_first=since_seq is not None)
            seq, after = max(seq, seen), states[-1].label

    def _apply(self, states: Sequence[RecordState], seq: int, *, remove_first: bool = True) -> None:
        """Make the indexes, the partition map and the quarantine reflect ``states`` (idempotent)."""
        labels = np.fromiter((s.label for s in states), dtype=np.int64, count=len(states))
        active = [s for s in states if s.status is RecordStatus.ACTIVE and not s.unreadable]
        bad = [s for s in states if s.status is RecordStatus.ACTIVE and s.unreadable]
        try:
            with self._rw.write():
                if remove_first:
                    for index in self._indexes.values():
                        index.remove(labels)
                    self._parts.set(labels, None)
                bad_labels = {s.label for s in bad}
                for s in states:  # entering or leaving quarantine changes the indexes at the same seq
                    if (self._quarantine.pop(s.label, None) is not None) != (s.label in bad_labels):
                        self._indexes_moved = True
                if bad:
                    out = np.array([s.label for s in bad], dtype=np.int64)
                    for index in self._indexes.values():
                        index.remove(out)
                    self._parts.set(out, None)
                    for s in bad:
                        self._quarantine[s.label] = Quarantined(
                            s.label, dict(s.unreadable), tuple(sorted({*s.templates, *s.unreadable})))
                for modality in Modality:
                    have = [s for s in active if modality in s.templates]
                    if have:
                        index = self._index_for(modality, have[0].templates[modality])
                        index.add(np.fromiter((s.label for s in have), dtype=np.int64, count=len(have)),
                                  [s.templates[modality] for s in have])
                by_part: dict[str, list[int]] = {}
                for s in active:
                    by_part.setdefault(s.partition, []).append(s.label)
                for part, members in by_part.items():
                    self._parts.set(np.array(members, dtype=np.int64), part)
                self._applied_seq = max(self._applied_seq, seq)
        except BaseException:
            self._stale = True
            log.error("an index failed to apply a committed change; snapshots disabled until reopen")
            raise
        for s in bad:  # the internal label only: reference ids stay out of logs
            log.error("record %d quarantined: %s unreadable; out of every search until an admin restores "
                      "or deletes it", s.label, ", ".join(f"{m.value} template ({r})"
                                                          for m, r in sorted(s.unreadable.items())))

    def _index_for(self, modality: Modality, example: Template) -> TemplateIndex:
        """The modality's index, created from ``example`` when missing (caller holds the writer lock)."""
        index = self._indexes.get(modality)
        if index is None:
            index = self._indexes[modality] = self._factory(modality, example)
        return index

    # -- writes -------------------------------------------------------------------------------

    def insert(self, templates: Mapping[Modality, Template], *, ref_id: str | None = None,
               partition: str = "", attributes: Mapping[str, Any] | None = None,
               status: RecordStatus = RecordStatus.ACTIVE,
               candidates: Sequence[Mapping[str, Any]] | None = None,
               images: Mapping[Modality, bytes] | None = None,
               qualities: Mapping[Modality, float] | None = None, actor: str = "system",
               idem: Idempotent | None = None) -> WriteResult:
        """Store a record (see ``Store.insert`` for arguments and errors). Durable when this returns;
        an ACTIVE record is then also searchable."""
        self._check_open()
        slots = {Modality(m): t for m, t in templates.items()}
        with self._write_mutex:
            new = [m for m in slots if m not in self._indexes]
            try:
                for modality, template in slots.items():
                    self._validate(modality, template)
                result = self.store.insert(slots, ref_id=ref_id, partition=partition, attributes=attributes,
                                           status=status, candidates=candidates, images=images,
                                           qualities=qualities, actor=actor, idem=idem)
            except BaseException:
                with self._rw.write():  # forget indexes made for a first template that was refused
                    for m in new:
                        self._indexes.pop(m, None)
                raise
            for m, t in slots.items():
                self._models.setdefault(m, t.model)
                self._shapes.setdefault(m, template_shape(t))
            self._apply([RecordState(result.label, partition, status, slots)], result.seq, remove_first=False)
        self._scheduler.changed()
        return result

    def insert_many(self, records: Sequence[NewRecord], *, actor: str = "system",
                    also: Callable[[sqlite3.Connection, list[WriteResult]], None] | None = None
                    ) -> list[WriteResult]:
        """Store several records and ``also``'s rows in one transaction (``Store.insert_many``): all
        durable, and the ACTIVE ones searchable, when this returns; or none written. The batched
        write path (a transfer import's block of records with its checkpoint)."""
        self._check_open()
        slots = [{Modality(m): t for m, t in r.templates.items()} for r in records]
        with self._write_mutex:
            new = {m for s in slots for m in s if m not in self._indexes}
            try:
                for s in slots:
                    for modality, template in s.items():
                        self._validate(modality, template)
                results = self.store.insert_many(records, actor=actor, also=also)
            except BaseException:
                with self._rw.write():  # forget indexes made for a first template that was refused
                    for m in new:
                        self._indexes.pop(m, None)
                raise
            for s in slots:
                for m, t in s.items():
                    self._models.setdefault(m, t.model)
                    self._shapes.setdefault(m, template_shape(t))
            if results:
                self._apply([RecordState(w.label, r.partition, r.status, s)
                             for w, r, s in zip(results, records, slots, strict=True)],
                            max(w.seq for w in results), remove_first=False)
        self._scheduler.changed(len(results))
        return results

    def set_status(self, ref_id: str, status: RecordStatus, *, actor: str = "system") -> WriteResult:
        """ACTIVE <-> PENDING (see ``Store.set_status``); indexes follow before this returns."""
        self._check_open()
        with self._write_mutex:
            result = self.store.set_status(ref_id, status, actor=actor)
            self._resync(result)
        self._scheduler.changed()
        return result

    def delete(self, ref_id: str, *, actor: str = "system", idem: Idempotent | None = None) -> WriteResult:
        """Erase the record's biometrics; it is out of every search when this returns. Unknown or
        already deleted -> ``NotFound``."""
        self._check_open()
        with self._write_mutex:
            result = self.store.delete(ref_id, actor=actor, idem=idem)
            self._resync(result)
            self._forget_released_models()
        self._scheduler.changed()
        return result

    def decide(self, ref_id: str, decision: str, *, actor: str, comment: str = "", final: bool = True,
               idem: Idempotent | None = None, mate: str | None = None) -> WriteResult | None:
        """Adjudicate a pending record (see ``engine.store.adjudication``): a final ``distinct`` makes
        it ACTIVE (searchable when this returns), a final ``same`` erases it. None when not final."""
        self._check_open()
        with self._write_mutex:
            result = self.store.decide(ref_id, decision, actor=actor, comment=comment, final=final,
                                       idem=idem, mate=mate)
            if result is not None:
                self._resync(result)
                self._forget_released_models()
        self._scheduler.changed()
        return result

    def reopen(self, ref_id: str, *, actor: str, reason: str) -> WriteResult:
        """Reopen a ``distinct`` decision (see ``Store.reopen``): out of every search when this returns."""
        return self._write(lambda: self.store.reopen(ref_id, actor=actor, reason=reason))

    def replace_template(self, ref_id: str, modality: Modality, template: Template, *,
                         image: bytes | None = None, actor: str = "system") -> WriteResult:
        """Add or replace one modality of an ACTIVE record (see ``Store.replace_template``); searches see
        the new template when this returns."""

        def write() -> WriteResult:
            self._validate(modality, template)  # under the write mutex, as _validate wants
            result = self.store.replace_template(ref_id, modality, template, image=image, actor=actor)
            self._models.setdefault(modality, template.model)
            return result

        return self._write(write)

    def _write(self, write: Callable[[], WriteResult]) -> WriteResult:
        self._check_open()
        with self._write_mutex:
            result = write()
            self._resync(result)
        self._scheduler.changed()
        return result

    def open_case(self, ref_id: str, candidates: Sequence[Mapping[str, Any]], *, actor: str) -> WriteResult:
        """Queue an ACTIVE record for adjudication (see ``Store.open_case``); it is out of every search
        when this returns, and back in after a final ``distinct`` decision."""
        self._check_open()
        with self._write_mutex:
            result = self.store.open_case(ref_id, candidates, actor=actor)
            self._resync(result)
        self._scheduler.changed()
        return result

    def _forget_released_models(self) -> None:
        """Follow the store when an erase released a modality's model (its last template went): drop
        the pin and the empty index, so the next template of that modality starts them anew."""
        models = self.store.models()
        if models != self._models:
            with self._rw.write():
                for m in set(self._models) - set(models):
                    if m in self._indexes and len(self._indexes[m]) == 0:
                        del self._indexes[m]
                self._models = models

    def _resync(self, result: WriteResult) -> None:
        states, _ = self.store.scan(result.label - 1, 1)
        self._apply([s for s in states if s.label == result.label], result.seq)

    def _validate(self, modality: Modality, template: Template) -> None:
        """Refuse before committing what the index would refuse after (kind, shape, model).
        Called under the write mutex."""
        check_template(modality, template, self._shapes.get(modality))
        model = self._models.get(modality)
        if model is not None and template.model != model:
            raise ModelMismatch(f"{modality.value} template of {template.model}; the gallery uses {model}",
                                details={"modality": modality.value, "gallery_model": str(model),
                                         "template_model": str(template.model)})
        index = self._indexes.get(modality)
        if index is None:
            with self._rw.write():
                index = self._index_for(modality, template)
        # an empty restricted search checks the template against the index without touching any data
        index.search([template], 1, np.empty(0, dtype=np.int64))

    # -- reads --------------------------------------------------------------------------------

    def search(self, modality: Modality, probe: Template, k: int, *, partition: str | None = None,
               ref_ids: Sequence[str] | None = None) -> list[Hit]:
        """Top-``k`` ACTIVE records for one probe, best first (see :meth:`search_many`)."""
        return self.search_many(modality, [probe], k, partition=partition, ref_ids=ref_ids)[0]

    def search_many(self, modality: Modality, probes: Sequence[Template], k: int, *,
                    partition: str | None = None, ref_ids: Sequence[str] | None = None) -> list[list[Hit]]:
        """Top-``k`` ACTIVE records per probe (one batched index search), best first, restricted to
        a ``partition`` and/or an explicit list of ``ref_ids`` (both given = intersection). One list
        of at most ``k`` hits per probe; empty when the modality holds no template yet."""
        scores, labels = self.search_labels(modality, probes, k, partition=partition, ref_ids=ref_ids)
        names = self.store.ref_ids_of(np.unique(labels[labels >= 0]))
        return [[Hit(names[int(lab)], int(lab), float(s)) for s, lab in zip(scores[q], labels[q], strict=True)
                 if lab >= 0 and int(lab) in names] for q in range(labels.shape[0])]

    def search_labels(self, modality: Modality, probes: Sequence[Template], k: int, *,
                      partition: str | None = None, ref_ids: Sequence[str] | None = None
                      ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """As :meth:`search_many`, but the raw ``(D, I)`` arrays (labels, -1 padding) without the
        store lookup of reference ids: the hot path of identify names only the candidates it keeps."""
        self._check_open()
        if k < 1:
            raise InvalidInput("k must be >= 1", reason="INVALID_K")
        modality = Modality(modality)
        for probe in probes:
            check_template(modality, probe, self._shapes.get(modality))
        listed = None
        if ref_ids is not None:
            listed = np.fromiter(self.store.labels_of(list(ref_ids)).values(), dtype=np.int64)
        with self._rw.read():
            index = self._indexes.get(modality)
            if index is None:
                return (np.full((len(probes), 0), -np.inf, dtype=np.float32),
                        np.full((len(probes), 0), -1, dtype=np.int64))
            allowed = listed
            if partition is not None:
                in_part = self._parts.labels(partition)
                allowed = in_part if listed is None else np.intersect1d(in_part, listed)
            return index.search(list(probes), k, allowed)

    def score(self, modality: Modality, template: Template, labels: npt.NDArray[np.int64]
              ) -> npt.NDArray[np.float32]:
        """1:1 similarity of ``template`` to each label's ``modality`` template; NaN where the label has
        none or is not ACTIVE (verify: labels from ``get(ref_id).label``)."""
        self._check_open()
        check_template(Modality(modality), template, self._shapes.get(Modality(modality)))
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        with self._rw.read():
            index = self._indexes.get(Modality(modality))
            if index is None:
                return np.full(labels.size, np.nan, dtype=np.float32)
            return np.asarray(index.score(template, labels), dtype=np.float32)

    def scratch_index(self, modality: Modality, templates: Sequence[Template]) -> TemplateIndex:
        """A throw-away exact index of just ``templates`` (labels ``0..n-1``), checked as the gallery
        checks a probe; the gallery is not touched: what a batch of new records is searched against
        besides the gallery (``Engine.enroll_many``)."""
        self._check_open()
        modality = Modality(modality)
        if not templates:
            raise InvalidInput("a scratch index needs templates", reason="INVALID_REQUEST")
        for t in templates:
            check_template(modality, t, self._shapes.get(modality))
        index = default_index_factory()(modality, templates[0])
        index.add(np.arange(len(templates), dtype=np.int64), list(templates))
        return index

    def get(self, ref_id: str, *, with_templates: bool = True) -> Record:
        """The record (decrypted templates unless ``with_templates=False``). Raises ``NotFound``."""
        return self.store.get(ref_id, with_templates=with_templates)

    def ref_ids_of(self, labels: Sequence[int] | npt.NDArray[np.int64]) -> dict[int, str]:
        """label -> ref id for the labels that exist."""
        return self.store.ref_ids_of(labels)

    def count(self, status: RecordStatus | None = RecordStatus.ACTIVE, partition: str | None = None) -> int:
        """Records with ``status`` (None = any), in ``partition`` (None = all). Active counts come
        from memory (every identify needs the gallery size for its threshold), others from SQL."""
        if status is RecordStatus.ACTIVE:
            self._check_open()
            with self._rw.read():
                return self._parts.count(partition)
        return self.store.count(status, partition)

    def partitions_of(self, labels: npt.NDArray[np.int64]) -> list[str]:
        """Partition of each active label ("" for labels no longer active)."""
        with self._rw.read():
            return self._parts.names(np.asarray(labels, dtype=np.int64).reshape(-1))

    def pending(self, *, partition: str | None = None, limit: int = 100, after_label: int = 0
                ) -> list[PendingCase]:
        """Open adjudication cases (see ``Store.pending``)."""
        return self.store.pending(partition=partition, limit=limit, after_label=after_label)

    def stats(self) -> dict[str, Any]:
        """``Store.stats`` (``records`` per status, ``partitions`` -> status -> n, ``templates`` per
        modality of active records, ``pending_cases``, ``last_seq``) plus ``total``, ``by_status``,
        ``by_partition`` (active records), ``by_modality``, ``indexes`` (templates per index),
        ``quarantined`` (active records out of the indexes: unreadable template), ``applied_seq`` and
        ``snapshot_seq``."""
        raw = self.store.stats()
        by_status: dict[str, int] = raw["records"]
        out: dict[str, Any] = {
            **raw,
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_partition": {p: n.get("active", 0) for p, n in raw["partitions"].items()},
            "by_modality": raw["templates"],
        }
        with self._rw.read():
            out["indexes"] = {m.value: len(ix) for m, ix in self._indexes.items()}
            out["applied_seq"] = self._applied_seq
            out["quarantined"] = len(self._quarantine)
        report = self._audit_report
        out["audit_ok"] = report is None or report.ok
        out["audit_problem"] = "" if report is None or report.ok else report.describe()
        out["snapshot_seq"] = self._snapshot_seq
        return out

    def quarantined(self) -> list[tuple[str, Quarantined]]:
        """``(ref_id, Quarantined)`` of every ACTIVE record left out of the indexes because a stored
        template of it is unreadable, in label order. Erase one with :meth:`delete`; one restored in
        the store (backup, old key back in the ring) becomes searchable on the next open."""
        with self._rw.read():
            found = sorted(self._quarantine.values(), key=lambda q: q.label)
        names = self.store.ref_ids_of([q.label for q in found])
        return [(names.get(q.label, ""), q) for q in found]

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the gallery is closed", reason="GALLERY_CLOSED")

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> int:
        """Save every index tagged with the last applied change; returns that seq. Writers wait while
        the files are written; searches go on (saving only reads the index)."""
        with self._write_mutex:
            if self._stale:
                raise Unavailable("indexes diverged from the store; reopen the gallery to rebuild",
                                  reason="INDEX_INCONSISTENT")
            seq = self._applied_seq
            head = self.store.audit_head()
            if seq == self._snapshot_seq and head == self._snapshot_anchor and not self._indexes_moved:
                return seq
            rewrite = seq != self._snapshot_seq or self._indexes_moved
            files = {m: snap.index_path(self._snap_dir, m, seq) for m in self._indexes}
            with self._rw.read():
                for m, index in self._indexes.items():
                    if rewrite or not files[m].exists():  # else only the audit anchor moved
                        sealed.write_sealed(files[m], self._keyring, snap.index_identity(m, seq), index.save)
                models = {m: index.model for m, index in self._indexes.items()}
                quarantined = tuple(self._quarantine.values())
            snap.write_sidecar(self._snap_dir, self._keyring, seq, files, models, quarantined, head)
            snap.remove_unreferenced(self._snap_dir, set(files.values()))
            self._snapshot_seq, self._snapshot_anchor, self._indexes_moved = seq, head, False
            self._scheduler.taken()
            log.info("index snapshot written at change %d", seq)
            self._log_audit_head()
            return seq

    def index_consistency(self) -> dict[Modality, dict[str, Any]]:
        """Per modality: templates of active records in the store, templates in the index, and up to
        ten store labels missing from the index. Writers wait meanwhile (a commit and its index update
        are one step under the write mutex, so the two are compared at one change)."""
        self._check_open()
        out: dict[Modality, dict[str, Any]] = {}
        with self._write_mutex:
            for modality in Modality:
                labels, example = self.store.active_template_labels(modality)
                with self._rw.read():
                    index = self._indexes.get(modality)
                    size = 0 if index is None else len(index)
                    missing: list[int] = []
                    if labels.size and index is not None and example is not None:
                        scores = np.asarray(index.score(example, labels), dtype=np.float32)
                        missing = [int(x) for x in labels[np.isnan(scores)][:10]]
                    elif labels.size:
                        missing = [int(x) for x in labels[:10]]
                if labels.size or size:
                    out[modality] = {"store": int(labels.size), "index": size, "missing": missing}
        return out

    def copy_point_in_time(self, dest: Path, *, fresh_snapshot: bool = True) -> tuple[int, dict[str, Any]]:
        """A consistent copy of the gallery at one change seq, taken while it keeps serving (backups):
        ``dest/nasname.db`` (SQLite online backup of one read transaction, never a copy of a
        half-written WAL) and ``dest/snapshots/`` (hard links to the index snapshot files).
        ``fresh_snapshot``: the snapshot is brought up to that same seq first (writers wait while the
        indexes are saved: about a second per GB of index); otherwise the latest snapshot is taken as
        it is (writers wait only for the read transaction to start; a restore replays the changes
        after the snapshot from the copied database, as any restart does).
        Returns the index snapshot's seq and ``Store.stats()`` as of the copy (its ``last_seq`` equals
        the snapshot's unless something wrote to the store around the gallery; the restored gallery
        then replays the difference, as on any open)."""
        from engine.datadir import DB_NAME, SNAPSHOT_DIR, create_private
        from engine.fsutil import private_dir

        self._check_open()
        snaps = private_dir(Path(dest) / SNAPSHOT_DIR)
        with self.store.db.read() as conn:
            with self._write_mutex:  # no commit between the snapshot and the start of the read
                seq = self.snapshot() if fresh_snapshot or self._snapshot_seq < 0 else self._snapshot_seq
                conn.execute("SELECT COUNT(*) FROM meta").fetchone()  # the read transaction starts here
                found = snap.read_sidecar(self._snap_dir, self._keyring)
                if found is not None:
                    for path in [self._snap_dir / snap.SIDECAR, *found.files.values()]:
                        os.link(path, snaps / path.name)
            stats = self.store.stats()  # same read transaction: counts as of the copy
            target_path = Path(dest) / DB_NAME
            create_private(target_path)
            target = sqlite3.connect(target_path)
            try:
                conn.backup(target)  # reads through this connection's open transaction: at ``seq``
            finally:
                target.close()
        return seq, stats

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the snapshot thread, snapshot (when configured), close the store, free the directory."""
        if self._closed:
            return
        self._scheduler.stop()
        try:
            if self.config.snapshot_on_close and not self._stale:
                self.snapshot()
        finally:
            self._closed = True
            for index in self._indexes.values():
                close = getattr(index, "close", None)  # indexes with worker threads (micro-batching)
                if close is not None:
                    close()
            self.datadir.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_index_factory(face_index: str = "exact", iris_index: str = "exact") -> IndexFactory:
    """Index factory by template kind (``engine.index.factory``), sized by the first template: face
    ``dim``, iris ``nbytes`` and ``columns``; ``face_index`` / ``iris_index`` name the configured kind."""

    def make(modality: Modality, example: Template) -> TemplateIndex:
        from engine.index.factory import IndexSpec, make_index

        if isinstance(example, FaceTemplate):
            spec = IndexSpec(face_index, dim=example.vector.size)
        elif isinstance(example, IrisTemplate):
            spec = IndexSpec(iris_index, nbytes=example.code.size, columns=example.columns)
        else:
            raise InvalidInput(f"no index for {type(example).__name__}", reason="INVALID_TEMPLATE")
        return make_index(modality, example.model, spec)

    return make


def load_index(modality: Modality, model: ModelRef, path: Path | BinaryIO) -> TemplateIndex:
    """Loader for the indexes made by :func:`default_index_factory`."""
    from engine.index.factory import load_index as load

    return load(modality, model, path)
