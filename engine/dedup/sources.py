"""Where a job's records come from: the gallery's store (optionally one partition), another nasname
data directory, or a manifest batch; and how they are frozen in the job directory for resume."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.crypto import KeyRing
from engine.dedup.data import RecordInfo, RecordSet, combine, load_batch, load_store_set, save_batch
from engine.dedup.manifest import ExtractorFor, read_batch, write_errors
from engine.errors import InvalidInput
from engine.models.manifest import write_atomic
from engine.store import Store

if TYPE_CHECKING:
    from engine.datadir import DataDir

__all__ = ["JobSpec", "Opened", "freeze_sources", "open_sources"]


@dataclass(frozen=True)
class JobSpec:
    """What to compare and how. N:N over ``data_dir`` (``partition``) unless ``against_manifest``
    (a CSV batch; images under ``batch_folder``, default the CSV's folder) or ``against_gallery``
    (another data directory) is given: then that batch is compared with itself and with the gallery.
    Threshold: ``target_fpir`` at the compared gallery size, or an explicit per-comparison ``fmr``."""

    data_dir: str
    partition: str | None = None
    against_manifest: str | None = None
    batch_folder: str | None = None
    against_gallery: str | None = None
    target_fpir: float | None = 0.003
    fmr: float | None = None
    mode: str = "exact"
    recall_sample: float = 0.01  # share of probe rows also scored exactly in fast mode
    block_rows: int | None = None  # probe rows per block (checkpoint granularity); None = kernel default

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "fast"):
            raise InvalidInput(f"mode must be exact or fast, got {self.mode!r}", reason="INVALID_REQUEST")
        if self.against_manifest and self.against_gallery:
            raise InvalidInput(
                "give either a manifest batch or another gallery, not both", reason="INVALID_REQUEST"
            )
        if self.fmr is not None and self.target_fpir is not None:
            object.__setattr__(self, "target_fpir", None)  # an explicit FMR overrides the FPIR default
        if self.fmr is None and self.target_fpir is None:
            raise InvalidInput("a target FPIR or an FMR is needed", reason="INVALID_THRESHOLD")
        if self.block_rows is not None and self.block_rows < 1:
            raise InvalidInput("block_rows must be >= 1", reason="INVALID_REQUEST")
        if not 0.0 <= self.recall_sample <= 1.0:
            raise InvalidInput("recall_sample must be in [0, 1]", reason="INVALID_REQUEST")

    @property
    def kind(self) -> str:
        return "manifest" if self.against_manifest else "gallery" if self.against_gallery else "nn"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Opened:
    """A job's record set (primary set first) and the stores it came from. The stores belong to the
    data directories the job was given (``engine.datadir``); the job never opens or closes them."""

    records: RecordSet
    n_primary: int
    store: Store
    keyring: KeyRing
    other: Store | None = None


def freeze_sources(
    spec: JobSpec,
    job_dir: Path,
    source: DataDir,
    other_dir: DataDir | None = None,
    *,
    extractor_for: ExtractorFor | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[dict[str, Any], Opened]:
    """First stage of a job: read the records once and keep what resume needs in ``job_dir``
    (store labels; a manifest batch's templates sealed with the gallery key; the row error report).
    Returns facts for the summary (row errors, counts) and the record set,
    the same one ``open_sources`` gives on a later resume. ``source`` is the gallery's open data
    directory, ``other_dir`` the other gallery's (``against_gallery`` jobs)."""
    store, keyring = source.store, source.keyring
    facts: dict[str, Any] = {"row_errors": 0}
    gallery = load_store_set(store, partition=spec.partition)
    write_atomic(job_dir / "gallery_labels.npy", _npy(gallery.labels))
    facts["gallery_records"] = gallery.n
    opened = Opened(gallery, gallery.n, store, keyring)
    if spec.against_manifest:
        manifest = Path(spec.against_manifest)
        records, errors = read_batch(
            manifest,
            folder=Path(spec.batch_folder) if spec.batch_folder else None,
            extractor_for=extractor_for,
            models=store.models(),
            progress=(lambda k: progress("extract", k)) if progress else None,
        )
        write_errors(job_dir / "manifest_errors.csv", errors)
        facts["row_errors"] = len(errors)
        facts["error_reasons"] = _count(e.reason for e in errors)
        part = spec.partition or ""
        save_batch(
            job_dir / "batch",
            keyring,
            [r.templates for r in records],
            [RecordInfo(r.reference_id, part, r.attributes, "batch") for r in records],
        )
        facts["batch_records"] = len(records)
        batch = load_batch(job_dir / "batch", keyring)
        opened = Opened(combine(batch, gallery), batch.n, store, keyring)
    elif spec.against_gallery:
        other = _other(spec, other_dir)
        batch = load_store_set(other)
        write_atomic(job_dir / "batch_labels.npy", _npy(batch.labels))
        facts["batch_records"] = batch.n
        batch = _as_batch(batch)
        opened = Opened(combine(batch, gallery), batch.n, store, keyring, other)
    write_atomic(job_dir / "sources.json", json.dumps(facts).encode())
    return facts, opened


def open_sources(spec: JobSpec, job_dir: Path, source: DataDir, other_dir: DataDir | None = None) -> Opened:
    """The frozen record set of a job (after ``freeze_sources``), reloaded from the stores."""
    store, keyring = source.store, source.keyring
    gallery = load_store_set(store, labels=np.load(job_dir / "gallery_labels.npy"))
    if spec.against_manifest:
        batch = load_batch(job_dir / "batch", keyring)
    elif spec.against_gallery:
        other = _other(spec, other_dir)
        batch = load_store_set(other, labels=np.load(job_dir / "batch_labels.npy"))
        batch = _as_batch(batch)
    else:
        return Opened(gallery, gallery.n, store, keyring)
    return Opened(combine(batch, gallery), batch.n, store, keyring,
                  other if spec.against_gallery else None)


def _other(spec: JobSpec, other_dir: DataDir | None) -> Store:
    if other_dir is None:
        raise InvalidInput(f"the job compares against the gallery in {spec.against_gallery}: open it "
                           "and pass it to the job", reason="INVALID_REQUEST")
    return other_dir.store


def _as_batch(s: RecordSet) -> RecordSet:
    inner = s.info

    def info(indices: Any) -> dict[int, RecordInfo]:
        return {
            k: RecordInfo(v.ref_id, v.partition, v.attributes, "batch") for k, v in inner(indices).items()
        }

    return RecordSet(s.n, np.full(s.n, -1, dtype=np.int64), s.modalities, info, s.models)


def _npy(a: np.ndarray[Any, Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out
