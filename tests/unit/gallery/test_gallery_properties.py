"""Property tests (hypothesis): after any sequence of inserts / deletes / status changes, searches
return only ACTIVE records of the requested partition / id list, at most k, no duplicates, best first,
equal to a numpy brute force over the expected state; and snapshot + replay equals a rebuild."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.crypto import KeyRing
from engine.gallery import Gallery, GalleryConfig
from engine.store import RecordStatus
from engine.types import FaceTemplate, Modality
from tests.unit.gallery.conftest import FACE_MODEL, face_factory, face_loader

F = Modality.FACE
D = 16
PARTS = ("a", "b", "c")
CONFIG = GalleryConfig(snapshot_every=0, snapshot_interval_s=0, snapshot_on_close=False)

op = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.sampled_from(PARTS)),
    st.tuples(st.just("delete"), st.integers(0, 50), st.just("")),
    st.tuples(st.just("pending"), st.integers(0, 50), st.just("")),
    st.tuples(st.just("activate"), st.integers(0, 50), st.just("")),
)


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(D).astype(np.float32)
    return v / np.linalg.norm(v)


class Model:
    """The expected state: ref id -> (vector seed, partition, status)."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[int, str, RecordStatus]] = {}
        self.order: list[str] = []

    def apply(self, g: Gallery, kind: str, n: int, part: str) -> None:
        if kind == "insert":
            ref = f"R-{len(self.order)}"
            g.insert({F: FaceTemplate(_vec(n), FACE_MODEL)}, ref_id=ref, partition=part)
            self.records[ref] = (n, part, RecordStatus.ACTIVE)
            self.order.append(ref)
            return
        if not self.order:
            return
        ref = self.order[n % len(self.order)]
        seed, p, status = self.records[ref]
        if kind == "delete" and status is not RecordStatus.DELETED:
            g.delete(ref)
            self.records[ref] = (seed, p, RecordStatus.DELETED)
        elif kind == "pending" and status is RecordStatus.ACTIVE:
            g.set_status(ref, RecordStatus.PENDING)
            self.records[ref] = (seed, p, RecordStatus.PENDING)
        elif kind == "activate" and status is RecordStatus.PENDING:
            g.set_status(ref, RecordStatus.ACTIVE)
            self.records[ref] = (seed, p, RecordStatus.ACTIVE)

    def expected(self, q: np.ndarray, k: int, part: str | None, ids: list[str] | None) -> list[str]:
        pool = [r for r, (_, p, s) in self.records.items() if s is RecordStatus.ACTIVE
                and (part is None or p == part) and (ids is None or r in ids)]
        scored = sorted(pool, key=lambda r: -float(_vec(self.records[r][0]) @ q))
        return scored[:k]


Op = tuple[str, int, str]
Probe = tuple[int, int, str | None, int]  # vector seed, k, partition, take every n-th id (0 = no id list)


def _check_searches(g: Gallery, model: Model, probes: list[Probe]) -> list[list[float]]:
    out = []
    for seed, k, part, id_take in probes:
        q = _vec(seed)
        ids = model.order[::id_take] if id_take and model.order else None
        hits = g.search(F, FaceTemplate(q, FACE_MODEL), k, partition=part, ref_ids=ids)
        refs = [h.ref_id for h in hits]
        assert len(refs) <= k and len(set(refs)) == len(refs)
        sims = [h.similarity for h in hits]
        assert sims == sorted(sims, reverse=True)
        for r in refs:
            _, p, status = model.records[r]
            assert status is RecordStatus.ACTIVE
            assert part is None or p == part
            assert ids is None or r in ids
        # equal to brute force, ties tolerated (a seed may be inserted twice): same scores in order,
        # and each hit's score is its true score
        expected = [float(_vec(model.records[r][0]) @ q) for r in model.expected(q, k, part, ids)]
        np.testing.assert_allclose(sims, expected, atol=1e-5)
        for r, sim in zip(refs, sims, strict=True):
            assert abs(sim - float(_vec(model.records[r][0]) @ q)) < 1e-5
        out.append([round(x, 4) for x in sims])
    return out


probe = st.tuples(st.integers(0, 10_000), st.integers(1, 8), st.sampled_from((None, *PARTS)),
                  st.sampled_from((0, 0, 2, 3)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=25), probes=st.lists(probe, min_size=1, max_size=4))
def test_search_invariants_after_any_operations(ops: list[Op], probes: list[Probe]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        g = Gallery(Path(tmp), KeyRing.generate(), face_factory, face_loader, config=CONFIG)
        try:
            model = Model()
            for kind, n, part in ops:
                model.apply(g, kind, n, part)
            # also probe with inserted records' own vectors (score 1.0 when still searchable)
            probes += [(model.records[r][0], 3, None, 0) for r in model.order[:3]]
            _check_searches(g, model, probes)
            assert g.stats()["indexes"].get("face", 0) == g.count()
        finally:
            g.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(op, min_size=1, max_size=15), after=st.lists(op, max_size=15),
       probes=st.lists(probe, min_size=2, max_size=4))
def test_snapshot_plus_replay_equals_rebuild(before: list[Op], after: list[Op], probes: list[Probe]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ring, path = KeyRing.generate(), Path(tmp)
        model = Model()
        g = Gallery(path, ring, face_factory, face_loader, config=CONFIG)
        for kind, n, part in before:
            model.apply(g, kind, n, part)
        seq = g.snapshot()
        for kind, n, part in after:
            model.apply(g, kind, n, part)
        g.close()
        g = Gallery(path, ring, face_factory, face_loader, config=CONFIG)
        # a snapshot whose modality lost its model since (its last template was erased, issue 18
        # item 6) is not used: that gallery is rebuilt from the store, which must give the same answers
        assert g.stats()["snapshot_seq"] in ((seq,) if g.models() else (seq, -1))
        replayed = _check_searches(g, model, probes)
        g.close()
        shutil.rmtree(path / "snapshots")
        g = Gallery(path, ring, face_factory, face_loader, config=CONFIG)
        assert g.stats()["snapshot_seq"] == -1
        rebuilt = _check_searches(g, model, probes)
        g.close()
        assert replayed == rebuilt
