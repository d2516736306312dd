"""Pair kernels against brute force, candidate floors (exactness argument), clusters (union-find,
weakest link, adjudicated pairs)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dedup.clusters import build_clusters
from engine.dedup.data import ModalityData
from engine.dedup.fuse import MODALITIES, FusedPairs, make_thresholds, set_key
from engine.dedup.pairs import FaceExact, IrisExact
from engine.fusion import Fusion
from engine.iris.matcher import IrisMatcher
from engine.iris.synthetic_codes import capture, impostor_gallery, random_irises
from engine.types import IrisTemplate, Modality
from tests.unit.dedup.conftest import COLUMNS, FACE_MODEL, IRIS_MODEL, NBYTES, unit_rows


def test_face_blocks_cover_the_upper_triangle_exactly() -> None:
    rng = np.random.default_rng(0)
    x = unit_rows(rng, 700, 16)  # 16-d: many pairs above a low threshold
    kern = FaceExact(ModalityData(FACE_MODEL, np.arange(700), vectors=x), block_rows=128, col_tile=100)
    parts = [kern.block(lo, min(700, lo + 128), 0.5) for lo in range(0, 700, 128)]
    got = {(int(a), int(b)) for p in parts for a, b in zip(p[0], p[1], strict=True)}
    s = x.astype(np.float64) @ x.astype(np.float64).T
    want = {(int(a), int(b)) for a, b in zip(*np.nonzero(np.triu(s >= 0.5, 1)), strict=True)}
    # the kernel keeps a 1e-4 float32 slack below the threshold (fusion rescores exactly)
    assert want <= got
    assert all(s[a, b] >= 0.5 - 1e-4 for a, b in got) and all(a < b for a, b in got)


def test_iris_pair_kernel_equals_matcher_and_block_kernel() -> None:
    codes, masks = impostor_gallery(60, NBYTES, COLUMNS, seed=1)
    eyes = random_irises(5, NBYTES, COLUMNS, seed=2)
    cap = capture(eyes, COLUMNS, seed=3)
    codes[55:], masks[55:] = cap.codes, cap.masks
    codes[:5], masks[:5] = capture(eyes, COLUMNS, seed=4).codes, capture(eyes, COLUMNS, seed=4).masks
    data = ModalityData(IRIS_MODEL, np.arange(60), codes=codes, masks=masks, columns=COLUMNS)
    kern = IrisExact(data, block_rows=16, col_tile=7)
    i, j, s = kern.block(0, 60, -1.0)  # every pair
    assert i.size == 60 * 59 // 2
    again = kern.score_pairs(i, j)  # the scattered-pair kernel gives the block kernel's numbers
    np.testing.assert_array_equal(again, s)
    matcher = IrisMatcher()
    t = [IrisTemplate(codes[k], masks[k], COLUMNS, IRIS_MODEL) for k in range(60)]
    rng = np.random.default_rng(5)
    for k in rng.choice(i.size, 40, replace=False):
        assert abs(float(s[k]) - matcher.similarity(t[i[k]], t[j[k]])) < 1e-6
    # the planted mates are the best pairs
    best = {(int(a), int(b)) for a, b, v in zip(i, j, s, strict=True) if v > 0.7}
    assert best == {(k, 55 + k) for k in range(5)}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-60, 60), min_size=3, max_size=3), st.integers(0, 6))
def test_floors_never_lose_a_passing_pair(fusion: Fusion, llrs: list[float], pattern: int) -> None:
    """Any combination of per-modality LLRs that reaches its set's fused threshold has at least one
    modality at or above that modality's candidate floor."""
    mods = [Modality.FACE, Modality.IRIS_LEFT, Modality.IRIS_RIGHT]
    th = make_thresholds(fusion, mods, 10_000, target_fpir=0.003)
    subsets = [s for r in (1, 2, 3) for s in itertools.combinations(mods, r)]
    shared = subsets[pattern]
    # clip each LLR to what the modality can produce
    vals = {
        m: float(np.clip(v, fusion.calibration(m).llr.min(), fusion.calibration(m).llr.max()))
        for m, v in zip(mods, llrs, strict=True)
    }
    if sum(vals[m] for m in shared) >= th.fused[set_key(shared)]:
        floors_llr = {
            m: float(fusion.calibration(m).llr_of(th.floor[m])) if np.isfinite(th.floor[m]) else -np.inf
            for m in shared
        }
        assert any(vals[m] >= floors_llr[m] - 1e-9 for m in shared)


def _pairs(rows: list[tuple[int, int, float]]) -> FusedPairs:
    u = np.array([r[0] for r in rows])
    v = np.array([r[1] for r in rows])
    f = np.array([r[2] for r in rows], dtype=np.float64)
    k = len(rows)
    nan = np.full((k, len(MODALITIES)), np.nan)
    return FusedPairs(u, v, f, np.full(k, 10.0), nan, nan, f, np.full(k, 10.0))


def test_clusters_weakest_link_chains_and_adjudicated_pairs() -> None:
    pairs = _pairs([(0, 1, 30.0), (1, 2, 12.0), (5, 6, 20.0), (5, 7, 25.0), (6, 7, 22.0), (8, 9, 40.0)])
    clusters, marked = build_clusters(pairs, adjudicated=[(9, 8)])
    assert marked == [False] * 5 + [True]
    by_members = {tuple(c.members): c for c in clusters}
    assert set(by_members) == {(0, 1, 2), (5, 6, 7)}  # 8-9 was decided distinct: not raised again
    chain = by_members[(0, 1, 2)]
    assert chain.chained and chain.missing_pairs == 1 and chain.weakest == 1  # the 12.0 link
    clique = by_members[(5, 6, 7)]
    assert not clique.chained and clique.weakest == 4 and sorted(clique.tree) == [3, 4]  # 25 + 22
    assert clusters[0].members == [5, 6, 7]  # risk = sum of spanning margins: 15 + 12 > 20 + 2
    assert [c.cluster_id for c in clusters] == [1, 2]


def test_an_unmeetable_rate_is_recorded_and_said_in_words(fusion: Fusion) -> None:
    """A rate no modality set can give at this size (even identical faces are too common among
    impostors) is not silently replaced: the thresholds and the job summary say which sets fall short
    and by how much; a modest rate is met by every set."""
    mods = [Modality.FACE, Modality.IRIS_LEFT, Modality.IRIS_RIGHT]
    assert make_thresholds(fusion, mods, 10_000, target_fpir=0.003).unmet == {}
    th = make_thresholds(fusion, mods, 10_000, fmr=1e-300)
    assert set_key([Modality.FACE]) in th.unmet
    assert all(th.unmet[k] > th.fmr for k in th.unmet)
    text = th.unmet_text()
    assert "face alone cannot reach the asked rate at 10,000 records" in text
    again = type(th).from_json(th.to_json())
    assert again.unmet == th.unmet and again.unmet_text() == text
