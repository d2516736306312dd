"""Runs a grid and records *raw* observations only (latencies, build times, labels returned);
``engine.bench.analysis`` computes the figures from them, so a report can be recomputed."""

from __future__ import annotations

import gc
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from engine.bench.contenders import Contender, make_contender
from engine.bench.grids import ContenderSpec, Grid
from engine.bench.machine import rss_bytes
from engine.bench.synthetic import FaceData, IrisData, face_data, iris_data
from engine.cpus import threads
from engine.errors import NasnameError

__all__ = ["run_grid"]

log = logging.getLogger(__name__)
LABELS_KEPT = 100  # top-k lists kept per contender for recall (enough for a stable estimate)


def _dataset(grid: Grid, family: str, size: int) -> FaceData | IrisData:
    if family == "face":
        return face_data(size, grid.queries, grid.face_dim, seed=grid.seed + size)
    return iris_data(size, grid.queries, grid.iris_nbytes, grid.iris_columns, seed=grid.seed + size)


def _score_stats(data: FaceData | IrisData) -> dict[str, Any]:
    """Genuine / impostor similarities of the synthetic queries (to compare with real models')."""
    mated = np.flatnonzero(data.mate >= 0)
    other = np.flatnonzero(data.mate < 0)
    if isinstance(data, FaceData):
        gen = (data.xq[mated] * data.xb[data.mate[mated]]).sum(1)
        imp = (data.xq[other] @ data.xb[: min(1000, data.xb.shape[0])].T).ravel()
    else:
        gen, imp = _iris_stats(data, mated, other)
    return {name: {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)} if v.size else None
            for name, v in (("genuine", gen), ("impostor", imp))}


def _iris_stats(data: IrisData, mated: Any, other: Any) -> tuple[Any, Any]:
    from engine.evaluation.scoring import iris_similarity
    from engine.types import IrisTemplate, ModelRef

    m = ModelRef("bench", "1")

    def t(code: Any, mask: Any) -> IrisTemplate:
        return IrisTemplate(code, mask, data.columns, m)

    q = [t(data.qcodes[j], data.qmasks[j]) for j in range(len(data.mate))]
    g = [t(data.codes[i], data.masks[i]) for i in range(min(200, data.codes.shape[0]))]
    gen = np.array([iris_similarity([q[j]], [t(data.codes[data.mate[j]], data.masks[data.mate[j]])])[0, 0]
                    for j in mated])
    imp = iris_similarity([q[j] for j in other[:20]], g).ravel()
    return gen, imp


