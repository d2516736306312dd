# ruff: noqa: E741  (FAISS short names D, I, as in engine/index)
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import IntegrityError, InvalidInput, ModelMismatch, NotFound
from engine.index.iris import IrisIndex, IrisIndexOptions
from engine.iris.matcher import IrisMatcher, MatchParams
from engine.iris.synthetic_codes import impostor_gallery, mated_set
from engine.types import FaceTemplate, ModelRef

from .conftest import MODEL, reference_similarity, template


@pytest.fixture(scope="module")
def gallery() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """150 mated identities + 150 distractors (gallery), and the 150 mated probes."""
    enr, prb = mated_set(150, seed=11)
    dc, dm = impostor_gallery(150, seed=12)
    return np.concatenate([enr.codes, dc]), np.concatenate([enr.masks, dm]), prb.codes, prb.masks


def _index(codes: np.ndarray, masks: np.ndarray, **opts: object) -> IrisIndex:
    index = IrisIndex(MODEL, codes.shape[1], 256, IrisIndexOptions(**opts))  # type: ignore[arg-type]
    index.add_arrays(np.arange(100, 100 + len(codes)), codes, masks)
    return index


def test_exact_search_equals_slow_reference(gallery: tuple[np.ndarray, ...]) -> None:
    gc, gm, pc, pm = gallery
    index = _index(gc, gm, max_shift=4)
    queries = [template(pc[i], pm[i], 256) for i in range(0, 150, 30)] + [template(gc[200], gm[200], 256)]
    D, I = index.search(queries, 5)
    for q, t in enumerate(queries):
        ref = np.array([reference_similarity(t.code, t.mask, gc[j], gm[j], 256, 4, 911.0)
                        for j in range(len(gc))])
        order = np.argsort(-ref, kind="stable")
        np.testing.assert_allclose(D[q], ref[order[:5]], atol=1e-5)
        # Labels agree wherever the reference has no tie at that rank.
        for r in range(5):
            if np.sum(np.abs(ref - ref[order[r]]) < 1e-6) == 1:
                assert I[q, r] == 100 + order[r]
    assert I[-1, 0] == 300 and D[-1, 0] == 1.0  # a gallery item finds itself


def test_score_equals_matcher_and_nan_for_missing(gallery: tuple[np.ndarray, ...]) -> None:
    gc, gm, pc, pm = gallery
    index = _index(gc, gm)
    probe = template(pc[3], pm[3], 256)
    s = index.score(probe, np.array([103, 104, 99999], dtype=np.int64))
    m = IrisMatcher(MatchParams())
    assert s[0] == pytest.approx(m.similarity(probe, template(gc[3], gm[3], 256)), abs=1e-6)
    assert s[1] == pytest.approx(m.similarity(probe, template(gc[4], gm[4], 256)), abs=1e-6)
    assert np.isnan(s[2])


def test_fast_equals_exact_on_mated_probes(gallery: tuple[np.ndarray, ...]) -> None:
    gc, gm, pc, pm = gallery
    exact = _index(gc, gm)
    fast = _index(gc, gm, kind="fast", exact_below=0, shortlist_min=16, shortlist_fraction=0.0)
    queries = [template(pc[i], pm[i], 256) for i in range(150)]
    De, Ie = exact.search(queries, 1)
    Df, If = fast.search(queries, 1)
    assert np.array_equal(Ie[:, 0], 100 + np.arange(150))
    assert np.array_equal(If, Ie)
    np.testing.assert_allclose(Df, De, atol=1e-6)


def test_allowed_restriction_and_padding(gallery: tuple[np.ndarray, ...]) -> None:
    gc, gm, pc, pm = gallery
    for kind in ("exact", "fast"):
        index = _index(gc, gm, kind=kind, exact_below=0, shortlist_min=4)
        q = [template(pc[0], pm[0], 256)]
        D, I = index.search(q, 4, allowed=np.array([105, 106, 5_000], dtype=np.int64))
        assert set(I[0, :2].tolist()) == {105, 106}
        assert I[0, 2:].tolist() == [-1, -1] and np.all(np.isneginf(D[0, 2:]))
        D, I = index.search(q, 3, allowed=np.array([], dtype=np.int64))
        assert np.all(I == -1)


