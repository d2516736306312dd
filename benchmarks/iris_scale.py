"""Iris 1:N at scale: exact and fast search of the engine's iris index against baselines.

    .venv/bin/python -m benchmarks.iris_scale                       # N = 1M (~10 min on a quiet box)
    .venv/bin/python -m benchmarks.iris_scale --n 100000 --recall-probes 200

Seeded synthetic 2048-bit codes (``benchmarks.iris_common``), +-15 column shifts. Prints, per
contender: build time, p50/p99 latency of sequential single-probe searches, and for the fast path
the recall of the exact top-1 over ``--recall-probes`` mated probes (a probe counts as recalled when
the fast top-1 is the exact top-1, or scores the same). Exact results for the recall come from the
engine's exact search, batched 16 probes per gallery pass (its per-probe cost is printed too).
Baselines measured in the same run: plain numpy ``bitwise_count`` (masked, every shift) and FAISS
``IndexBinaryFlat`` (unmasked codes, one query per shift). ``--json`` adds raw figures as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from benchmarks.iris_common import EngineIris, FaissBinary, NumpyMasked, latencies, make_gallery
from engine.index.iris import IrisIndexOptions


def _fast_options(spec: str) -> IrisIndexOptions:
    kv = dict(item.split("=") for item in spec.split(",") if item)
    return IrisIndexOptions(kind="fast", coarse_shift_step=int(kv.get("step", 2)),
                            shortlist_fraction=float(kv.get("frac", 0.005)),
                            shortlist_min=int(kv.get("min", 256)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    ap.add_argument("--mated", type=int, default=1000, help="mated identities (probes available)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--exact-queries", type=int, default=30, help="sequential probes timed, exact")
    ap.add_argument("--fast-queries", type=int, default=200, help="sequential probes timed, fast")
    ap.add_argument("--recall-probes", type=int, default=1000, help="probes for the fast path's recall")
    ap.add_argument("--fast", action="append", default=None,
                    help="fast-path option set, e.g. 'step=2,frac=0.005' (repeatable)")
    ap.add_argument("--numpy-probes", type=int, default=1, help="probes for the numpy baseline (0 = skip)")
    ap.add_argument("--faiss-probes", type=int, default=3, help="probes for the FAISS baseline (0 = skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    fast_specs = args.fast or ["step=2,frac=0.005", "step=1,frac=0.002"]

    t0 = time.perf_counter()
    g = make_gallery(args.n, args.mated, args.seed)
    print(f"# iris_scale n={args.n} mated={args.mated} k={args.k} shifts=+-15 cpus={os.cpu_count()} "
          f"{platform.machine()} load={os.getloadavg()[0]:.1f} "
          f"(gallery made in {time.perf_counter() - t0:.1f}s)")
    print(f"{'contender':40} {'build s':>8} {'p50 ms':>9} {'p99 ms':>9} {'probes':>7} {'recall@1':>9}")
    rows: list[dict[str, object]] = []

    def report(name: str, build_s: float, lat: np.ndarray, recall: float | None = None,
               **extra: object) -> None:
        p50, p99 = float(np.percentile(lat, 50) * 1e3), float(np.percentile(lat, 99) * 1e3)
        rec = "" if recall is None else f"{recall:.4f}"
        print(f"{name:40} {build_s:8.1f} {p50:9.1f} {p99:9.1f} {len(lat):7d} {rec:>9}", flush=True)
        rows.append({"contender": name, "build_s": build_s, "p50_ms": p50, "p99_ms": p99,
                     "probes": len(lat), "recall_at_1": recall, "load": os.getloadavg()[0], **extra})

    exact = EngineIris("engine exact", IrisIndexOptions(kind="exact"))
    t0 = time.perf_counter()
    exact.build(g)
    build_s = time.perf_counter() - t0
    exact.query(g.probe_codes[0], g.probe_masks[0], args.k)  # compile / load the cached kernels
    lat, _ = latencies(exact, g, min(args.exact_queries, args.mated), args.k)
    report(exact.name, build_s, lat)

    nr = min(args.recall_probes, args.mated)
    ref_D = np.empty(nr, dtype=np.float32)
    ref_I = np.empty(nr, dtype=np.int64)
    t0 = time.perf_counter()
    for lo in range(0, nr, 16):
        hi = min(nr, lo + 16)
        D, I = exact.batch_query(g.probe_codes[lo:hi], g.probe_masks[lo:hi], 1)
        ref_D[lo : lo + len(D)], ref_I[lo : lo + len(I)] = D[:, 0], I[:, 0]
    per_probe = (time.perf_counter() - t0) / max(nr, 1)
    report("engine exact, batches of 16 (per probe)", 0.0, np.array([per_probe]))
    print(f"#   exact top-1 is the true mate for {np.mean(ref_I == np.arange(nr)):.4f} of {nr} mated probes")
    del exact

    for spec in fast_specs:
        fast = EngineIris(f"engine fast [{spec}]", _fast_options(spec))
        t0 = time.perf_counter()
        fast.build(g)
        build_s = time.perf_counter() - t0
        fast.query(g.probe_codes[0], g.probe_masks[0], args.k)
        lat, _ = latencies(fast, g, min(args.fast_queries, args.mated), args.k)
        D, I = fast.batch_query(g.probe_codes[:nr], g.probe_masks[:nr], 1)
        ok = (I[:, 0] == ref_I) | (np.abs(D[:, 0] - ref_D) < 1e-6)
        report(fast.name, build_s, lat, float(ok.mean()), misses=int((~ok).sum()), recall_probes=nr)
        del fast

    if args.numpy_probes:
        npc = NumpyMasked()
        npc.build(g)
        lat, top = latencies(npc, g, args.numpy_probes, args.k)
        report(npc.name, 0.0, lat, float(np.mean(top == ref_I[: len(top)])) if nr >= len(top) else None)
    if args.faiss_probes:
        fb = FaissBinary()
        t0 = time.perf_counter()
        fb.build(g)
        build_s = time.perf_counter() - t0
        lat, top = latencies(fb, g, args.faiss_probes, args.k)
        report(fb.name, build_s, lat, float(np.mean(top == ref_I[: len(top)])) if nr >= len(top) else None)
    print("# recall@1 = share of mated probes whose top-1 equals the engine's exact top-1 (baselines: same "
          "label); timings taken on a shared machine: quote medians, expect noise")
    if args.json:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
