"""Searches, inserts, deletes and snapshots from many threads at once on one Gallery (real FaceIndex):
no lost results (a search that starts after an insert returned finds it) and no phantoms (a search
that starts after a delete returned never returns it; nothing never inserted is ever returned)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np

from engine.crypto import KeyRing
from engine.gallery import Gallery, GalleryConfig
from engine.index.base import TemplateIndex
from engine.index.face import FaceIndex
from engine.types import FaceTemplate, Modality, ModelRef, Template

MODEL = ModelRef("concurrency-face", "1")
F = Modality.FACE
D = 128


def _template(n: int) -> FaceTemplate:
    return FaceTemplate(np.random.default_rng(n).standard_normal(D).astype(np.float32), MODEL)


def _factory(m: Modality, example: Template) -> TemplateIndex:
    assert isinstance(example, FaceTemplate)
    return FaceIndex(example.model, example.vector.size)


def _loader(m: Modality, model: ModelRef, path: Path) -> TemplateIndex:
    return FaceIndex.load(path)


class Ledger:
    """What writers have acknowledged, in the order it happened."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: list[int] = []  # inserted and acknowledged
        self.deleted: set[int] = set()  # delete acknowledged
        self.claimed: set[int] = set()  # delete started (so no two writers delete the same record)
        self.attempted: set[int] = set()  # insert started (may or may not be acknowledged yet)

    def view(self) -> tuple[list[int], set[int], set[int]]:
        with self.lock:
            return list(self.acked), set(self.deleted), set(self.claimed)


def test_concurrent_searches_and_writes_lose_nothing_and_invent_nothing(tmp_path: Path) -> None:
    g = Gallery(tmp_path, KeyRing.generate(), _factory, _loader,
                config=GalleryConfig(snapshot_every=60, snapshot_interval_s=0))
    ledger = Ledger()
    for n in range(200):
        ledger.attempted.add(n)
        g.insert({F: _template(n)}, ref_id=f"R{n}", partition=f"p{n % 2}")
        ledger.acked.append(n)
    errors: list[str] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        rng = random.Random(w)
        for i in range(40):
            n = 1000 * (w + 1) + i
            with ledger.lock:
                ledger.attempted.add(n)
            g.insert({F: _template(n)}, ref_id=f"R{n}", partition=f"p{n % 2}")
            with ledger.lock:
                ledger.acked.append(n)
            if rng.random() < 0.3:  # delete an acknowledged record of this writer or the preload
                victim = rng.choice([x for x in range(200) if x % 2 == w % 2] + [n])
                with ledger.lock:
                    if victim in ledger.claimed:
                        continue
                    ledger.claimed.add(victim)
                g.delete(f"R{victim}")
                with ledger.lock:
                    ledger.deleted.add(victim)

    def searcher(s: int) -> None:
        rng = random.Random(100 + s)
        while not stop.is_set():
            acked, deleted_before, _ = ledger.view()
            pick = rng.sample(acked, 4)
            partition = rng.choice([None, "p0", "p1"])
            hits = g.search_many(F, [_template(n) for n in pick], 3, partition=partition)
            _, _, claimed_after = ledger.view()
            for n, result in zip(pick, hits, strict=True):
                refs = [int(h.ref_id[1:]) for h in result]
                if any(r not in ledger.attempted for r in refs):
                    errors.append(f"phantom result {refs}")
                if any(r in deleted_before for r in refs):
                    errors.append(f"deleted record returned: {set(refs) & deleted_before}")
                in_scope = partition is None or partition == f"p{n % 2}"
                # a delete that started before the search ended may or may not be visible to it
                if in_scope and n not in claimed_after and (not refs or refs[0] != n):
                    errors.append(f"acknowledged R{n} not found as its own top-1: {refs}")

    def snapshotter() -> None:
        while not stop.wait(0.1):
            g.snapshot()

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    others = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    others.append(threading.Thread(target=snapshotter))
    for t in writers + others:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in others:
        t.join()
    acked, deleted, claimed = ledger.view()
    assert errors == [] and deleted == claimed and len(deleted) > 5
    live = sorted(set(acked) - deleted)
    assert g.count() == len(live) == g.stats()["indexes"]["face"]
    hits = g.search_many(F, [_template(n) for n in live], 1)
    assert [int(h[0].ref_id[1:]) for h in hits] == live
    g.close()
