"""The LFW protocol helpers: pair file parsing, k-fold accuracy, TAR at FAR, rank-1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.face.evaluate import kfold_accuracy, orl_rank1, read_lfw_pairs, tar_at_far


def test_pairs_file_parsing(tmp_path: Path) -> None:
    text = "2\t2\nA\t1\t2\nB\t1\t3\nA\t1\tC\t2\nB\t2\tD\t1\nE\t1\t2\nF\t2\t3\nG\t1\tH\t1\nI\t3\tJ\t4\n"
    f = tmp_path / "pairs.txt"
    f.write_text(text)
    pairs = read_lfw_pairs(f)
    assert len(pairs) == 8 and [p.fold for p in pairs] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert pairs[0].a == "A/A_0001.jpg" and pairs[0].b == "A/A_0002.jpg" and pairs[0].same
    assert pairs[2].b == "C/C_0002.jpg" and not pairs[2].same
    assert [p.a for p in read_lfw_pairs(f, folds=[2], per_fold=1)] == ["E/E_0001.jpg", "G/G_0001.jpg"]


def test_kfold_accuracy_uses_thresholds_from_other_folds() -> None:
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 500)
    scores = np.where(same, rng.normal(0.8, 0.05, 1000), rng.normal(0.5, 0.05, 1000))
    folds = np.tile(np.arange(1, 6), 200)
    acc, std = kfold_accuracy(scores, same, folds)
    assert acc > 0.99 and std < 0.02
    flipped, _ = kfold_accuracy(-scores, same, folds)
    assert flipped < 0.6


def test_tar_at_far_counts_impostors_above_threshold() -> None:
    same = np.array([True] * 4 + [False] * 10)
    scores = np.array([0.9, 0.8, 0.7, 0.3] + [0.1 * i for i in range(10)])
    tar, thr = tar_at_far(scores, same, 0.1)  # one impostor of ten may pass
    assert thr == pytest.approx(0.8) and tar == 0.25
    tar_small, _ = tar_at_far(scores, same, 0.01)  # ten impostors cannot measure FAR 1e-2
    assert np.isnan(tar_small)


def test_rank1_counts_missing_probes_as_misses() -> None:
    e = {"g1": np.array([1.0, 0.0]), "g2": np.array([0.0, 1.0]), "p1": np.array([0.9, 0.1]),
         "p2": np.array([0.2, 0.8]), "p3": np.array([0.7, 0.3])}
    assert orl_rank1(e, {"g1": "a", "g2": "b"}, {"p1": "a", "p2": "b", "p3": "b"}) == 2 / 3
    assert orl_rank1(e, {"g1": "a", "g2": "b"}, {"p1": "a", "missing": "b"}) == 0.5
