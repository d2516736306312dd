"""The records a de-duplication job compares, as dense per-modality template arrays.

A job compares a *primary* set A (the gallery for N:N, the incoming batch otherwise) with itself
(upper triangle) and, in batch mode, with a *reference* set B (the gallery). Both sets are laid end to
end in one record index space: records ``0 .. n_a-1`` are A, ``n_a .. n_a+n_b-1`` are B. A pair is
always written ``(u, v)`` with ``u < v`` in that space.

Templates are held decrypted in RAM only (like the in-memory indexes: 0.5 GB for 1M 128-d faces); the
job directory keeps store labels (reloaded from the store on resume) and, for a batch that is not in a
store, its templates sealed with the gallery's key (``save_batch`` / ``load_batch``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.crypto import KeyRing
from engine.errors import InvalidInput, ModelMismatch
from engine.models.manifest import write_atomic
from engine.store import RecordStatus, Store
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template, template_from_bytes

__all__ = [
    "ModalityData",
    "RecordInfo",
    "RecordSet",
    "combine",
    "load_batch",
    "load_store_set",
    "save_batch",
    "set_from_templates",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

_PAGE = 20_000
_BATCH_AAD = b"nasname-dedup-batch-v1"


@dataclass(frozen=True)
class RecordInfo:
    """What a report shows about a record (never templates): id, partition, attributes, origin."""

    ref_id: str
    partition: str
    attributes: dict[str, str]
    origin: str  # "gallery" | "batch"


@dataclass
class ModalityData:
    """Templates of one modality. ``rows`` (m,) ascending record indices holding it; face: ``vectors``
    (m, d) float32 unit rows; iris: packed ``codes``/``masks`` (m, nbytes) uint8 and ``columns``."""

    model: ModelRef
    rows: I64
    vectors: F32 | None = None
    codes: U8 | None = None
    masks: U8 | None = None
    columns: int = 0

    def __len__(self) -> int:
        return int(self.rows.size)


@dataclass
class RecordSet:
    """``n`` records; ``labels`` (n,) store labels (-1 for batch records); per-modality templates;
    ``info`` resolves record indices to ``RecordInfo`` (lazily, from the store or the manifest)."""

    n: int
    labels: I64
    modalities: dict[Modality, ModalityData]
    info: Callable[[Sequence[int]], dict[int, RecordInfo]]
    models: dict[Modality, ModelRef] = field(default_factory=dict)


def _stack(modality: Modality, rows: list[int], templates: list[Template]) -> ModalityData:
    first = templates[0]
    for t in templates:
        if t.model != first.model:
            raise ModelMismatch(
                f"{modality.value} templates of two models in one job: {first.model}, {t.model}"
            )
    r = np.asarray(rows, dtype=np.int64)
    if isinstance(first, FaceTemplate):
        x = np.stack([t.vector for t in templates if isinstance(t, FaceTemplate)]).astype(np.float32)
        if x.shape[0] != len(templates):
            raise InvalidInput(f"{modality.value} holds a non-face template", reason="INVALID_TEMPLATE")
        return ModalityData(first.model, r, vectors=np.ascontiguousarray(x))
    irises = [t for t in templates if isinstance(t, IrisTemplate)]
    if len(irises) != len(templates) or any(
        t.code.size != first.code.size or t.columns != first.columns for t in irises
    ):
        raise InvalidInput(
            f"{modality.value} templates differ in kind or geometry", reason="INVALID_TEMPLATE"
        )
    return ModalityData(
        first.model,
        r,
        codes=np.ascontiguousarray(np.stack([t.code for t in irises])),
        masks=np.ascontiguousarray(np.stack([t.mask for t in irises])),
        columns=first.columns,
    )


def set_from_templates(
    records: Sequence[Mapping[Modality, Template]],
    labels: I64,
    info: Callable[[Sequence[int]], dict[int, RecordInfo]],
) -> RecordSet:
    """A record set from per-record template maps (record ``i`` = ``records[i]``)."""
    per: dict[Modality, tuple[list[int], list[Template]]] = {}
    for i, templates in enumerate(records):
        for m, t in templates.items():
            rows, ts = per.setdefault(Modality(m), ([], []))
            rows.append(i)
            ts.append(t)
    mods = {m: _stack(m, rows, ts) for m, (rows, ts) in sorted(per.items())}
    return RecordSet(
        len(records), np.asarray(labels, dtype=np.int64), mods, info, {m: d.model for m, d in mods.items()}
    )


def load_store_set(
    store: Store,
    *,
    partition: str | None = None,
    labels: I64 | None = None,
    progress: Callable[[int], None] | None = None,
) -> RecordSet:
    """Active records of ``store`` (in ``partition`` when given) in label order, or exactly ``labels``
    in that order (resume: a label gone since, deleted or no longer active, stays as a record without
    templates so that record indices do not move)."""
    wanted = None if labels is None else {int(x): i for i, x in enumerate(labels)}
    out_labels: list[int] = [] if labels is None else [int(x) for x in labels]
    records: list[dict[Modality, Template]] = [] if labels is None else [{} for _ in out_labels]
    for states in store.pages(_PAGE):
        for s in states:
            if s.status is not RecordStatus.ACTIVE or not s.templates:
                continue
            if wanted is not None:
                i = wanted.get(s.label)
                if i is not None:
                    records[i] = dict(s.templates)
                continue
            if partition is not None and s.partition != partition:
                continue
            out_labels.append(s.label)
            records.append(dict(s.templates))
        if progress is not None:
            progress(len(states))
    lab = np.asarray(out_labels, dtype=np.int64)

    def info(indices: Sequence[int]) -> dict[int, RecordInfo]:
        out: dict[int, RecordInfo] = {}
        names = store.ref_ids_of([int(lab[i]) for i in indices])
        for i in indices:
            ref = names.get(int(lab[i]))
            if ref is None:
                continue
            rec = store.get(ref, with_templates=False)
            out[int(i)] = RecordInfo(
                ref, rec.partition, {str(k): str(v) for k, v in rec.attributes.items()}, "gallery"
            )
        return out

    return set_from_templates(records, lab, info)


def combine(a: RecordSet, b: RecordSet | None) -> RecordSet:
    """A followed by B in one index space (B's record ``j`` becomes ``a.n + j``)."""
    if b is None:
        return a
    mods: dict[Modality, ModalityData] = {}
    for m in sorted(set(a.modalities) | set(b.modalities)):
        parts = [
            (d, off) for d, off in ((a.modalities.get(m), 0), (b.modalities.get(m), a.n)) if d is not None
        ]
        models = {d.model for d, _ in parts}
        if len(models) > 1:
            raise ModelMismatch(
                f"{m.value}: the batch and the gallery use different models "
                f"({', '.join(sorted(map(str, models)))})",
                details={"modality": m.value},
            )
        first = parts[0][0]
        rows = np.concatenate([d.rows + off for d, off in parts])
        if first.vectors is not None:
            if len({d.vectors.shape[1] for d, _ in parts if d.vectors is not None}) > 1:
                raise InvalidInput(f"{m.value}: embedding sizes differ", reason="INVALID_TEMPLATE")
            mods[m] = ModalityData(
                first.model,
                rows,
                vectors=np.concatenate([d.vectors for d, _ in parts if d.vectors is not None]),
            )
        else:
            if len({(d.codes.shape[1] if d.codes is not None else 0, d.columns) for d, _ in parts}) > 1:
                raise InvalidInput(f"{m.value}: iris code geometries differ", reason="INVALID_TEMPLATE")
            mods[m] = ModalityData(
                first.model,
                rows,
                columns=first.columns,
                codes=np.concatenate([d.codes for d, _ in parts if d.codes is not None]),
                masks=np.concatenate([d.masks for d, _ in parts if d.masks is not None]),
            )

    def info(indices: Sequence[int]) -> dict[int, RecordInfo]:
        lo = [int(i) for i in indices if int(i) < a.n]
        hi = [int(i) - a.n for i in indices if int(i) >= a.n]
        out = a.info(lo)
        out.update({k + a.n: v for k, v in b.info(hi).items()})
        return out

    return RecordSet(
        a.n + b.n, np.concatenate([a.labels, b.labels]), mods, info, {m: d.model for m, d in mods.items()}
    )


# -- a batch that is not in any store: sealed with the gallery key in the job directory ------------


def save_batch(
    path: Path, keyring: KeyRing, records: Sequence[Mapping[Modality, Template]], infos: Sequence[RecordInfo]
) -> None:
    """Write the batch's templates encrypted (AES-GCM, the gallery key) and its record facts."""
    blob = bytearray()
    for templates in records:
        blob += struct.pack("<I", len(templates))
        for m, t in sorted(templates.items()):
            raw = Modality(m).value.encode() + b"\0" + t.to_bytes()
            blob += struct.pack("<I", len(raw)) + raw
    write_atomic(path.with_suffix(".bin"), keyring.encrypt(bytes(blob), _BATCH_AAD))
    facts = [{"ref_id": i.ref_id, "partition": i.partition, "attributes": i.attributes} for i in infos]
    write_atomic(path.with_suffix(".json"), json.dumps(facts).encode())


def load_batch(path: Path, keyring: KeyRing) -> RecordSet:
    """Inverse of ``save_batch``."""
    raw = keyring.decrypt(path.with_suffix(".bin").read_bytes(), _BATCH_AAD)
    facts: list[dict[str, Any]] = json.loads(path.with_suffix(".json").read_text())
    records: list[dict[Modality, Template]] = []
    pos = 0
    for _ in facts:
        (k,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        templates: dict[Modality, Template] = {}
        for _ in range(k):
            (size,) = struct.unpack_from("<I", raw, pos)
            body = raw[pos + 4 : pos + 4 + size]
            pos += 4 + size
            name, _, tbytes = body.partition(b"\0")
            templates[Modality(name.decode())] = template_from_bytes(tbytes)
        records.append(templates)
    infos = [RecordInfo(str(f["ref_id"]), str(f["partition"]), dict(f["attributes"]), "batch") for f in facts]

    def info(indices: Sequence[int]) -> dict[int, RecordInfo]:
        return {int(i): infos[int(i)] for i in indices}

    return set_from_templates(records, np.full(len(records), -1, dtype=np.int64), info)