def test_add_replace_remove_and_errors(gallery: tuple[np.ndarray, ...]) -> None:
    gc, gm, _, _ = gallery
    index = IrisIndex(MODEL, 256, 256)
    index.add(np.array([1, 2, 3]), [template(gc[i], gm[i], 256) for i in range(3)])
    index.add(np.array([2]), [template(gc[10], gm[10], 256)])  # replace
    assert len(index) == 3
    assert index.score(template(gc[10], gm[10], 256), np.array([2]))[0] == 1.0
    index.remove(np.array([1, 1, 42]))
    index.remove(np.array([1]))  # idempotent
    assert len(index) == 2
    _, I = index.search([template(gc[2], gm[2], 256)], 5)
    assert I[0, 0] == 3 and I[0, 2:].tolist() == [-1, -1, -1]
    with pytest.raises(ModelMismatch):
        index.add(np.array([9]), [template(gc[0], gm[0], 256, ModelRef("other", "1"))])
    with pytest.raises(ModelMismatch):
        index.search([template(gc[0][:128], gm[0][:128], 128)], 1)
    with pytest.raises(ModelMismatch):
        index.add(np.array([9]), [FaceTemplate(np.ones(4, np.float32), MODEL)])
    with pytest.raises(InvalidInput):
        index.add(np.array([9, 9]), [template(gc[0], gm[0], 256)] * 2)
    with pytest.raises(InvalidInput):
        index.search([template(gc[0], gm[0], 256)], 0)


def test_snapshot_round_trip_and_damage(tmp_path: Path, gallery: tuple[np.ndarray, ...]) -> None:
    gc, gm, pc, pm = gallery
    index = _index(gc, gm, kind="fast", max_shift=9)
    index.remove(np.array([100, 150]))
    path = tmp_path / "iris.npz"
    index.save(path)
    back = IrisIndex.load(path)
    assert back.model == MODEL and len(back) == len(index) and back.options == index.options
    q = [template(pc[i], pm[i], 256) for i in range(5)]
    for a, b in zip(index.search(q, 3), back.search(q, 3), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(NotFound):
        IrisIndex.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(path.read_bytes()[:100])
    with pytest.raises(IntegrityError):
        IrisIndex.load(tmp_path / "bad.npz")


def test_parallel_and_serial_kernels_agree(gallery: tuple[np.ndarray, ...]) -> None:
    from engine.index import hamming

    gc, gm, pc, pm = gallery
    G, M = hamming.pad_words(gc), hamming.pad_words(gm)
    shifts = hamming.shift_order(15, 256)
    prepared = [hamming.shifted_rows(pc[q], pm[q], shifts, 1) for q in range(40)]
    P = np.stack([p[0] for p in prepared])
    Q = np.stack([p[1] for p in prepared])
    rows = np.arange(len(gc), dtype=np.int64)
    assert 40 * len(rows) > hamming.SERIAL_BELOW >= len(rows)
    par, par_shift, par_bits = hamming.best_scores(P, Q, G, M, rows, 911.0)
    for q in range(40):
        ser, ser_shift, ser_bits = hamming.best_scores(P[q : q + 1], Q[q : q + 1], G, M, rows, 911.0)
        np.testing.assert_array_equal(ser[0], par[q])
        np.testing.assert_array_equal(ser_shift[0], par_shift[q])
        np.testing.assert_array_equal(ser_bits[0], par_bits[q])
    cD, _ = hamming.topk_scan(P, Q, G, M, len(gc), None, 5, 911.0)
    top = -np.sort(-cD, axis=1)[:, :5]
    np.testing.assert_allclose(top, -np.sort(-par, axis=1)[:, :5], atol=1e-7)
