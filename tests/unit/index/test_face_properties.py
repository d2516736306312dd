"""Property tests (hypothesis) of the face index invariants over random small galleries."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.index.face import FaceIndex, FaceIndexOptions, IndexKind
from tests.unit.index.conftest import MODEL, assert_exact, templates, unit_rows

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(0, 40))
    d = draw(st.integers(2, 6))
    labels = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True))
    gone = draw(st.lists(st.sampled_from(labels), unique=True)) if labels else []
    some_ids = st.lists(st.sampled_from(labels) | st.integers(0, 10), max_size=12) if labels else st.just([])
    allowed = draw(st.none() | some_ids)
    return {
        "d": d,
        "labels": np.array(labels, dtype=np.int64),
        "gone": np.array(gone, dtype=np.int64),
        "allowed": None if allowed is None else np.array(allowed, dtype=np.int64),
        "k": draw(st.integers(1, 50)),
        "nq": draw(st.integers(1, 4)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        # duplicated vectors make ties, which every invariant must survive
        "dups": draw(st.booleans()),
        "kind": draw(st.sampled_from([IndexKind.EXACT, IndexKind.FP16])),
    }


@SETTINGS
@given(scenarios())
def test_invariants(sc: dict[str, object]) -> None:
    rng = np.random.default_rng(int(sc["seed"]))  # type: ignore[call-overload]
    d, labels, gone, allowed = sc["d"], sc["labels"], sc["gone"], sc["allowed"]
    k, nq, kind = int(sc["k"]), int(sc["nq"]), sc["kind"]  # type: ignore[call-overload]
    assert isinstance(labels, np.ndarray) and isinstance(gone, np.ndarray) and isinstance(d, int)
    xb = unit_rows(rng, labels.size, d)
    if sc["dups"] and labels.size > 1:
        xb[1::2] = xb[0]
    if kind is IndexKind.FP16:
        xb = xb.astype(np.float16).astype(np.float32)  # what fp16 stores: then it must be exact too
    index = FaceIndex(MODEL, d, FaceIndexOptions(kind=kind))  # type: ignore[arg-type]
    index.add(labels, templates(xb))
    index.remove(gone)
    live = ~np.isin(labels, gone)
    xq = unit_rows(rng, nq, d)
    D, I = index.search(templates(xq), k, allowed)  # type: ignore[arg-type]

    pool = live if allowed is None else live & np.isin(labels, allowed)  # type: ignore[arg-type]
    n_pool = int(pool.sum())
    assert (I >= 0).sum(axis=1).tolist() == [min(k, n_pool)] * nq  # k bound, incl. k > n
    assert np.isin(I[I >= 0], labels[pool]).all()  # restriction and deletion respected
    assert (np.diff(np.where(np.isfinite(D), D, -9.0), axis=1) <= 1e-6).all()  # sorted descending
    atol = 1e-5 if kind is IndexKind.EXACT else 2e-3
    assert_exact(D, I, xb[pool], labels[pool], xq, k, atol=atol)  # unique labels, true scores

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "face.idx"
        index.save(path)
        loaded = FaceIndex.load(path)
    assert len(loaded) == len(index) == int(live.sum())
    D2, I2 = loaded.search(templates(xq), k, allowed)  # type: ignore[arg-type]
    assert np.array_equal(D2, D) and np.array_equal(I2, I)
    index.close()
    loaded.close()
