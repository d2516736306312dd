"""MicroBatcher: under many concurrent callers every caller gets exactly its own (unbatched) result,
errors reach only the failing caller, and shutdown never leaves a caller blocked."""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.errors import InvalidInput, Unavailable
from engine.index.batcher import MicroBatcher
from engine.index.face import FaceIndex, FaceIndexOptions
from tests.unit.index.conftest import MODEL, clustered, templates


def test_concurrent_callers_get_their_own_rows() -> None:
    rng = np.random.default_rng(3)
    xb = clustered(rng, 8000, 32, n_ids=2000)
    labels = np.arange(8000, dtype=np.int64) * 2
    batched = FaceIndex(MODEL, 32, FaceIndexOptions(batch_max=16, batch_wait_ms=5.0))
    plain = FaceIndex(MODEL, 32, FaceIndexOptions(micro_batch=False))
    for index in (batched, plain):
        index.add(labels, templates(xb))
    xq = xb[rng.integers(0, 8000, 400)] + 0.01 * rng.standard_normal((400, 32)).astype(np.float32)
    qs = templates(xq)
    ks = rng.integers(1, 30, 400)  # per-query k
    expected = [plain.search([q], int(k)) for q, k in zip(qs, ks, strict=True)]
    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda i: batched.search([qs[i]], int(ks[i])), range(400)))
    batcher = batched._batcher
    assert batcher is not None and batcher.queries == 400
    assert batcher.batches < 400  # some requests really were batched together
    for (D, I), (De, Ie) in zip(got, expected, strict=True):
        assert D.shape == De.shape and np.allclose(D, De, atol=1e-5)
        # identical up to ties: a label may differ from the unbatched one only at an equal score
        differ = np.not_equal(I, Ie)
        assert np.allclose(D[differ], De[differ], atol=1e-5)
    batched.close()
    D, I = batched.search(qs[:1], 3)  # after close: unbatched, still correct
    assert np.allclose(D, expected[0][0][:, :3], atol=1e-5) and I.shape == (1, 3)


def _echo(xq: np.ndarray, k: int, allowed: list[object]) -> tuple[np.ndarray, np.ndarray]:
    """Fake search: query i returns its own first coordinate (+ its ``allowed`` number) as score and
    label; fails on NaN."""
    if np.isnan(xq).any():
        raise InvalidInput("poisoned query")
    extra = np.array([[a or 0] for a in allowed], dtype=np.float32)
    D = np.repeat(xq[:, :1] + extra, k, axis=1).astype(np.float32)
    return D, D.astype(np.int64)


def test_exceptions_reach_only_the_failing_caller() -> None:
    start = threading.Barrier(24)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        x = np.array([float(i), 0.0], dtype=np.float32)
        if i % 5 == 0:
            x[1] = np.nan
        start.wait()
        try:
            results[i] = batcher.search(x, 1 + i % 3, 1000 * (i % 2))
        except InvalidInput as exc:
            results[i] = exc

    with MicroBatcher(_echo, max_batch=8, max_wait_s=0.01) as batcher:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    for i in range(24):
        r = results[i]
        if i % 5 == 0:
            assert isinstance(r, InvalidInput)
        else:
            assert isinstance(r, tuple)
            D, I = r
            assert I.tolist() == [i + 1000 * (i % 2)] * (1 + i % 3) and D.shape == (1 + i % 3,)


def test_close_fails_queued_requests_and_refuses_new_ones() -> None:
    gate = threading.Event()

    def slow(xq: np.ndarray, k: int, allowed: list[object]) -> tuple[np.ndarray, np.ndarray]:
        gate.wait(5)
        return _echo(xq, k, allowed)

    batcher = MicroBatcher(slow, max_batch=1, max_wait_s=0.0)
    outcomes: list[object] = []

    def call() -> None:
        try:
            outcomes.append(batcher.search(np.zeros(2, np.float32), 1))
        except Unavailable as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # one request is in the (blocked) search, two are queued
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.1)
    gate.set()
    closer.join(5)
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert sum(isinstance(o, tuple) for o in outcomes) == 1
    assert sum(isinstance(o, Unavailable) for o in outcomes) == 2
    with pytest.raises(Unavailable):
        batcher.search(np.zeros(2, np.float32), 1)


