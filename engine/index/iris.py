"""The iris index: 1:N masked, rotation-tolerant Hamming search (``engine.index.base.TemplateIndex``).

Scores are the matcher's (``engine.iris.matcher``): ``1 - HD_norm`` at the best of the circular
shifts within ``max_shift`` columns, in [0, 1]. Two search kinds (``IrisIndexOptions.kind``):

    exact  every gallery item x every shift, masked (numba popcount kernel, ``engine.index.hamming``)
    fast   coarse shortlist (256 sampled bits, masked, shifts in steps of ``coarse_shift_step``,
           ``engine.index.iris_shortlist``), then the exact kernel on the shortlist only. Its recall of
           the exact top-1 mate is measured by ``tests/unit/iris_match`` and ``benchmarks/``; small
           galleries and small ``allowed`` lists are searched exactly.

Storage: contiguous (capacity, W) uint64 code/mask rows (plus the 4-word coarse rows), a label per
row and a label -> row dict; removal moves the last row into the hole (swap-with-last), so the scan
always covers rows [0, n) with no tombstones.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from engine.errors import IntegrityError, InvalidInput, ModelMismatch, NotFound
from engine.index import hamming, iris_shortlist
from engine.index.base import Labels, SearchResult
from engine.index.snapshot import atomic_savez
from engine.index.topk import topk_rows
from engine.iris.matcher import default_n_typical
from engine.types import IrisTemplate, ModelRef, Template

__all__ = ["IrisIndex", "IrisIndexOptions"]

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

SNAPSHOT_FORMAT = 1
KINDS = ("exact", "fast")
FAST_BATCH = 16  # probes per coarse pass: bounds the (batch, n) float32 coarse score buffer


@dataclass(frozen=True)
class IrisIndexOptions:
    """``kind``: exact | fast. ``max_shift`` columns each way; ``n_typical`` None = 911 * nbits/2048.
    Fast path: shortlist size ``max(shortlist_min, shortlist_fraction * n)`` from the coarse stage;
    galleries (or ``allowed`` lists) of at most ``exact_below`` items are searched exactly."""

    kind: str = "exact"
    max_shift: int = 15
    n_typical: float | None = None
    coarse_shift_step: int = 2
    shortlist_fraction: float = 0.005
    shortlist_min: int = 256
    exact_below: int = 20_000

    def __post_init__(self) -> None:
        bad = (
            self.kind not in KINDS
            or self.max_shift < 0
            or self.coarse_shift_step < 1
            or not 0.0 <= self.shortlist_fraction <= 1.0
            or self.shortlist_min < 1
            or self.exact_below < 0
            or (self.n_typical is not None and not self.n_typical > 0)
        )
        if bad:
            raise InvalidInput(f"invalid iris index options: {self}", reason="INVALID_CONFIG")


def _as_labels(labels: Any) -> I64:
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise InvalidInput("labels must be a 1-D integer array", reason="INVALID_REQUEST")
    return arr.astype(np.int64, copy=False)


def _as_new_labels(labels: Any) -> I64:
    """Labels for an add: non-negative (-1 is the search result padding) and unique."""
    lab = _as_labels(labels)
    if lab.size and int(lab.min()) < 0:
        raise InvalidInput("labels must be >= 0 (-1 marks padding in search results)",
                           reason="INVALID_REQUEST")
    if np.unique(lab).size != lab.size:
        raise InvalidInput("duplicate labels in one add", reason="INVALID_REQUEST")
    return lab


class IrisIndex:
    """1:N iris index over templates of one model and one code geometry (``nbytes``, ``columns``)."""

    def __init__(self, model: ModelRef, nbytes: int, columns: int, options: IrisIndexOptions | None = None
                 ) -> None:
        if nbytes <= 0 or columns <= 0 or nbytes % columns:
            raise InvalidInput("iris code length must be a whole number of bytes per column",
                               reason="INVALID_CONFIG")
        self._model = model
        self.nbytes, self.columns = nbytes, columns
        self.bytes_per_column = nbytes // columns
        self.options = options or IrisIndexOptions()
        self.n_typical = self.options.n_typical or default_n_typical(nbytes * 8)
        self.shifts = hamming.shift_order(self.options.max_shift, columns)
        self.coarse_shifts = self.shifts[self.shifts % self.options.coarse_shift_step == 0]
        self._w = -(-nbytes // 8)
        self._n = 0
        self._codes = np.zeros((0, self._w), dtype=np.uint64)
        self._masks = np.zeros((0, self._w), dtype=np.uint64)
        self._ccodes = np.zeros((0, 4), dtype=np.uint64)
        self._cmasks = np.zeros((0, 4), dtype=np.uint64)
        self._labels = np.zeros(0, dtype=np.int64)
        self._row: dict[int, int] = {}

    # -- TemplateIndex -------------------------------------------------------------------------------
    @property
    def model(self) -> ModelRef:
        return self._model

    def __len__(self) -> int:
        return self._n

    def add(self, labels: Labels, templates: list[Template]) -> None:
        lab = _as_labels(labels)
        if lab.size != len(templates):
            raise InvalidInput(f"{lab.size} labels for {len(templates)} templates", reason="INVALID_REQUEST")
        if not templates:
            return
        codes, masks = self._matrix(templates)
        self.add_arrays(lab, codes, masks)

    def add_arrays(self, labels: Labels, codes: U8, masks: U8) -> None:
        """Bulk add (or replace) of packed rows (n, nbytes) uint8: the path for rebuilds and
        benchmarks, with geometry checked but no per-template objects."""
        lab = _as_new_labels(labels)
        codes = np.asarray(codes, dtype=np.uint8)
        masks = np.asarray(masks, dtype=np.uint8)
        if codes.shape != (lab.size, self.nbytes) or masks.shape != codes.shape:
            raise ModelMismatch(f"expected ({lab.size}, {self.nbytes}) code and mask rows, "
                                f"got {codes.shape} and {masks.shape}")
        existing = np.fromiter((self._row.get(int(x), -1) for x in lab), dtype=np.int64, count=lab.size)
        new = existing < 0
        n_new = int(new.sum())
        self._reserve(self._n + n_new)
        rows = existing.copy()
        rows[new] = np.arange(self._n, self._n + n_new)
        self._write(rows, codes, masks)
        self._labels[rows] = lab
        self._row.update(zip(lab[new].tolist(), rows[new].tolist(), strict=True))
        self._n += n_new

    def remove(self, labels: Labels) -> None:
        for label in _as_labels(labels).tolist():
            row = self._row.pop(label, None)
            if row is None:
                continue  # idempotent: replaying a change log may remove twice
            last = self._n - 1
            if row != last:
                moved = int(self._labels[last])
                for arr in (self._codes, self._masks, self._ccodes, self._cmasks):
                    arr[row] = arr[last]
                self._labels[row] = moved
                self._row[moved] = row
            self._n = last

    def search(self, queries: list[Template], k: int, allowed: Labels | None = None) -> SearchResult:
        if k < 1:
            raise InvalidInput("k must be >= 1", reason="INVALID_REQUEST")
        nq = len(queries)
        D = np.full((nq, k), -np.inf, dtype=np.float32)
        I = np.full((nq, k), -1, dtype=np.int64)
        if nq == 0:
            return D, I
        qc, qm = self._matrix(queries)
        rows = None if allowed is None else self._rows_of(_as_labels(allowed))
        m = self._n if rows is None else rows.size
        if m == 0:
            return D, I
        if self.options.kind == "fast" and m > self.options.exact_below:
            return self._search_fast(qc, qm, k, rows)
        return self._search_exact(qc, qm, k, rows)

    def score(self, query: Template, labels: Labels) -> F32:
        lab = _as_labels(labels)
        qc, qm = self._matrix([query])
        rows = np.fromiter((self._row.get(int(x), -1) for x in lab), dtype=np.int64, count=lab.size)
        out = np.full(lab.size, np.nan, dtype=np.float32)
        present = rows >= 0
        if present.any():
            pc, pm = self._prepare(qc, qm)
            sim, _, _ = hamming.best_scores(pc, pm, self._codes, self._masks, rows[present], self.n_typical)
            out[present] = sim[0]
        return out

    # -- searches ------------------------------------------------------------------------------------
    def search_exact(self, queries: list[Template], k: int, allowed: Labels | None = None) -> SearchResult:
        """Exact search whatever ``options.kind`` says (benchmarks, recall measurement)."""
        qc, qm = self._matrix(queries)
        rows = None if allowed is None else self._rows_of(_as_labels(allowed))
        return self._search_exact(qc, qm, k, rows)

    def search_packed(self, codes: U8, masks: U8, k: int, *, exact: bool | None = None) -> SearchResult:
        """Search with packed probe rows (nq, nbytes): ``exact`` None = per ``options.kind``."""
        codes = np.atleast_2d(np.asarray(codes, dtype=np.uint8))
        masks = np.atleast_2d(np.asarray(masks, dtype=np.uint8))
        if codes.shape[1:] != (self.nbytes,) or masks.shape != codes.shape:
            raise ModelMismatch(f"probe rows must be (nq, {self.nbytes})")
        fast = self.options.kind == "fast" if exact is None else not exact
        if self._n == 0:
            nq = codes.shape[0]
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        if fast and self._n > self.options.exact_below:
            return self._search_fast(codes, masks, k, None)
        return self._search_exact(codes, masks, k, None)

    def _search_exact(self, qc: U8, qm: U8, k: int, rows: I64 | None) -> SearchResult:
        pc, pm = self._prepare(qc, qm)
        m = self._n if rows is None else rows.size
        if qc.shape[0] * m <= hamming.SERIAL_BELOW:  # small: score all on this thread, no heaps
            sel = np.arange(m, dtype=np.int64) if rows is None else rows
            sim, _, _ = hamming.best_scores(pc, pm, self._codes, self._masks, sel, self.n_typical)
            D, col = topk_rows(sim, k)
            return D, self._to_labels(sel[np.maximum(col, 0)], col >= 0)
        kk = min(k, max(m, 1))
        cD, cI = hamming.topk_scan(pc, pm, self._codes, self._masks, self._n, rows, kk, self.n_typical)
        D, I = topk_rows(cD, k)
        return D, self._to_labels(np.take_along_axis(cI, np.maximum(I, 0), axis=1), I >= 0)

    def _search_fast(self, qc: U8, qm: U8, k: int, rows: I64 | None) -> SearchResult:
        nq = qc.shape[0]
        m = self._n if rows is None else rows.size
        K = min(m, max(self.options.shortlist_min, k, int(np.ceil(self.options.shortlist_fraction * m))))
        D = np.full((nq, k), -np.inf, dtype=np.float32)
        I = np.full((nq, k), -1, dtype=np.int64)
        pc, pm = self._prepare(qc, qm)
        for lo in range(0, nq, FAST_BATCH):
            hi = min(nq, lo + FAST_BATCH)
            prepared = [iris_shortlist.coarse_probe(qc[q], qm[q], self.coarse_shifts, self.columns,
                                                    self.bytes_per_column) for q in range(lo, hi)]
            cc = np.stack([p[0] for p in prepared])
            cm = np.stack([p[1] for p in prepared])
            shortlists = iris_shortlist.coarse_shortlists(cc, cm, self._ccodes, self._cmasks, self._n,
                                                          rows, K)
            for q, cand in zip(range(lo, hi), shortlists, strict=True):
                sim, _, _ = hamming.best_scores(pc[q : q + 1], pm[q : q + 1], self._codes, self._masks, cand,
                                                self.n_typical)
                d, col = topk_rows(sim, k)
                D[q] = d[0]
                I[q] = np.where(col[0] >= 0, self._labels[cand[np.maximum(col[0], 0)]], -1)
        return D, I

    # -- helpers -------------------------------------------------------------------------------------
    def _matrix(self, templates: list[Template]) -> tuple[U8, U8]:
        for t in templates:
            if not isinstance(t, IrisTemplate):
                raise ModelMismatch(f"the iris index takes iris templates, got {type(t).__name__}")
            if t.model != self._model:
                raise ModelMismatch(f"template of model {t.model}, the iris index holds {self._model}")
            if t.code.size != self.nbytes or t.columns != self.columns:
                raise ModelMismatch(f"iris template of {t.code.size} bytes/{t.columns} columns, the index "
                                    f"holds {self.nbytes} bytes/{self.columns} columns")
        if not templates:
            return np.zeros((0, self.nbytes), np.uint8), np.zeros((0, self.nbytes), np.uint8)
        return (np.stack([t.code for t in templates]),  # type: ignore[union-attr]
                np.stack([t.mask for t in templates]))  # type: ignore[union-attr]

    def _prepare(self, qc: U8, qm: U8) -> tuple[U64, U64]:
        rows = [hamming.shifted_rows(qc[q], qm[q], self.shifts, self.bytes_per_column)
                for q in range(qc.shape[0])]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def _rows_of(self, labels: I64) -> I64:
        rows = {self._row[x] for x in labels.tolist() if x in self._row}
        return np.fromiter(sorted(rows), dtype=np.int64, count=len(rows))

    def _to_labels(self, rows: I64, valid: npt.NDArray[np.bool_]) -> I64:
        return np.where(valid, self._labels[np.maximum(rows, 0)], -1).astype(np.int64)

    def _reserve(self, n: int) -> None:
        cap = self._labels.shape[0]
        if n <= cap:
            return
        cap = max(n, 2 * cap, 1024)
        def grow(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return np.concatenate([a[: self._n], np.zeros((cap - self._n, *a.shape[1:]), a.dtype)])

        self._codes, self._masks = grow(self._codes), grow(self._masks)
        self._ccodes, self._cmasks = grow(self._ccodes), grow(self._cmasks)
        self._labels = grow(self._labels)

    def _write(self, rows: I64, codes: U8, masks: U8) -> None:
        self._codes[rows] = hamming.pad_words(codes)
        self._masks[rows] = hamming.pad_words(masks)
        cc, cm = iris_shortlist.coarse_gallery(codes, masks, self.columns, self.bytes_per_column)
        self._ccodes[rows], self._cmasks[rows] = cc, cm

    def packed_rows(self) -> tuple[I64, U8, U8]:
        """(labels, codes, masks) of every item, packed (n, nbytes) uint8 copies."""
        def as_bytes(a: U64) -> U8:
            return a[: self._n].view(np.uint8)[:, : self.nbytes].copy()

        return self._labels[: self._n].copy(), as_bytes(self._codes), as_bytes(self._masks)

    # -- snapshots -----------------------------------------------------------------------------------
    def save(self, path: Path | BinaryIO) -> None:
        labels, codes, masks = self.packed_rows()
        meta = {"format": SNAPSHOT_FORMAT, "model_id": self._model.model_id,
                "version": self._model.version, "nbytes": self.nbytes, "columns": self.columns,
                "options": asdict(self.options)}
        meta_arr = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        atomic_savez(path, {"meta": meta_arr, "labels": labels, "codes": codes, "masks": masks})

    @classmethod
    def load(cls, path: Path | BinaryIO) -> IrisIndex:
        """Read a snapshot written by ``save`` (a path or a seekable stream). Raises NotFound /
        IntegrityError."""
        name = Path(path).name if isinstance(path, str | Path) else "stream"
        if isinstance(path, str | Path) and not Path(path).is_file():
            raise NotFound(f"no iris index snapshot at {name}", reason="SNAPSHOT_NOT_FOUND")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                labels, codes, masks = z["labels"], z["codes"], z["masks"]
            if meta.get("format") != SNAPSHOT_FORMAT:
                raise IntegrityError(f"iris snapshot format {meta.get('format')} is not {SNAPSHOT_FORMAT}")
            model = ModelRef(meta["model_id"], meta["version"])
            index = cls(model, int(meta["nbytes"]), int(meta["columns"]), IrisIndexOptions(**meta["options"]))
            index.add_arrays(labels, codes, masks)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, ModelMismatch,
                InvalidInput) as exc:
            raise IntegrityError(f"unreadable iris index snapshot {name}: {exc}") from exc
        return index
