"""The 1:N protocol of ``engine.models.mobilefacenet_eval`` on hand-made similarity matrices."""

from __future__ import annotations

import numpy as np

from engine.models.mobilefacenet_eval import one_to_n


def _small() -> tuple[np.ndarray, list[str]]:
    ids = ["A", "A", "B", "C", "C", "C", "D"]
    sim = np.full((7, 7), 0.1)
    sim[1, 0] = 0.9                 # A's probe: mate first
    sim[4, 3], sim[4, 6] = 0.5, 0.6  # C's first probe: D outranks the mate
    sim[5, 3], sim[5, 2] = 0.8, 0.7  # C's second probe: mate first, B close
    return sim, ids


def test_distractor_design_counts_and_rank1() -> None:
    sim, ids = _small()
    r = one_to_n(sim, ids, "distractors")
    assert (r["gallery"], r["mated"], r["nonmated"]) == (4, 3, 3)  # gallery A0 B2 C3 D6
    assert r["rank1"] == 2 / 3
    assert r["fnir_at_fpir_0.003"] is None  # 3 non-mated searches cannot measure FPIR 0.003


def test_singleton_design_counts() -> None:
    sim, ids = _small()
    r = one_to_n(sim, ids, "singletons")
    assert (r["gallery"], r["mated"], r["nonmated"]) == (2, 3, 2)  # gallery A0 C3; B, D non-mated
    assert r["rank1"] == 1.0  # without D and B in the gallery every mate ranks first


def test_fnir_at_fpir_on_a_large_synthetic_gallery() -> None:
    rng = np.random.default_rng(0)
    n = 1100  # people with two images each: 1100 mated and 1100 non-mated (mate left out) searches
    ids = [f"p{i}" for i in range(n) for _ in range(2)]
    sim = rng.uniform(0.0, 0.5, (2 * n, 2 * n))
    strong = np.arange(n) % 2 == 0
    sim[2 * np.arange(n) + 1, 2 * np.arange(n)] = np.where(strong, 0.9, 0.4)
    r = one_to_n(sim, ids, "distractors")
    assert (r["gallery"], r["mated"], r["nonmated"]) == (n, n, n)
    # The FPIR 0.003 threshold sits in the top of the non-mated maxima (~0.4995): weak mates miss.
    assert r["fnir_at_fpir_0.003"] == 0.5
    assert 0.49 < r["threshold"] < 0.5
    assert r["rank1"] == 0.5
    sim[2 * 4 + 1, :] = -np.inf  # a probe without a face: a miss, never a false positive
    assert one_to_n(sim, ids, "distractors")["rank1"] == (n // 2 - 1) / n
