"""Shared pieces of the iris 1:N benchmarks: a seeded synthetic gallery and one interface per
contender (ann-benchmarks style: ``build`` then ``query`` one probe or ``batch_query`` several).

Gallery: ``n_mated`` enrolment captures of identities whose second capture is a probe (rows 0 ..
n_mated-1 carry labels 0 .. n_mated-1), then ``n - n_mated`` single captures of other identities
(``engine.iris.synthetic_codes``). Every contender answers (D, I) with I = labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engine.index.hamming import shift_order
from engine.index.iris import IrisIndex, IrisIndexOptions
from engine.iris.matcher import default_n_typical
from engine.iris.synthetic_codes import impostor_gallery, mated_set
from engine.types import ModelRef

MODEL = ModelRef("iris-synthetic", "1")
NBYTES, COLUMNS = 256, 256
U8 = npt.NDArray[np.uint8]


@dataclass
class IrisGallery:
    codes: U8  # (n, nbytes)
    masks: U8
    probe_codes: U8  # (n_mated, nbytes), probe i is mated with label i
    probe_masks: U8


def make_gallery(n: int, n_mated: int, seed: int = 0) -> IrisGallery:
    n_mated = min(n_mated, n)
    enr, prb = mated_set(n_mated, NBYTES, COLUMNS, seed=seed)
    dc, dm = impostor_gallery(n - n_mated, NBYTES, COLUMNS, seed=seed + 1)
    codes = np.concatenate([enr.codes, dc])
    masks = np.concatenate([enr.masks, dm])
    return IrisGallery(codes, masks, prb.codes, prb.masks)


Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


class Contender(Protocol):
    name: str

    def build(self, g: IrisGallery) -> None: ...

    def query(self, code: U8, mask: U8, k: int) -> Result: ...


class EngineIris:
    """``engine.index.iris.IrisIndex`` with the given options (exact or fast)."""

    def __init__(self, name: str, options: IrisIndexOptions) -> None:
        self.name, self.options = name, options
        self.index = IrisIndex(MODEL, NBYTES, COLUMNS, options)

    def build(self, g: IrisGallery) -> None:
        self.index.add_arrays(np.arange(len(g.codes)), g.codes, g.masks)

    def query(self, code: U8, mask: U8, k: int) -> Result:
        return self.index.search_packed(code[None], mask[None], k)

    def batch_query(self, codes: U8, masks: U8, k: int) -> Result:
        return self.index.search_packed(codes, masks, k)


class NumpyMasked:
    """Plain numpy: ``np.bitwise_count`` over the masked XOR, every shift, the gallery in chunks."""

    name = "numpy bitwise_count (masked)"

    def __init__(self, max_shift: int = 15, chunk: int = 65_536) -> None:
        self.shifts = shift_order(max_shift, COLUMNS)
        self.chunk = chunk
        self.n0 = default_n_typical(NBYTES * 8)

    def build(self, g: IrisGallery) -> None:
        self.codes = g.codes.view(np.uint64)
        self.masks = g.masks.view(np.uint64)

    def query(self, code: U8, mask: U8, k: int) -> Result:
        best = np.empty(len(self.codes), dtype=np.float32)
        rolled = [(np.roll(code, s).view(np.uint64), np.roll(mask, s).view(np.uint64)) for s in self.shifts]
        for lo in range(0, len(self.codes), self.chunk):
            gc, gm = self.codes[lo : lo + self.chunk], self.masks[lo : lo + self.chunk]
            acc = np.full(len(gc), -1.0)
            for pc, pm in rolled:
                m = gm & pm
                n = np.bitwise_count(m).sum(axis=1, dtype=np.int64)
                d = np.bitwise_count((gc ^ pc) & m).sum(axis=1, dtype=np.int64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    sim = np.where(n > 0, 0.5 + (0.5 - d / np.maximum(n, 1)) * np.sqrt(n / self.n0), 0.0)
                np.maximum(acc, sim, out=acc)
            best[lo : lo + len(gc)] = np.clip(acc, 0.0, 1.0)
        top = np.argsort(-best, kind="stable")[:k]
        return best[top][None], top.astype(np.int64)[None]


class FaissBinary:
    """FAISS ``IndexBinaryFlat`` on the *unmasked* codes, one query per shift, best per label.
    Masks cannot be applied, so its ranking differs from the engine's; it is a speed baseline."""

    name = "faiss IndexBinaryFlat (unmasked)"

    def __init__(self, max_shift: int = 15, k_per_shift: int = 10) -> None:
        self.shifts = shift_order(max_shift, COLUMNS)
        self.k_per_shift = k_per_shift

    def build(self, g: IrisGallery) -> None:
        import faiss

        self.index: Any = faiss.IndexBinaryFlat(NBYTES * 8)
        self.index.add(g.codes)

    def query(self, code: U8, mask: U8, k: int) -> Result:
        xq = np.stack([np.roll(code, s) for s in self.shifts])
        dist, lab = self.index.search(xq, max(k, self.k_per_shift))
        sim = 1.0 - dist.astype(np.float32) / (NBYTES * 8)
        best: dict[int, float] = {}
        for s_row, l_row in zip(sim, lab, strict=True):
            for s, lb in zip(s_row.tolist(), l_row.tolist(), strict=True):
                if lb >= 0 and s > best.get(lb, -1.0):
                    best[lb] = s
        top = sorted(best.items(), key=lambda t: -t[1])[:k]
        return (np.array([[s for _, s in top]], dtype=np.float32),
                np.array([[lb for lb, _ in top]], dtype=np.int64))


def latencies(c: Contender, g: IrisGallery, n: int, k: int
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Sequential single-probe latencies (seconds) over the first ``n`` probes, and their top-1."""
    lat, top1 = [], []
    for i in range(n):
        t0 = time.perf_counter()
        _, I = c.query(g.probe_codes[i], g.probe_masks[i], k)
        lat.append(time.perf_counter() - t0)
        top1.append(int(I[0, 0]))
    return np.array(lat), np.array(top1, dtype=np.int64)
