"""Compressed / approximate face index kinds: recall against exact on seeded data, and the same
contract as exact (restriction, delete, replace, save/load). Bounds are stated per kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.index.face import FaceIndex, FaceIndexOptions, IndexKind
from tests.unit.index.conftest import MODEL, brute_force, clustered, templates

N, D_, NQ, K = 6000, 32, 60, 10
# (kind, options, minimum rank-1 agreement with exact, minimum recall@10) on the seeded data below.
CASES = [
    ("fp16", {}, 0.99, 0.99),
    ("sq8", {"train_size": 2000}, 0.9, 0.9),
    ("hnsw", {"hnsw_m": 12, "hnsw_ef_construction": 32, "hnsw_ef_search": 64}, 0.97, 0.9),
    ("ivf", {"train_size": 2000, "ivf_nlist": 32, "ivf_nprobe": 8}, 0.95, 0.8),
]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    xb = clustered(rng, N, D_, n_ids=1500, noise=0.5)
    xq = clustered(np.random.default_rng(8), NQ, D_, n_ids=1500, noise=0.5)
    # queries near stored vectors, as in a real identify
    xq = xb[rng.integers(0, N, NQ)] + 0.05 * rng.standard_normal((NQ, D_)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    labels = (np.arange(N) * 3 + 11).astype(np.int64)
    return xb, xq.astype(np.float32), labels


@pytest.mark.parametrize(("kind", "extra", "min_r1", "min_r10"), CASES)
def test_recall_against_exact(data, kind: str, extra: dict[str, int], min_r1: float, min_r10: float) -> None:
    xb, xq, labels = data
    index = FaceIndex(MODEL, D_, FaceIndexOptions(kind=IndexKind(kind), **extra))  # type: ignore[arg-type]
    index.add(labels, templates(xb))
    assert type(index._backend).__name__ == "ShardedBackend"  # trained kinds converted at train_size
    D, I = index.search(templates(xq), K)
    _, Iref = brute_force(xb, labels, xq, K)
    r1 = float(np.mean(I[:, 0] == Iref[:, 0]))
    r10 = float(np.mean([np.intersect1d(a, b).size / K for a, b in zip(I, Iref, strict=True)]))
    assert r1 >= min_r1 and r10 >= min_r10, (kind, r1, r10)
    assert (np.diff(D, axis=1) <= 1e-6).all()
    assert all(np.unique(row).size == K for row in I)


@pytest.mark.parametrize(("kind", "extra"), [(c[0], c[1]) for c in CASES])
def test_contract_restrict_delete_replace_persist(
    data, tmp_path: Path, kind: str, extra: dict[str, int]
) -> None:
    xb, xq, labels = data
    opts = FaceIndexOptions(kind=IndexKind(kind), compact_fraction=0.3, **extra)  # type: ignore[arg-type]
    index = FaceIndex(MODEL, D_, opts)
    index.add(labels, templates(xb))
    qs = templates(xq)
    # large restriction goes through the FAISS selector, small ones are scored directly
    for allowed in (labels[::2], labels[:7], labels[5:6]):
        _, I = index.search(qs, K, allowed)
        assert np.isin(I[I >= 0], allowed).all()
        assert (I[:, : min(K, allowed.size)] >= 0).all()
    # delete a first batch (tombstones), then enough to trigger compaction; results exclude them
    for end in (100, 2500):
        index.remove(labels[:end])  # the first 100 again: removal is idempotent
        _, I = index.search(qs, K)
        assert not np.isin(I, labels[:end]).any()
        assert len(index) == N - end
    assert len(index) == N - 2500
    # replace: the label now scores 1.0 against its new vector, and appears once
    new = xq[:1]
    index.add(labels[-1:], templates(new))
    D, I = index.search(templates(new), K)
    assert I[0, 0] == labels[-1] and D[0, 0] == pytest.approx(1.0, abs=2e-2)
    assert np.count_nonzero(I[0] == labels[-1]) == 1
    assert len(index) == N - 2500
    # persistence round trip gives identical answers
    index.save(tmp_path / "f.idx")
    loaded = FaceIndex.load(tmp_path / "f.idx")
    assert len(loaded) == len(index)
    for a, b in zip(index.search(qs, K, labels[::2]), loaded.search(qs, K, labels[::2]), strict=True):
        assert np.array_equal(a, b)
    s = loaded.score(qs[0], np.array([labels[0], labels[-1]]))
    assert np.isnan(s[0]) and np.isfinite(s[1])
