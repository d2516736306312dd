"""Exact face index against a numpy brute-force reference (seeded data, ties tolerated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import IntegrityError, InvalidInput, ModelMismatch, NotFound
from engine.index.face import FaceIndex, FaceIndexOptions
from engine.types import FaceTemplate, IrisTemplate, ModelRef
from tests.unit.index.conftest import MODEL, assert_exact, clustered, templates, unit_rows


def build(rng: np.random.Generator, n: int, d: int, options: FaceIndexOptions | None = None):
    xb = clustered(rng, n, d, n_ids=max(1, n // 4))
    labels = rng.permutation(n * 7)[:n].astype(np.int64) + 5
    index = FaceIndex(MODEL, d, options)
    index.add(labels, templates(xb))
    return index, xb, labels


@pytest.mark.parametrize(("n", "nq"), [(1, 3), (50, 1), (3000, 1), (3000, 17), (40000, 1), (40000, 33)])
def test_search_equals_brute_force(rng: np.random.Generator, n: int, nq: int) -> None:
    index, xb, labels = build(rng, n, 32)
    xq = clustered(rng, nq, 32, n_ids=4)
    for k in (1, 7, n + 5) if n <= 3000 else (1, 7, 300):  # k > n on the small ones
        D, I = index.search(templates(xq), k)
        assert_exact(D, I, xb, labels, xq, k)


def test_restriction_small_and_large(rng: np.random.Generator) -> None:
    index, xb, labels = build(rng, 20000, 24)
    xq = clustered(rng, 5, 24, n_ids=2)
    for sel in (np.array([labels[3]]), labels[:50], labels[::2], labels[1::3]):
        keep = np.isin(labels, sel)
        unknown = np.array([-7, 10**12], dtype=np.int64)  # not in the index: ignored
        D, I = index.search(templates(xq), 10, np.concatenate([sel, unknown]))
        assert_exact(D, I, xb[keep], labels[keep], xq, 10)
    D, I = index.search(templates(xq), 3, np.array([], dtype=np.int64))
    assert (I == -1).all() and np.isneginf(D).all()


def test_remove_is_immediate_and_idempotent(rng: np.random.Generator) -> None:
    index, xb, labels = build(rng, 5000, 16)
    gone = labels[::3]
    xq = xb[::3][:20]  # queries equal to removed vectors: they were their own best match
    index.remove(gone)
    index.remove(gone)  # replay: unknown labels are ignored
    index.remove(np.array([123456789], dtype=np.int64))
    keep = ~np.isin(labels, gone)
    assert len(index) == int(keep.sum())
    D, I = index.search(templates(xq), 5)
    assert not np.isin(I, gone).any()
    assert_exact(D, I, xb[keep], labels[keep], xq, 5)


def test_add_replaces_existing_label(rng: np.random.Generator) -> None:
    index, _, labels = build(rng, 100, 8)
    new = unit_rows(rng, 1, 8)
    index.add(labels[:1], templates(new))
    assert len(index) == 100
    assert index.score(templates(new)[0], labels[:1])[0] == pytest.approx(1.0, abs=1e-5)


def test_score_one_to_one(rng: np.random.Generator) -> None:
    index, xb, labels = build(rng, 300, 12)
    q = templates(unit_rows(rng, 1, 12))[0]
    s = index.score(q, np.array([labels[4], 999999999, labels[7]]))
    assert s.dtype == np.float32
    assert s[0] == pytest.approx(float(xb[4] @ q.vector), abs=1e-5)
    assert np.isnan(s[1])
    assert s[2] == pytest.approx(float(xb[7] @ q.vector), abs=1e-5)


def test_model_and_dimension_are_checked(rng: np.random.Generator) -> None:
    index, _, _ = build(rng, 10, 8)
    other = ModelRef(MODEL.model_id, "2")
    with pytest.raises(ModelMismatch):
        index.add(np.array([1]), [FaceTemplate(unit_rows(rng, 1, 8)[0], other)])
    with pytest.raises(ModelMismatch):
        index.search([FaceTemplate(unit_rows(rng, 1, 9)[0], MODEL)], 1)
    iris = IrisTemplate(np.zeros(8, np.uint8), np.zeros(8, np.uint8), 8, MODEL)
    with pytest.raises(ModelMismatch):
        index.search([iris], 1)
    with pytest.raises(InvalidInput):
        index.search(templates(unit_rows(rng, 1, 8)), 0)
    with pytest.raises(InvalidInput):
        index.search(templates(unit_rows(rng, 1, 8)), FaceIndex.MAX_K + 1)
    with pytest.raises(InvalidInput):
        index.add(np.array([-1]), templates(unit_rows(rng, 1, 8)))
    with pytest.raises(InvalidInput):
        index.add(np.array([1, 1]), templates(unit_rows(rng, 2, 8)))
    with pytest.raises(InvalidInput):
        index.add(np.array([1, 2]), templates(unit_rows(rng, 1, 8)))
    assert len(index) == 10


def test_save_load_round_trip(rng: np.random.Generator, tmp_path: Path) -> None:
    index, _, labels = build(rng, 2000, 16)
    index.remove(labels[:10])
    path = tmp_path / "sub" / "face.idx"
    index.save(path)
    index.save(path)  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["face.idx"]  # no temp files left behind
    loaded = FaceIndex.load(path)
    assert loaded.model == MODEL and loaded.dim == 16 and len(loaded) == len(index)
    xq = templates(unit_rows(rng, 4, 16))
    for a, b in zip(index.search(xq, 9), loaded.search(xq, 9), strict=True):
        assert np.array_equal(a, b)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        FaceIndex.load(tmp_path / "missing.idx")
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"not a snapshot")
    with pytest.raises(IntegrityError):
        FaceIndex.load(bad)


def test_empty_index_and_empty_query_list() -> None:
    index = FaceIndex(MODEL, 4)
    D, I = index.search(templates(unit_rows(np.random.default_rng(0), 2, 4)), 3)
    assert D.shape == (2, 3) and (I == -1).all() and np.isneginf(D).all()
    D, I = index.search([], 3)
    assert D.shape == (0, 3) and I.shape == (0, 3)


@pytest.mark.parametrize("shards", [0, 2, 3])
def test_sharded_exact_scan_equals_brute_force(rng: np.random.Generator, shards: int) -> None:
    index, xb, labels = build(rng, 40000, 16, FaceIndexOptions(exact_shards=shards, micro_batch=False))
    xq = clustered(rng, 9, 16, n_ids=3)
    sel = labels[::3]
    keep = np.isin(labels, sel)
    for qs in (xq[:1], xq):
        D, I = index.search(templates(qs), 12)
        assert_exact(D, I, xb, labels, qs, 12)
        D, I = index.search(templates(qs), 12, sel)
        assert_exact(D, I, xb[keep], labels[keep], qs, 12)
