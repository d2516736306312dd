"""Recall of the fast path against exact search, on seeded synthetic codes.

Bound tested: the fast top-1 equals the exact top-1 for >= 99.8 % of 500 mated probes (at most one
miss) in a gallery of 20,500, with the production shortlist fraction (0.5 % of the gallery). The 1M
benchmark (``python -m benchmarks.iris_scale``) measures the same recall at full size.
"""

from __future__ import annotations

import numpy as np

from engine.index.iris import IrisIndex, IrisIndexOptions
from engine.iris.synthetic_codes import impostor_gallery, mated_set

from .conftest import MODEL

N_MATED, N_DISTRACTORS = 500, 20_000


def test_fast_top1_recall_against_exact() -> None:
    enr, prb = mated_set(N_MATED, seed=21)
    dc, dm = impostor_gallery(N_DISTRACTORS, seed=22)
    opts = IrisIndexOptions(kind="fast", exact_below=0, shortlist_min=16)  # K = 0.5 % of 20,500 = 103
    index = IrisIndex(MODEL, 256, 256, opts)
    index.add_arrays(np.arange(N_MATED), enr.codes, enr.masks)
    index.add_arrays(np.arange(N_MATED, N_MATED + N_DISTRACTORS), dc, dm)
    De, Ie = index.search_packed(prb.codes, prb.masks, 1, exact=True)
    Df, If = index.search_packed(prb.codes, prb.masks, 1, exact=False)
    assert np.mean(Ie[:, 0] == np.arange(N_MATED)) == 1.0  # exact finds every mate (sanity)
    agree = (If[:, 0] == Ie[:, 0]) | (np.abs(Df[:, 0] - De[:, 0]) < 1e-6)
    assert agree.mean() >= 0.998
    np.testing.assert_allclose(Df[agree, 0], De[agree, 0], atol=1e-6)  # rescoring is exact
