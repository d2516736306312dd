"""fp16 kind: batches scored by blocked sgemm over the widened codes give FAISS's per-query answers
(with tombstones and restrictions), and concurrent single queries are micro-batched."""

from __future__ import annotations

import threading

import numpy as np

from engine.index.face import FaceIndex, FaceIndexOptions, IndexKind
from engine.index.fp16 import half_to_float
from tests.unit.index.conftest import MODEL, clustered, templates


def test_half_to_float_is_exact_for_every_half() -> None:
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).reshape(-1, 128)
    out = np.empty(halves.shape, dtype=np.float32)
    half_to_float(halves, out)
    ref = halves.view(np.float16).astype(np.float32)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(out), nan)
    assert np.array_equal(out.view(np.uint32)[~nan], ref.view(np.uint32)[~nan])


def test_batched_fp16_equals_faiss_per_query() -> None:
    rng = np.random.default_rng(3)
    n, d, k = 70000, 16, 7  # > 2 scan blocks per shard
    xb = clustered(rng, n, d, n_ids=5000)
    labels = np.arange(n, dtype=np.int64) * 2 + 5
    index = FaceIndex(MODEL, d, FaceIndexOptions(kind=IndexKind.FP16, shards=2, micro_batch=False))
    index.add(labels, templates(xb))
    index.remove(labels[::3])  # tombstones (below the compaction fraction)
    xq = xb[rng.integers(0, n, 12)] + 0.02 * rng.standard_normal((12, d)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    allowed = labels[rng.random(n) < 0.5]
    for allow in (None, allowed):
        D, I = index.search(templates(xq), k, allow)  # one batch: the sgemm path
        for j in range(xq.shape[0]):
            Dj, Ij = index.search(templates(xq[j : j + 1]), k, allow)  # FAISS per query
            np.testing.assert_allclose(D[j], Dj[0], atol=2e-6)
            assert set(I[j].tolist()) == set(Ij[0].tolist()) or np.allclose(D[j], Dj[0], atol=2e-6)
        assert not np.isin(I, labels[::3]).any()
        if allow is not None:
            assert np.isin(I, allow).all()


def test_concurrent_fp16_queries_are_micro_batched() -> None:
    rng = np.random.default_rng(4)
    n, d = 40000, 16
    xb = clustered(rng, n, d, n_ids=3000)
    labels = np.arange(n, dtype=np.int64)
    index = FaceIndex(MODEL, d, FaceIndexOptions(kind=IndexKind.FP16, batch_wait_ms=20.0))
    index.add(labels, templates(xb))
    qs = templates(xb[:16])
    want = [index.search([q], 5)[1][0] for q in qs]
    got: list[np.ndarray | None] = [None] * len(qs)

    def call(i: int) -> None:
        got[i] = index.search([qs[i]], 5)[1][0]

    workers = [threading.Thread(target=call, args=(i,)) for i in range(len(qs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert index._batcher is not None and index._batcher.queries == 2 * len(qs)
    assert index._batcher.batches < 2 * len(qs)  # at least one batch held several queries
    for a, b in zip(got, want, strict=True):
        assert a is not None and np.array_equal(a, b)
    index.close()
