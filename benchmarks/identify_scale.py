"""Identify at scale: latency and concurrent throughput of the face index against baselines.

    .venv/bin/python -m benchmarks.identify_scale --n 1000000     # exact, fp16, exact-blas (~4-5 min)
    .venv/bin/python -m benchmarks.identify_scale --n 300000 --kinds exact,fp16,hnsw
    taskset -c 0 .venv/bin/python -m benchmarks.identify_scale --cost-model   # 1 core; then -c 0,1

For each contender (engine index options next to the numpy brute-force and FAISS-default baselines,
all measured in this run on the same seeded gallery of ``--n`` 128-d unit vectors): p50/p99 latency
of sequential single requests, requests/s under ``--callers`` concurrent callers with the process's
CPU milliseconds per request in that run (what a contender costs, whatever else the box runs), and rank-1
agreement with exact search (the engine's exact result is the reference). Prints a table, and the
raw per-contender figures as JSON lines with ``--json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time

import numpy as np

from benchmarks.identify_common import (
    cap_library_threads,
    cost_model,
    latencies,
    make_gallery,
    rank1_agreement,
    throughput,
)
from benchmarks.identify_common import contenders as make_contenders
from engine.cpus import available_cpus, set_threads, threads


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    ap.add_argument("--d", type=int, default=128, help="embedding dimension")
    ap.add_argument("--k", type=int, default=10, help="top-k per identify")
    ap.add_argument("--queries", type=int, default=200, help="sequential probes for the latency figures")
    ap.add_argument("--callers", type=int, default=32, help="concurrent callers for throughput")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads of every contender: engine scans, FAISS OpenMP, BLAS "
                         "(default 0: the CPUs available to the process, engine.cpus)")
    ap.add_argument("--seconds", type=float, default=4.0, help="measured time of each throughput run")
    ap.add_argument("--kinds", default="exact,fp16,exact-blas",
                    help="comma list of exact, exact-blas, exact-nobatch, fp16, hnsw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="also print raw figures as JSON lines")
    ap.add_argument("--cost-model", action="store_true",
                    help="also measure bandwidth and sgemm rate here and print the scan's floors")
    args = ap.parse_args(argv)

    set_threads(args.threads)
    cap_library_threads(threads())
    t0 = time.perf_counter()
    g = make_gallery(args.n, args.d, args.queries, args.seed)
    print(f"# identify_scale n={args.n} d={args.d} k={args.k} queries={args.queries} "
          f"callers={args.callers} threads={threads()} cpus={os.cpu_count()} "
          f"available={available_cpus()} {platform.processor() or platform.machine()} "
          f"load={os.getloadavg()[0]:.1f} (gallery made in {time.perf_counter() - t0:.1f}s)")
    if args.cost_model:
        cm = cost_model(args.n, args.d)
        print(f"# cost model: {cm['bytes_per_query'] / 1e6:.0f} MB and {cm['flops_per_query'] / 1e6:.0f} "
              f"MFLOP per exact query; measured {cm['bandwidth_gbs']:.1f} GB/s copy bandwidth, "
              f"{cm['sgemm_gflops']:.1f} GFLOP/s sgemm -> single-query floor "
              f"{cm['single_floor_ms']:.1f} ms, batched ceiling {cm['batched_ceiling_qps']:.0f} req/s")
    print(f"{'contender':28} {'build s':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s @' + str(args.callers):>10} "
          f"{'CPU ms/req':>10} {'rank-1 agr':>10}")
    reference: np.ndarray | None = None
    rows = []
    for factory in make_contenders(args.kinds.split(",")):
        c = factory()
        t0 = time.perf_counter()
        c.build(g)
        build_s = time.perf_counter() - t0
        lat, labels = latencies(c, args.queries, args.k)
        if reference is None:
            reference = labels  # the first contender is the engine's exact index
        qps, cpu_ms = throughput(c, args.queries, args.k, args.callers, args.seconds)
        row = {
            "contender": c.name, "n": args.n, "build_s": round(build_s, 2),
            "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
            "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 2),
            "qps": round(qps, 1), "cpu_ms_per_req": round(cpu_ms, 2),
            "rank1_agreement": round(rank1_agreement(labels, reference), 4),
            "load_avg": round(os.getloadavg()[0], 1),
        }
        rows.append(row)
        print(f"{c.name:28} {row['build_s']:8.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
              f"{row['qps']:10.1f} {row['cpu_ms_per_req']:10.2f} {row['rank1_agreement']:10.4f}", flush=True)
        c.close()
        del c
        gc.collect()
    if args.json:
        for row in rows:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