def _run_one(spec: ContenderSpec, data: FaceData | IrisData, grid: Grid, progress: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    c = make_contender(spec.key, spec.params)  # freed when this returns
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    c.fit(data)
    out["fit_s"] = time.perf_counter() - t0
    out["rss_growth_bytes"] = rss_bytes() - rss0
    c.prepare(data)
    nq = len(data.mate)
    for j in range(min(2, nq)):  # warm-up (lazy allocations, caches)
        c.query(j, grid.k)
    lat: list[float] = []
    labels: list[list[int]] = []
    start = time.perf_counter()
    for j in tqdm(range(nq), desc=f"  {spec.name}", unit="q", file=sys.stderr, leave=False,
                  disable=None if progress else True):
        t = time.perf_counter()
        ids = c.query(j, grid.k)
        lat.append(time.perf_counter() - t)
        if j < LABELS_KEPT:
            labels.append([int(x) for x in ids])
        if time.perf_counter() - start > grid.budget_s and len(lat) >= 5:
            break
    out["single_latencies_s"] = lat
    out["labels"] = labels
    out["concurrent"] = _concurrent(c, nq, grid)
    out.update(_snapshot_times(c))
    close = getattr(c, "close", None)  # contenders holding processes (Ray shards)
    if close is not None:
        close()
    return out


def _share_cpus(callers: int) -> None:
    """In each caller thread: OpenMP's thread count is per thread and starts from all the machine's
    cores, so FAISS under 32 callers would run 32 x cores threads (it crashed FAISS's bundled
    OpenBLAS on a 16-core box). The callers share the process's CPUs (``engine.cpus``) instead."""
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(max(1, threads() // callers))


def _concurrent(c: Contender, nq: int, grid: Grid) -> dict[str, Any]:
    """``grid.callers`` threads each issue queries back to back until ``budget_s`` has passed (each
    at least one, at most ``concurrent_queries`` in total); throughput = completed / wall time."""
    per_caller = max(1, grid.concurrent_queries // grid.callers)
    start = time.perf_counter()

    def caller(i: int) -> list[float]:
        lat: list[float] = []
        for n in range(per_caller):
            t = time.perf_counter()
            c.query((i + n * grid.callers) % nq, grid.k)
            lat.append(time.perf_counter() - t)
            if time.perf_counter() - start > grid.budget_s:
                break
        return lat

    with ThreadPoolExecutor(max_workers=grid.callers, initializer=_share_cpus,
                            initargs=(grid.callers,)) as pool:
        lats = list(pool.map(caller, range(grid.callers)))
    wall = time.perf_counter() - start
    flat = [x for lat in lats for x in lat]
    return {"callers": grid.callers, "queries": len(flat), "wall_s": wall, "latencies_s": flat}


def _snapshot_times(c: Contender) -> dict[str, Any]:
    """For engine indexes: snapshot size and the time to load it (the index part of opening a
    gallery)."""
    index = getattr(c, "index", None)
    if index is None or not hasattr(index, "save") or not hasattr(type(index), "load"):
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot"
        index.save(path)
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
        t = time.perf_counter()
        loaded = type(index).load(path)
        open_s = time.perf_counter() - t
        del loaded
    return {"snapshot_bytes": size, "open_s": open_s}


def run_grid(
    grid: Grid, families: tuple[str, ...] = ("face", "iris"), progress: bool = True
) -> list[dict[str, Any]]:
    """Raw records: one ``{"type": "dataset", ...}`` per family and size, one
    ``{"type": "run", ...}`` per contender, family and size (``status`` ok / skipped / not available
    / failed, with ``note``)."""
    records: list[dict[str, Any]] = []
    for family in families:
        sizes = grid.face_sizes if family == "face" else grid.iris_sizes
        specs = grid.face if family == "face" else grid.iris
        for size in sizes:
            if progress:
                print(f"[{family}] N={size:,}: generating synthetic gallery", file=sys.stderr)
            data = _dataset(grid, family, size)
            records.append({"type": "dataset", "family": family, "size": size, "queries": len(data.mate),
                            "mate": data.mate.tolist(), "generator": data.generator,
                            "scores": _score_stats(data)})
            for spec in specs:
                records.append(_record(spec, family, size, data, grid, progress))
            del data
            gc.collect()
    return records


def _record(spec: ContenderSpec, family: str, size: int, data: FaceData | IrisData, grid: Grid,
            progress: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {"type": "run", "family": family, "size": size, "contender": spec.name,
                           "role": spec.role, "approximate": spec.approximate, "k": grid.k}
    if spec.max_size is not None and size > spec.max_size:
        return {**rec, "status": "skipped", "note": f"above this contender's max size {spec.max_size:,}"}
    try:
        rec.update(_run_one(spec, data, grid, progress), status="ok", note="")
    except (ImportError, NasnameError) as exc:
        rec.update(status="not available", note=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a broken contender is reported in the table, the run goes on
        log.exception("bench contender %s failed at N=%d", spec.name, size)
        rec.update(status="failed", note=f"{type(exc).__name__}: {exc}")
    gc.collect()
    if progress:
        print(f"    {spec.name:<45} {rec['status']} {rec['note'][:80]}", file=sys.stderr)
    return rec
