"""Accuracy of the face pipeline on LFW (View 2 pairs) and ORL, shared by the tests, the calibration
script and ``python -m engine.face.evaluate_lfw``. Works on file paths; returns only numbers.

LFW protocol: ``lfw_pairs.txt`` (first line ``folds pairs``; then per fold ``pairs`` matched lines
``name i j`` and ``pairs`` mismatched lines ``name1 i name2 j``). k-fold accuracy: for each fold the
threshold maximising accuracy on the other folds is applied to it. A pair with an image where no face
was found counts with similarity -1 (an error for a matched pair): failures are not dropped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine import metrics
from engine.errors import SampleRejected
from engine.face.extractor import FaceExtractor

__all__ = ["LfwPair", "embed_paths", "kfold_accuracy", "orl_rank1", "read_lfw_pairs", "tar_at_far",
           "templates"]

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LfwPair:
    fold: int
    a: str  # path relative to the lfw folder
    b: str
    same: bool


def _img(name: str, n: str) -> str:
    return f"{name}/{name}_{int(n):04d}.jpg"


def read_lfw_pairs(path: Path, folds: Iterable[int] | None = None, per_fold: int | None = None,
                   ) -> list[LfwPair]:
    """Pairs of the given folds; ``per_fold``: only the first N matched and N mismatched of each."""
    lines = path.read_text().split("\n")
    n_folds, n_pairs = (int(v) for v in lines[0].split())
    wanted = set(folds) if folds is not None else set(range(1, n_folds + 1))
    out: list[LfwPair] = []
    pos = 1
    for fold in range(1, n_folds + 1):
        for same in (True, False):
            for i in range(n_pairs):
                f = lines[pos].split()
                pos += 1
                if fold not in wanted or (per_fold is not None and i >= per_fold):
                    continue
                if same:
                    out.append(LfwPair(fold, _img(f[0], f[1]), _img(f[0], f[2]), True))
                else:
                    out.append(LfwPair(fold, _img(f[0], f[1]), _img(f[2], f[3]), False))
    return out


def embed_paths(fx: FaceExtractor, paths: Sequence[Path], cache_dir: Path | None = None,
                ) -> tuple[dict[str, F32], dict[str, F32], list[str]]:
    """Raw embeddings of each image's chip(s) and of their mirror images (``plain``, ``mirror``; summed
    over the extra views that ``mirror_photo`` adds; combine as wanted), and the images where no face
    was found. Jitter is not applied here. ``cache_dir``: per-run cache (a temp dir)."""
    plain: dict[str, F32] = {}
    mirror: dict[str, F32] = {}
    failed: list[str] = []
    ident = repr((fx.config.detector, fx.embedder.manifest.onnx_sha256, fx.model))
    key = hashlib.sha256(ident.encode()).hexdigest()[:12]
    cache = cache_dir / f"emb-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            done = dict(zip(z["names"].tolist(), range(len(z["names"])), strict=True))
            p_all, m_all = z["plain"], z["mirror"]
            failed = [str(s) for s in z["failed"].tolist()]
        for p in paths:
            if str(p) in done:
                plain[str(p)], mirror[str(p)] = p_all[done[str(p)]], m_all[done[str(p)]]
    todo = [p for p in paths if str(p) not in plain and str(p) not in failed]
    chips: list[npt.NDArray[np.uint8]] = []
    names: list[str] = []  # one per chip (an image with extra views has several)

    def flush() -> None:
        if chips:
            arr = np.stack(chips)
            raw = fx.embedder.embed(arr)
            raw_m = fx.embedder.embed(np.ascontiguousarray(arr[:, :, ::-1]))
            for n in dict.fromkeys(names):
                idx = [i for i, m in enumerate(names) if m == n]
                plain[n], mirror[n] = raw[idx].sum(axis=0), raw_m[idx].sum(axis=0)
            chips.clear()
            names.clear()

    for p in todo:
        try:
            a = fx.analyse(p.read_bytes())
            chips.extend([a.chip, *a.extra_chips])
            names.extend([str(p)] * (1 + len(a.extra_chips)))
        except SampleRejected:
            failed.append(str(p))
        if len(chips) >= 64:
            flush()
    flush()
    if cache is not None:
        names_all = sorted(plain)
        np.savez(cache, names=np.array(names_all), plain=np.stack([plain[n] for n in names_all]),
                 mirror=np.stack([mirror[n] for n in names_all]), failed=np.array(failed, dtype=str))
    return plain, mirror, failed


def templates(fx: FaceExtractor, plain: dict[str, F32], mirror: dict[str, F32]) -> dict[str, F32]:
    """The raw sums that ``fx``'s configuration turns into templates (jitter aside)."""
    if fx.config.flip_average:
        return {k: plain[k] + mirror[k] for k in plain}
    return dict(plain)


def normalise(v: F32) -> F32:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def pair_scores(pairs: Sequence[LfwPair], emb: dict[str, F32], root: Path) -> npt.NDArray[np.float64]:
    """Cosine similarity per pair (-1 when either image has no embedding)."""
    out = np.empty(len(pairs))
    for i, p in enumerate(pairs):
        a, b = emb.get(str(root / p.a)), emb.get(str(root / p.b))
        out[i] = -1.0 if a is None or b is None else float(normalise(a) @ normalise(b))
    return out


def kfold_accuracy(scores: npt.ArrayLike, same: npt.ArrayLike, folds: npt.ArrayLike) -> tuple[float, float]:
    """Mean and std of per-fold accuracy, each fold judged at the threshold best on the others
    (``engine.metrics.kfold_accuracy``, the one implementation of the LFW protocol)."""
    result = metrics.kfold_accuracy(scores, same, folds)
    return result.mean, result.std


def tar_at_far(scores: npt.ArrayLike, same: npt.ArrayLike, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose impostor acceptance rate is <= ``far``
    (``engine.metrics.fnmr_at_fmr``; one impostor error suffices here, the caller states the count)."""
    s, y = np.asarray(scores, float), np.asarray(same, bool)
    (point,) = metrics.fnmr_at_fmr(s[y], s[~y], (far,), min_errors=1.0)
    if point.false_negative_rate is None or point.threshold is None:
        return float("nan"), float("nan")
    return 1.0 - point.false_negative_rate, point.threshold


def orl_rank1(emb: dict[str, F32], gallery: dict[str, str], probes: dict[str, str]) -> float:
    """Rank-1 identification rate: ``gallery``/``probes`` map image path -> subject id. A probe
    without an embedding counts as a miss."""
    g_names = sorted(gallery)
    g = np.stack([normalise(emb[n]) for n in g_names if n in emb])
    g_ids = [gallery[n] for n in g_names if n in emb]
    hits = 0
    for p, pid in probes.items():
        if p not in emb:
            continue
        best = int(np.argmax(g @ normalise(emb[p])))
        hits += g_ids[best] == pid
    return hits / max(len(probes), 1)
