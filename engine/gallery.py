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
``snapshot_every`` changes or ``snapshot_interval_s`` seconds; close() snapshots too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engine.crypto import KeyRing
from engine.errors import InvalidInput, ModelMismatch, NasnameError, Unavailable
from engine.index.base import TemplateIndex
from engine.store import PendingCase, Record, RecordState, RecordStatus, Store, WriteResult
from engine.store import snapshots as snap
from engine.store.locks import DirectoryLock, RWLock
from engine.store.partitions import PartitionMap
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template

if TYPE_CHECKING:
    from engine.config import EngineConfig

__all__ = ["Gallery", "GalleryConfig", "Hit", "IndexFactory", "IndexLoader", "default_index_factory",
           "load_index"]

log = logging.getLogger(__name__)

IndexFactory = Callable[[Modality, Template], TemplateIndex]
"""Makes an empty index for templates like the given one (its model, its dimension / code size)."""
IndexLoader = Callable[[Modality, ModelRef, Path], TemplateIndex]
"""Reads a snapshot written by ``TemplateIndex.save`` (of that model); raises a ``NasnameError`` when
unusable (the gallery then rebuilds from the store)."""

DB_NAME = "nasname.db"
SNAPSHOT_DIR = "snapshots"
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
    """Open the gallery in ``directory`` (created when missing: ``nasname.db`` + ``snapshots/``).

    A modality's index is created (``index_factory``) when its first template arrives, or on open
    when the store holds templates of it. ``models`` optionally pins the model of some modalities up
    front; otherwise the first template of a modality fixes its model, and a template of another
    model is refused with ``ModelMismatch`` (as is reopening with pins that contradict the store).
    Raises ``Unavailable`` when another process has the directory open.
    """

    def __init__(self, directory: Path, keyring: KeyRing, index_factory: IndexFactory,
                 index_loader: IndexLoader | None = None, *,
                 models: Mapping[Modality, ModelRef] | None = None,
                 config: GalleryConfig | None = None) -> None:
        self.directory = Path(directory)
        self.config = config or GalleryConfig()
        self._factory = index_factory
        self._loader = index_loader
        self._snap_dir = self.directory / SNAPSHOT_DIR
        self._snap_dir.mkdir(parents=True, exist_ok=True)
        self._dir_lock = DirectoryLock(self.directory)
        self._rw = RWLock()
        self._write_mutex = threading.RLock()
        self._indexes: dict[Modality, TemplateIndex] = {}
        self._parts = PartitionMap()
        self._applied_seq = 0
        self._snapshot_seq = -1
        self._stale = False  # an index failed to apply a committed change: never snapshot that state
        self._closed = False
        try:
            self.store = Store(self.directory / DB_NAME, keyring, keep_images=self.config.keep_images)
            for modality, model in (models or {}).items():
                self.store.set_model(modality, model)
            self._models = self.store.models()
            self._open_indexes()
        except BaseException:
            if hasattr(self, "store"):
                self.store.close()
            self._dir_lock.release()
            raise
        self._scheduler = snap.SnapshotScheduler(self.snapshot, self.config.snapshot_every,
                                                 self.config.snapshot_interval_s,
                                                 pending=self._applied_seq - max(self._snapshot_seq, 0))

    @classmethod
    def open(cls, config: EngineConfig) -> Gallery:
        """The gallery of an engine configuration: ``config.data_dir``, its key (environment or key
        file, created on first run), the configured index kinds, snapshots every
        ``config.snapshot_every`` changes."""
        keyring = KeyRing.load(config.resolved_key_file)
        factory, loader = default_index_factory(config.face_index, config.iris_index), load_index
        cluster = None
        if config.cluster.backend == "ray":  # indexes on Ray shard actors (engine.cluster)
            from engine.cluster.backend import RayBackend

            cluster = RayBackend.start(config.cluster, config.face_index, config.iris_index)
            factory, loader = cluster.index_factory, cluster.index_loader
        try:
            gallery = cls(config.data_dir, keyring, factory, loader,
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
            self._applied_seq = self._replay(None)
            self._snapshot_seq = -1
            if not self._consistent():
                raise Unavailable("indexes rebuilt from the store do not match it",
                                  reason="INDEX_INCONSISTENT")
        log.info("gallery open (%s) at change %d in %.2f s", how, self._applied_seq,
                 time.perf_counter() - started)

    def _consistent(self) -> bool:
        """Cheap check that each index holds as many templates as the store has for active records."""
        for modality in Modality:
            index = self._indexes.get(modality)
            expected = self.store.count_templates(modality)
            size = 0 if index is None else len(index)
            if size != expected:
                log.warning("%s index holds %d templates, the store %d", modality.value, size, expected)
                return False
        return True

    def _load_snapshot(self) -> bool:
        found = snap.read_sidecar(self._snap_dir)
        if found is None or self._loader is None:
            return False
        if any(self._models.get(m) != model for m, model in found.models.items()) \
                or found.seq > self.store.last_seq():
            log.info("index snapshot does not fit (other models, or newer than the store); rebuilding")
            return False
        indexes = {m: self._loader(m, found.models[m], path) for m, path in found.files.items()}
        for m, index in indexes.items():
            if index.model != found.models[m]:
                raise ModelMismatch(f"{m.value} snapshot holds {index.model}, expected {found.models[m]}")
        self._indexes = indexes
        self._snapshot_seq = found.seq
        self._applied_seq = self._replay(found.seq)
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
        """Make the indexes and the partition map reflect ``states`` (idempotent)."""
        labels = np.fromiter((s.label for s in states), dtype=np.int64, count=len(states))
        try:
            with self._rw.write():
                if remove_first:
                    for index in self._indexes.values():
                        index.remove(labels)
                    self._parts.set(labels, None)
                active = [s for s in states if s.status is RecordStatus.ACTIVE]
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
               images: Mapping[Modality, bytes] | None = None, actor: str = "system") -> WriteResult:
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
                                           status=status, candidates=candidates, images=images, actor=actor)
            except BaseException:
                with self._rw.write():  # forget indexes made for a first template that was refused
                    for m in new:
                        self._indexes.pop(m, None)
                raise
            for m, t in slots.items():
                self._models.setdefault(m, t.model)
            self._apply([RecordState(result.label, partition, status, slots)], result.seq, remove_first=False)
        self._scheduler.changed()
        return result

    def set_status(self, ref_id: str, status: RecordStatus, *, actor: str = "system") -> WriteResult:
        """ACTIVE <-> PENDING (see ``Store.set_status``); indexes follow before this returns."""
        self._check_open()
        with self._write_mutex:
            result = self.store.set_status(ref_id, status, actor=actor)
            self._resync(result)
        self._scheduler.changed()
        return result

    def delete(self, ref_id: str, *, actor: str = "system") -> WriteResult:
        """Erase the record's biometrics; it is out of every search when this returns. Unknown or
        already deleted -> ``NotFound``."""
        self._check_open()
        with self._write_mutex:
            result = self.store.delete(ref_id, actor=actor)
            self._resync(result)
        self._scheduler.changed()
        return result

    def decide(self, ref_id: str, decision: str, *, actor: str, comment: str = "", final: bool = True
               ) -> WriteResult | None:
        """Adjudicate a pending record (see ``engine.store.adjudication``): a final ``distinct`` makes
        it ACTIVE (searchable when this returns), a final ``same`` erases it. None when not final."""
        self._check_open()
        with self._write_mutex:
            result = self.store.decide(ref_id, decision, actor=actor, comment=comment, final=final)
            if result is not None:
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

    def _resync(self, result: WriteResult) -> None:
        states, _ = self.store.scan(result.label - 1, 1)
        self._apply([s for s in states if s.label == result.label], result.seq)

    def _validate(self, modality: Modality, template: Template) -> None:
        """Refuse before committing what the index would refuse after (model, kind, dimension).
        Called under the write mutex."""
        if template.modality_kind != modality.kind:
            raise InvalidInput(f"a {template.modality_kind} template cannot fill the {modality.value} slot",
                               reason="INVALID_TEMPLATE")
        model = self._models.get(modality)
        if model is not None and template.model != model:
            raise ModelMismatch(f"{modality.value} template of {template.model}; the gallery uses {model}",
                                details={"modality": modality.value, "gallery_model": str(model),
                                         "template_model": str(template.model)})
        index = self._indexes.get(modality)
        if index is None:
            with self._rw.write():
                index = self._index_for(modality, template)
        # an empty restricted search checks the template (dimension...) without touching any data
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
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        with self._rw.read():
            index = self._indexes.get(Modality(modality))
            if index is None:
                return np.full(labels.size, np.nan, dtype=np.float32)
            return np.asarray(index.score(template, labels), dtype=np.float32)

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
        ``applied_seq`` and ``snapshot_seq``."""
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
        out["snapshot_seq"] = self._snapshot_seq
        return out

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
            if seq == self._snapshot_seq:
                return seq
            files = {m: snap.index_path(self._snap_dir, m, seq) for m in self._indexes}
            with self._rw.read():
                for m, index in self._indexes.items():
                    index.save(files[m])
                models = {m: index.model for m, index in self._indexes.items()}
            snap.write_sidecar(self._snap_dir, seq, files, models)
            snap.remove_unreferenced(self._snap_dir, set(files.values()))
            self._snapshot_seq = seq
            self._scheduler.taken()
            log.info("index snapshot written at change %d", seq)
            return seq

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
            self.store.close()
            self._dir_lock.release()

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


def load_index(modality: Modality, model: ModelRef, path: Path) -> TemplateIndex:
    """Loader for the indexes made by :func:`default_index_factory`."""
    from engine.index.factory import load_index as load

    return load(modality, model, path)