def test_dropped_index_stops_its_worker() -> None:
    index = FaceIndex(MODEL, 4)
    index.add(np.array([1]), templates(np.eye(4, dtype=np.float32)[:1]))
    index.search(templates(np.eye(4, dtype=np.float32)[:1]), 1)
    worker = index._batcher._thread  # type: ignore[union-attr]
    del index
    gc.collect()
    worker.join(5)
    assert not worker.is_alive()


def test_restricted_queries_in_one_batch() -> None:
    """Callers restricted to different partitions (and unrestricted ones) share batches, yet each
    gets exactly its own partition's answer."""
    rng = np.random.default_rng(5)
    n = 12000
    xb = clustered(rng, n, 16, n_ids=3000)
    labels = np.arange(n, dtype=np.int64) + 100
    parts = [None, labels[::2], labels[1::2], labels[: n // 2 + 1000]]
    batched = FaceIndex(MODEL, 16, FaceIndexOptions(batch_max=32, batch_wait_ms=5.0))
    plain = FaceIndex(MODEL, 16, FaceIndexOptions(micro_batch=False))
    for index in (batched, plain):
        index.add(labels, templates(xb))
    qs = templates(xb[rng.integers(0, n, 160)])
    jobs = [(qs[i], parts[i % 4]) for i in range(160)]
    expected = [plain.search([q], 5, a) for q, a in jobs]
    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda job: batched.search([job[0]], 5, job[1]), jobs))
    assert batched._batcher is not None and batched._batcher.batches < 160
    for (_, a), (D, I), (De, _) in zip(jobs, got, expected, strict=True):
        if a is not None:
            assert np.isin(I, a).all()
        assert np.allclose(D, De, atol=1e-5)  # same scores at every rank (labels may differ in ties)
    batched.close()


def test_batch_function_groups_restrictions_for_faiss_kinds() -> None:
    """A batch reaching a FAISS kind (e.g. queued just before sq8/ivf converted) is split into one
    search per distinct restriction, rows back in their places."""
    rng = np.random.default_rng(6)
    n = 6000
    xb = clustered(rng, n, 16, n_ids=1500)
    labels = np.arange(n, dtype=np.int64)
    index = FaceIndex(MODEL, 16, FaceIndexOptions(kind="fp16", micro_batch=False))  # type: ignore[arg-type]
    index.add(labels, templates(xb))
    xq = xb[rng.integers(0, n, 12)]
    parts = [None, labels[::2], labels[1::3]]
    allowed = [parts[i % 3] for i in range(12)]
    D, I = index._search_batch(xq, 4, allowed)
    for i in range(12):
        De, _ = index.search(templates(xq[i : i + 1]), 4, allowed[i])
        assert np.allclose(D[i], De[0], atol=1e-5)
        if allowed[i] is not None:
            assert np.isin(I[i], allowed[i]).all()


def test_batches_fill_when_callers_come_back_slowly() -> None:
    """Closed-loop callers that return a few ms after their answer (a busy box's wake-ups) are
    waited for, so batches stay whole instead of splitting into two alternating halves."""
    callers = 16

    def slow(xq: np.ndarray, k: int, allowed: list[object]) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.08)  # one batched scan, whatever its size
        return np.zeros((xq.shape[0], k), np.float32), np.zeros((xq.shape[0], k), np.int64)

    def mean_batch(share: float) -> float:
        stop = time.monotonic() + 2.0
        with MicroBatcher(slow, max_batch=64, max_wait_s=0.002, wait_share=share) as batcher:
            def caller(i: int) -> None:
                delays = np.random.default_rng(i).uniform(0.0, 0.006, 1000)
                j = 0
                while time.monotonic() < stop:
                    batcher.search(np.zeros(4, np.float32), 1)
                    time.sleep(float(delays[j % 1000]))
                    j += 1

            threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            return batcher.queries / batcher.batches

    assert mean_batch(0.5) >= 0.75 * callers
    assert mean_batch(0.0) < 0.75 * callers  # the fixed 2 ms linger alone splits them
