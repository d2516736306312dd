"""Index snapshot load and save: sealed (chunked AES-GCM, ``engine.store.sealed``) next to the plain
.npz baseline the gallery wrote before, on the same seeded 128-d face index (pytest-benchmark).

    .venv/bin/pytest benchmarks/bench_snapshot.py -m "not slow"    # N = 100k (51 MB of vectors)
    .venv/bin/pytest benchmarks/bench_snapshot.py                  # and N = 1M (512 MB)

``extra_info["mb"]`` is the plaintext size; compare the medians of ``sealed`` and ``plain`` per N.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.crypto import KeyRing
from engine.index.face import FaceIndex
from engine.store import sealed
from engine.types import FaceTemplate, ModelRef

MODEL = ModelRef("bench-face", "1")
SIZES = [100_000, pytest.param(1_000_000, marks=pytest.mark.slow)]
IDENTITY = "snapshot|face|1"
_RING = KeyRing.generate()
_indexes: dict[int, FaceIndex] = {}


def _index(n: int) -> FaceIndex:
    if n not in _indexes:
        rng = np.random.default_rng(0)
        index = FaceIndex(MODEL, 128)
        for lo in range(0, n, 100_000):
            x = rng.standard_normal((min(100_000, n - lo), 128)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            index.add(np.arange(lo, lo + len(x), dtype=np.int64), [FaceTemplate(v, MODEL) for v in x])
        _indexes[n] = index
    return _indexes[n]


def _save(index: FaceIndex, path: Path, how: str) -> Callable[[], None]:
    if how == "plain":
        return lambda: index.save(path)
    return lambda: sealed.write_sealed(path, _RING, IDENTITY, index.save)


def _load(path: Path, how: str) -> FaceIndex:
    if how == "plain":
        return FaceIndex.load(path)
    with sealed.open_sealed(path, _RING, IDENTITY) as plain:
        return FaceIndex.load(plain)


@pytest.mark.parametrize("how", ["plain", "sealed"])
@pytest.mark.parametrize("n", SIZES)
def test_snapshot_load(benchmark, tmp_path: Path, n: int, how: str) -> None:
    path = tmp_path / "face.idx"
    _save(_index(n), path, how)()
    loaded = benchmark.pedantic(_load, args=(path, how), rounds=5, warmup_rounds=1)
    assert len(loaded) == n
    benchmark.extra_info["mb"] = round(path.stat().st_size / 2**20, 1)


@pytest.mark.parametrize("how", ["plain", "sealed"])
@pytest.mark.parametrize("n", SIZES)
def test_snapshot_save(benchmark, tmp_path: Path, n: int, how: str) -> None:
    path = tmp_path / "face.idx"
    benchmark.pedantic(_save(_index(n), path, how), rounds=5, warmup_rounds=1)
    benchmark.extra_info["mb"] = round(path.stat().st_size / 2**20, 1)
