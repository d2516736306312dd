"""Invariants of the iris index on small random galleries of a non-default geometry (16 bytes,
8 columns of 2 bytes), for both search kinds."""

# ruff: noqa: E741  (FAISS short names D, I, as in engine/index)
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.index.iris import IrisIndex, IrisIndexOptions

from .conftest import MODEL, template

NBYTES, COLUMNS = 16, 8


@st.composite
def galleries(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 40))
    labels = np.array(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True)),
                      dtype=np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    codes = rng.integers(0, 256, size=(n, NBYTES), dtype=np.uint8)
    masks = rng.integers(0, 256, size=(n, NBYTES), dtype=np.uint8) | rng.integers(0, 256, size=(n, NBYTES),
                                                                                  dtype=np.uint8)
    return labels, codes, masks


def _build(kind: str, labels: np.ndarray, codes: np.ndarray, masks: np.ndarray) -> IrisIndex:
    index = IrisIndex(MODEL, NBYTES, COLUMNS,
                      IrisIndexOptions(kind=kind, max_shift=2, exact_below=0, shortlist_min=8))
    index.add_arrays(labels, codes, masks)
    return index


@settings(max_examples=40, deadline=None)
@given(g=galleries(), k=st.integers(1, 12), kind=st.sampled_from(["exact", "fast"]),
       seed=st.integers(0, 1000), data=st.data())
def test_search_invariants(g: tuple[np.ndarray, ...], k: int, kind: str, seed: int,
                           data: st.DataObject) -> None:
    labels, codes, masks = g
    index = _build(kind, labels, codes, masks)
    rng = np.random.default_rng(seed)
    q = [template(rng.integers(0, 256, NBYTES, dtype=np.uint8), np.full(NBYTES, 255, np.uint8), COLUMNS)
         for _ in range(2)]
    D, I = index.search(q, k)
    assert D.shape == I.shape == (2, k) and D.dtype == np.float32 and I.dtype == np.int64
    for d, i in zip(D, I, strict=True):
        found = i[i >= 0]
        assert found.size == min(k, len(labels))
        assert len(set(found.tolist())) == found.size  # unique
        assert set(found.tolist()) <= set(labels.tolist())
        assert np.all(np.diff(d[i >= 0]) <= 0)  # sorted descending
        assert np.all(np.isneginf(d[i < 0])) and np.all((d[i >= 0] >= 0) & (d[i >= 0] <= 1))
    # Restriction: only allowed labels come back.
    allowed = np.array(data.draw(st.lists(st.sampled_from(labels.tolist()), max_size=6))
                       if len(labels) else [], dtype=np.int64)
    _, Ia = index.search(q, k, allowed=allowed)
    assert set(Ia[Ia >= 0].tolist()) <= set(allowed.tolist())
    assert (Ia[0] >= 0).sum() == min(k, len(set(allowed.tolist())))
    # Deletion: removed labels never come back, the rest still do.
    gone = labels[: len(labels) // 2]
    index.remove(gone)
    index.remove(gone)
    _, Ir = index.search(q, len(labels) + 1)
    assert not set(Ir[Ir >= 0].tolist()) & set(gone.tolist())
    assert set(Ir[0][Ir[0] >= 0].tolist()) == set(labels[len(labels) // 2 :].tolist())
    # Scores of the remaining items agree with a search over everything.
    if len(index):
        s = index.score(q[0], Ir[0][Ir[0] >= 0])
        Dr, _ = index.search_exact(q[:1], len(index))
        np.testing.assert_allclose(np.sort(s)[::-1], Dr[0][: len(index)], atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(g=galleries(), kind=st.sampled_from(["exact", "fast"]))
def test_save_load_round_trip(g: tuple[np.ndarray, ...], kind: str) -> None:
    labels, codes, masks = g
    index = _build(kind, labels, codes, masks)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snap.npz"
        index.save(path)
        back = IrisIndex.load(path)
    l1, c1, m1 = index.packed_rows()
    l2, c2, m2 = back.packed_rows()
    assert np.array_equal(l1, l2) and np.array_equal(c1, c2) and np.array_equal(m1, m2)
    assert back.options == index.options and back.model == index.model
