"""Shared pieces of the identify benchmarks: seeded synthetic galleries and the contenders.

Contenders follow the ann-benchmarks shape: ``build(xb, labels)`` outside the clock, ``one(j, k)``
answers prepared query ``j`` (top-k labels, best first) and is what is timed. Baselines are measured
in the same run as the engine: numpy brute force (sgemv + argpartition, no batching) and FAISS with
default settings (``IndexFlatIP``, ``IndexScalarQuantizer`` fp16, ``IndexHNSWFlat(d, 32)``).
The engine contenders go through ``FaceIndex.search`` (templates in, labels out), so their figures
include that API's cost and the micro-batcher.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from engine.cpus import threads as cpu_threads
from engine.index.blas import get_openblas_threads, set_openblas_threads
from engine.index.face import FaceIndex, FaceIndexOptions, IndexKind
from engine.types import FaceTemplate, ModelRef

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
MODEL = ModelRef("bench-face", "1")
ADD_CHUNK = 20000


@dataclass
class Gallery:
    xb: F32  # (n, d) unit rows
    labels: I64  # (n,) record ids
    xq: F32  # (nq, d) probes: a stored vector of a random identity plus noise (mated searches)


def make_gallery(n: int, d: int = 128, nq: int = 200, seed: int = 0) -> Gallery:
    """Embedding-like seeded data: n/4 identities, samples = centre + noise; probes are noisy copies
    of stored samples, so the rank-1 answer is meaningful but near-ties exist (as in real galleries)."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, n // 4)
    centres = rng.standard_normal((n_ids, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    xb = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 100000):  # chunked: bounded temporaries at 1M
        hi = min(n, lo + 100000)
        x = centres[rng.integers(0, n_ids, hi - lo)]
        x += rng.standard_normal((hi - lo, d), dtype=np.float32) * np.float32(0.6 / np.sqrt(d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        xb[lo:hi] = x
    noise = rng.standard_normal((nq, d), dtype=np.float32) * np.float32(0.3 / np.sqrt(d))
    xq = xb[rng.integers(0, n, nq)] + noise
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    labels = np.arange(n, dtype=np.int64) + 1
    return Gallery(xb, labels, xq.astype(np.float32))


class Contender:
    name = "?"

    def build(self, g: Gallery) -> None: ...

    def one(self, j: int, k: int) -> I64:
        raise NotImplementedError

    def close(self) -> None: ...

    def caller_init(self, callers: int) -> None:
        """Run once in each concurrent caller thread before its first request."""


class EngineFace(Contender):
    """``engine.index.face.FaceIndex`` with the given options."""

    def __init__(self, options: FaceIndexOptions, name: str | None = None) -> None:
        self.options = options
        self.name = name or f"nasname {options.kind.value}"

    def build(self, g: Gallery) -> None:
        self.blas_threads = get_openblas_threads()
        self.index = FaceIndex(MODEL, g.xb.shape[1], self.options)
        for lo in range(0, g.xb.shape[0], ADD_CHUNK):
            chunk = g.xb[lo : lo + ADD_CHUNK]
            self.index.add(g.labels[lo : lo + ADD_CHUNK], [FaceTemplate(v, MODEL) for v in chunk])
        self.queries = [FaceTemplate(v, MODEL) for v in g.xq]

    def one(self, j: int, k: int) -> I64:
        labels: I64 = self.index.search([self.queries[j]], k)[1][0]
        return labels

    def close(self) -> None:
        self.index.close()
        if self.options.exact_shards and self.blas_threads:
            set_openblas_threads(self.blas_threads)  # the sharded scan set it process-wide


class NumpyBrute(Contender):
    name = "numpy brute force"

    def build(self, g: Gallery) -> None:
        self.xb, self.labels, self.xq = g.xb, g.labels, g.xq  # shares the gallery's array

    def one(self, j: int, k: int) -> I64:
        s = self.xb @ self.xq[j]
        part = np.argpartition(-s, k - 1)[:k]
        return self.labels[part[np.argsort(-s[part], kind="stable")]]


class FaissDefault(Contender):
    """FAISS as a new user would call it: one ``index.search`` per request, default parameters."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"faiss default {kind}"

    def build(self, g: Gallery) -> None:
        d, ip = g.xb.shape[1], faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            index: Any = faiss.IndexFlatIP(d)
        elif self.kind == "fp16":
            index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip)
        else:
            index = faiss.IndexHNSWFlat(d, 32, ip)
        index.add(g.xb)
        self.index, self.labels, self.xq = index, g.labels, g.xq

    def caller_init(self, callers: int) -> None:
        # OpenMP's thread count is per calling thread and a new thread starts from the default (all
        # the machine's cores): 32 callers x 16 OpenMP threads crashed FAISS's OpenBLAS ("too many
        # memory regions") on a 16-core box. The callers share the process's CPUs instead.
        faiss.omp_set_num_threads(max(1, cpu_threads() // callers))

    def one(self, j: int, k: int) -> I64:
        _, R = self.index.search(self.xq[j : j + 1], k)
        labels: I64 = self.labels[R[0]]
        return labels


def latencies(c: Contender, nq: int, k: int) -> tuple[npt.NDArray[np.float64], I64]:
    """Sequential single requests: per-request seconds and each request's labels (nq, k)."""
    c.one(0, k)  # warm-up (page-in, lazy threads)
    t = np.empty(nq)
    out = np.empty((nq, k), dtype=np.int64)
    for j in range(nq):
        t0 = time.perf_counter()
        out[j] = c.one(j, k)
        t[j] = time.perf_counter() - t0
    return t, out


def throughput(c: Contender, nq: int, k: int, threads: int = 32,
               seconds: float = 4.0) -> tuple[float, float]:
    """Completed requests per second with ``threads`` callers looping over the probes, and the
    process's CPU milliseconds per completed request over the same window (every thread: callers,
    batcher, scan shards). Measures at least ``seconds`` and at least one request per caller (slow
    contenders on a busy machine would otherwise show 0), at most ``10 * seconds``.

    Why CPU time too: on a shared box the wall-clock rate says how much CPU the others left; CPU
    per request is what the contender itself costs, so ``cores * 1000 / cpu_ms`` is the rate a quiet
    machine with those cores could at best sustain."""
    stop = threading.Event()
    counts = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def caller(i: int) -> None:
        c.caller_init(threads)
        barrier.wait()
        j = i
        try:
            while not stop.is_set():
                c.one(j % nq, k)
                counts[i] += 1
                j += threads
        except BaseException as exc:  # reported after the run, never hidden
            errors.append(exc)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    time.sleep(min(1.0, seconds / 4))  # warm-up: not counted
    n0, t0, c0 = sum(counts), time.perf_counter(), time.process_time()
    while not errors:
        time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        if elapsed >= 10 * seconds or (elapsed >= seconds and sum(counts) - n0 >= threads):
            break
    n1, t1, c1 = sum(counts), time.perf_counter(), time.process_time()
    stop.set()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    done = max(1, n1 - n0)
    return (n1 - n0) / (t1 - t0), (c1 - c0) * 1e3 / done


def cap_library_threads(n: int) -> None:
    """Cap the libraries' own thread pools in this (main) thread to ``n``: FAISS's OpenMP (which
    also drives the OpenBLAS bundled with faiss-cpu) and numpy's OpenBLAS (process-wide)."""
    faiss.omp_set_num_threads(n)
    set_openblas_threads(n)


def cost_model(n: int, d: int, seconds: float = 1.0) -> dict[str, float]:
    """The scan's cost model on this machine, measured now: memory bandwidth (copy of a 256 MB
    array, read + write bytes / s) and sgemm throughput (float32, the batched scan's kernel), then
    the floors they give for one query over ``n`` x ``d`` float32 (single: bytes-bound sgemv) and
    the ceiling of requests/s when batched (flop-bound: 2 n d flops per query)."""
    src = np.ones(64 * 2**20, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.copyto(dst, src)
        reps += 1
    bw = 2 * src.nbytes * reps / (time.perf_counter() - t0)
    a = np.ones((16384, d), dtype=np.float32)
    b = np.ones((d, 64), dtype=np.float32)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    flops = 2.0 * a.shape[0] * d * b.shape[1] * reps / (time.perf_counter() - t0)
    bytes_q, flops_q = 4.0 * n * d, 2.0 * n * d
    return {"bandwidth_gbs": bw / 1e9, "sgemm_gflops": flops / 1e9, "bytes_per_query": bytes_q,
            "flops_per_query": flops_q, "single_floor_ms": 1e3 * bytes_q / bw,
            "batched_ceiling_qps": flops / flops_q}


def rank1_agreement(labels: I64, exact: I64) -> float:
    return float(np.mean(labels[:, 0] == exact[:, 0]))


def contenders(kinds: list[str]) -> list[Callable[[], Contender]]:
    """Factories, engine and baselines interleaved per kind; ``exact`` first (the reference)."""
    out: list[Callable[[], Contender]] = []
    for kind in kinds:
        if kind == "exact":
            out += [lambda: EngineFace(FaceIndexOptions()), NumpyBrute, lambda: FaissDefault("flat")]
        elif kind == "exact-blas":
            out += [lambda: EngineFace(FaceIndexOptions(exact_shards=0), "nasname exact, OpenBLAS threads")]
        elif kind == "exact-nobatch":
            out += [lambda: EngineFace(FaceIndexOptions(micro_batch=False), "nasname exact, no batcher")]
        elif kind == "fp16":
            out += [lambda: EngineFace(FaceIndexOptions(kind=IndexKind.FP16)), lambda: FaissDefault("fp16")]
        elif kind == "hnsw":
            out += [lambda: EngineFace(FaceIndexOptions(kind=IndexKind.HNSW)), lambda: FaissDefault("hnsw")]
        else:
            raise SystemExit(f"unknown kind {kind!r} (exact, exact-blas, exact-nobatch, fp16, hnsw)")
    return out
