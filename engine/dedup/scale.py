"""``nasname dedup scale``: N:N timing of the pair kernels on seeded synthetic templates with planted
duplicates, without a gallery (kernel speed only; store reading and fusion are not timed here).

Runs blocks of the upper triangle until done or until ``--budget`` seconds have passed; when stopped
early the total is *extrapolated* from the measured time per comparison (the blocks run first are the
widest, so the figure is conservative), and the output says so. Fast mode also reports pair recall
against the exact kernel on ``--recall-probes`` sampled probe rows of the same data.

    nasname dedup scale --kind face --n 100000
    nasname dedup scale --kind iris --n 20000 --mode fast
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from engine.dedup.data import ModalityData
from engine.dedup.pairs import FaceExact, IrisCoarseToFine, IrisExact, make_kernel, recall_sample
from engine.types import ModelRef

__all__ = ["add_arguments", "planted_faces", "planted_irises", "run"]

_MODEL = ModelRef("synthetic", "1")


def planted_faces(
    n: int, d: int = 128, *, planted: int = 0, cos: tuple[float, float] = (0.8, 0.95), seed: int = 0
) -> tuple[ModalityData, np.ndarray[Any, Any]]:
    """``n`` random unit vectors; rows ``n - planted ..`` are near-copies (cosine in ``cos``) of random
    other rows. Returns the data and the planted pairs (planted, 2), each row ``(i, j)`` with i < j."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    src = rng.choice(n - planted, size=planted, replace=False)
    dst = np.arange(n - planted, n)
    c = rng.uniform(*cos, planted).astype(np.float32)
    noise = rng.standard_normal((planted, d), dtype=np.float32)
    noise -= (noise * x[src]).sum(1, keepdims=True) * x[src]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x[dst] = c[:, None] * x[src] + np.sqrt(1 - c[:, None] ** 2) * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs = np.sort(np.stack([src, dst], axis=1), axis=1)
    return ModalityData(_MODEL, np.arange(n, dtype=np.int64), vectors=x), pairs


def planted_irises(
    n: int, *, planted: int = 0, seed: int = 0, nbytes: int = 256, columns: int = 256
) -> tuple[ModalityData, np.ndarray[Any, Any]]:
    """``n`` distinct eyes (``engine.iris.synthetic_codes``); the last ``planted`` rows are second
    captures of random other rows (rotated, burst-flipped, other eyelids)."""
    from engine.iris.synthetic_codes import capture, impostor_gallery, random_irises

    rng = np.random.default_rng(seed)
    codes, masks = impostor_gallery(n, nbytes, columns, seed=seed)
    src = rng.choice(n - planted, size=planted, replace=False)
    if planted:
        eyes = random_irises(planted, nbytes, columns, seed=seed + 1)
        a = capture(eyes, columns, seed=seed + 2)
        b = capture(eyes, columns, seed=seed + 3)
        codes[src], masks[src] = a.codes, a.masks
        codes[n - planted :], masks[n - planted :] = b.codes, b.masks
    pairs = np.sort(np.stack([src, np.arange(n - planted, n)], axis=1), axis=1)
    return ModalityData(
        _MODEL, np.arange(n, dtype=np.int64), codes=codes, masks=masks, columns=columns
    ), pairs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=("face", "iris"), required=True, help="which pair kernel to time")
    p.add_argument("--n", type=int, required=True, help="templates (N:N over all of them)")
    p.add_argument("--mode", choices=("exact", "fast"), default="exact", help="exact or approximate pairs")
    p.add_argument("--planted", type=int, default=None, help="planted duplicate pairs (default n/100)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="similarity floor (default face 0.6, iris 0.68: ~FMR 1e-7 on these synthetic codes)",
    )
    p.add_argument("--budget", type=float, default=600.0, help="seconds before stopping and extrapolating")
    p.add_argument("--recall-probes", type=int, default=1000, help="fast mode: probe rows checked exactly")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic templates")
    p.add_argument(
        "--coarse-step", type=int, default=2, help="iris fast: every k-th shift in the coarse stage"
    )
    p.add_argument("--shortlist", type=int, default=16, help="iris fast: coarse candidates kept per probe")


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = int(args.n)
    planted = n // 100 if args.planted is None else int(args.planted)
    t0 = time.perf_counter()
    data, truth = (planted_faces if args.kind == "face" else planted_irises)(
        n, planted=planted, seed=args.seed
    )
    gen_s = time.perf_counter() - t0
    threshold = args.threshold if args.threshold is not None else (0.6 if args.kind == "face" else 0.68)
    t0 = time.perf_counter()
    if args.kind == "iris" and args.mode == "fast":
        kern: Any = IrisCoarseToFine(data, shortlist=args.shortlist, coarse_shift_step=args.coarse_step)
    else:
        kern = make_kernel(args.kind, data, args.mode)
    build_s = time.perf_counter() - t0
    total_units = n * (n - 1) // 2
    done_units, found = 0, []
    started = time.perf_counter()
    cpu0 = time.process_time()
    lo = 0
    while lo < n and time.perf_counter() - started < args.budget:
        hi = min(n, lo + kern.block_rows)
        found.append(kern.block(lo, hi, threshold))
        done_units += (hi - lo) * (n - lo) - (hi - lo) * (hi - lo + 1) // 2
        lo = hi
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    complete = lo >= n
    got = {(int(a), int(b)) for f in found for a, b in zip(f[0], f[1], strict=True)}
    covered = [tuple(map(int, p)) for p in truth if p[0] < lo]
    out: dict[str, Any] = {
        "kind": args.kind,
        "options": {"coarse_step": args.coarse_step, "shortlist": args.shortlist}
        if args.mode == "fast"
        else {},
        "mode": args.mode,
        "n": n,
        "threshold": threshold,
        "generate_s": round(gen_s, 2),
        "index_build_s": round(build_s, 2),
        "pairs_s_measured": round(elapsed, 2),
        "fraction_done": round(done_units / max(total_units, 1), 4),
        "complete": complete,
        "pairs_s_total": round(elapsed if complete else elapsed * total_units / max(done_units, 1), 1),
        "extrapolated": not complete,
        # CPU seconds of all threads: on a busy shared machine, cpu / cores estimates an idle run
        "cpu_s_measured": round(cpu, 2),
        "cpu_s_total": round(cpu if complete else cpu * total_units / max(done_units, 1), 1),
        "comparisons_per_s": round(done_units / max(elapsed, 1e-9)),
        "pairs_found": len(got),
        "planted_checked": len(covered),
        "planted_found": sum(p in got for p in covered),
    }
    if args.mode == "fast":
        exact: FaceExact | IrisExact = FaceExact(data) if args.kind == "face" else IrisExact(data)
        rng = np.random.default_rng(args.seed + 7)
        upto = max(1, min(lo, n - 1))
        # uniform random probes only: seeding the sample with planted rows would bias the recall up
        probes = np.sort(rng.choice(upto, size=min(args.recall_probes, upto), replace=False))
        allp = tuple(np.concatenate([f[k] for f in found]) for k in range(3)) if found else None
        if allp is not None:
            sel = np.isin(allp[0], probes)
            rs = recall_sample(exact, (allp[0][sel], allp[1][sel], allp[2][sel]), probes, threshold)
            out.update(
                recall_probes=int(probes.size),
                recall_exact_pairs=rs.exact_pairs,
                recall_found=rs.found,
                pair_recall=round(rs.recall, 4),
            )
    return out
