"""Seeded synthetic face embeddings and a numpy brute-force reference for the index tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from engine.index.blas import get_openblas_threads, set_openblas_threads
from engine.types import FaceTemplate, ModelRef

MODEL = ModelRef("test-face", "1")
F32 = npt.NDArray[np.float32]


def unit_rows(rng: np.random.Generator, n: int, d: int) -> F32:
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered(rng: np.random.Generator, n: int, d: int, n_ids: int, noise: float = 0.35) -> F32:
    """Embedding-like data: ``n_ids`` identities, each sample its identity's centre plus noise."""
    centres = unit_rows(rng, n_ids, d)
    jitter = rng.standard_normal((n, d)).astype(np.float32) * (noise / np.sqrt(d))
    x = centres[rng.integers(0, n_ids, n)] + jitter
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def templates(x: F32, model: ModelRef = MODEL) -> list[FaceTemplate]:
    return [FaceTemplate(v, model) for v in x]


def brute_force(xb: F32, labels: npt.NDArray[np.int64], xq: F32, k: int) -> tuple[F32, npt.NDArray[np.int64]]:
    """Reference top-k by float64 inner product (labels as given; -1/-inf padding)."""
    S = xq.astype(np.float64) @ xb.astype(np.float64).T
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    D = np.full((xq.shape[0], k), -np.inf, dtype=np.float32)
    I = np.full((xq.shape[0], k), -1, dtype=np.int64)
    kk = min(k, xb.shape[0])
    D[:, :kk] = np.take_along_axis(S, order, axis=1)[:, :kk]
    I[:, :kk] = labels[order[:, :kk]]
    return D, I


def assert_exact(D: F32, I: npt.NDArray[np.int64], xb: F32, labels: npt.NDArray[np.int64], xq: F32,
                 k: int, atol: float = 1e-5) -> None:
    """(D, I) equals the brute-force top-k up to ties: same score at every rank, and every returned
    label really has that score (so a tie may be broken either way, nothing else may differ)."""
    Dref, _ = brute_force(xb, labels, xq, k)
    assert D.shape == (xq.shape[0], k) and I.shape == (xq.shape[0], k)
    assert D.dtype == np.float32 and I.dtype == np.int64
    assert np.array_equal(np.isfinite(D), np.isfinite(Dref))
    assert np.array_equal(I == -1, ~np.isfinite(Dref))
    fin = np.isfinite(Dref)
    assert np.allclose(D[fin], Dref[fin], atol=atol)
    order = np.argsort(labels)
    for q in range(xq.shape[0]):
        got = I[q][I[q] != -1]
        assert np.unique(got).size == got.size
        rows = order[np.searchsorted(labels, got, sorter=order)]
        assert np.array_equal(labels[rows], got)
        true = xb[rows].astype(np.float64) @ xq[q].astype(np.float64)
        assert np.allclose(true, D[q, : got.size], atol=atol)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def restore_blas_threads() -> Iterator[None]:
    """The exact index sets numpy's OpenBLAS to one thread process-wide; undo it after each test."""
    before = get_openblas_threads()
    yield
    if before:
        set_openblas_threads(before)  # exact_shards sets numpy's OpenBLAS process-wide
