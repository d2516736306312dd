"""No acknowledged write is lost: a child process inserts random 128-d face templates (and deletes
some) through the Gallery with the real FaceIndex, printing each acknowledged operation, flushed; the
parent kills it with SIGKILL mid-stream (at a random point, or while it writes an index snapshot),
reopens, and checks that every acknowledged insert is present and its own top-1, every acknowledged
delete is gone, and each index holds exactly the store's active templates."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.crypto import KEY_ENV, KeyRing
from engine.gallery import Gallery, GalleryConfig
from engine.index.base import TemplateIndex
from engine.index.face import FaceIndex
from engine.store import RecordStatus
from engine.types import FaceTemplate, Modality, ModelRef, Template

ROOT = Path(__file__).resolve().parents[2]
MODEL = ModelRef("durability-face", "1")

CHILD = r'''
import sys, threading, time
import numpy as np
from engine.crypto import KeyRing
from engine.gallery import Gallery, GalleryConfig
from engine.index.face import FaceIndex
from engine.types import FaceTemplate, Modality, ModelRef

directory, start, pause_from = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
acked = 0
MODEL = ModelRef("durability-face", "1")
_lock = threading.Lock()


def emit(line):  # whole lines only: the snapshot thread prints too
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Announcing:
    """The real FaceIndex, announcing snapshot writes so the parent can kill in the middle of one."""

    def __init__(self, inner):
        self.inner = inner
        self.model = inner.model

    def __len__(self):
        return len(self.inner)

    def add(self, labels, templates):
        self.inner.add(labels, templates)

    def remove(self, labels):
        self.inner.remove(labels)

    def search(self, queries, k, allowed=None):
        return self.inner.search(queries, k, allowed)

    def score(self, query, labels):
        return self.inner.score(query, labels)

    def save(self, path):
        emit("SNAP-BEGIN")
        self.inner.save(path)
        emit("SNAP-FILE")  # index file complete, sidecar not yet replaced
        if 0 <= pause_from <= acked:  # hold here so that the parent's kill lands before the sidecar
            time.sleep(0.5)


g = Gallery(directory, KeyRing.load(None),
            lambda m, ex: Announcing(FaceIndex(ex.model, ex.vector.size)),
            lambda m, model, path: Announcing(FaceIndex.load(path)),
            config=GalleryConfig(snapshot_every=25, snapshot_interval_s=0, snapshot_on_close=False))
emit("OPEN")
i = start
while True:
    v = np.random.default_rng(i).standard_normal(128).astype(np.float32)
    g.insert({Modality.FACE: FaceTemplate(v, MODEL)}, ref_id=f"R{i}", partition=f"p{i % 3}")
    acked += 1
    emit(f"ACK R{i}")
    if i % 5 == 4:
        emit(f"DELETING R{i - 2}")
        g.delete(f"R{i - 2}")
        emit(f"DEL R{i - 2}")
    i += 1
'''


def _vector(ref: str) -> np.ndarray:
    return np.random.default_rng(int(ref[1:])).standard_normal(128).astype(np.float32)


def _factory(m: Modality, example: Template) -> TemplateIndex:
    assert isinstance(example, FaceTemplate)
    return FaceIndex(example.model, example.vector.size)


def _loader(m: Modality, model: ModelRef, path: Path) -> TemplateIndex:
    return FaceIndex.load(path)


def _run_and_kill(directory: Path, start: int, kill_on: str | None, acks_before_kill: int,
                  env: dict[str, str]) -> tuple[set[str], set[str], set[str]]:
    """Run the child until ``acks_before_kill`` acks (and then, if ``kill_on``, until that marker
    line), SIGKILL it; return the acknowledged inserts, the acknowledged deletes, and the deletes
    started but not acknowledged (either outcome is allowed for those)."""
    pause_from = -1 if kill_on is None else acks_before_kill
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(start), str(pause_from)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    inserted: set[str] = set()
    deleted: set[str] = set()
    deleting: set[str] = set()
    def note(line: str) -> str:
        word, _, ref = line.strip().partition(" ")
        if word == "ACK":
            inserted.add(ref)
        elif word == "DEL":
            deleted.add(ref)
        elif word == "DELETING":
            deleting.add(ref)
        return word

    try:
        for line in proc.stdout:
            word = note(line)
            if len(inserted) >= acks_before_kill and (kill_on is None or word == kill_on):
                break
        else:
            pytest.fail(f"child ended early: {proc.stderr.read() if proc.stderr else ''}")
        proc.send_signal(signal.SIGKILL)
        # The child runs on until the signal lands: what it printed meanwhile happened too (e.g. a
        # delete started right after the last ack read, which may have committed).
        for line in proc.stdout:
            note(line)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return inserted, deleted, deleting - deleted


def _verify(directory: Path, ring: KeyRing, inserted: set[str], deleted: set[str], uncertain: set[str],
            expect_snapshot: bool) -> set[str]:
    """Check the reopened gallery; returns the deletes in effect (acknowledged + uncertain ones done)."""
    g = Gallery(directory, ring, _factory, _loader,
                config=GalleryConfig(snapshot_every=0, snapshot_interval_s=0, snapshot_on_close=True))
    try:
        stats = g.stats()
        if expect_snapshot:  # the interrupted snapshot left the previous one usable (no rebuild)
            assert stats["snapshot_seq"] >= 0
        assert stats["indexes"]["face"] == g.count() == g.store.count_templates(Modality.FACE)
        for ref in uncertain:  # delete in flight at the kill: either state, but consistent
            if g.get(ref, with_templates=False).status is RecordStatus.DELETED:
                deleted = deleted | {ref}
        live = sorted(inserted - deleted)
        hits = g.search_many(Modality.FACE, [FaceTemplate(_vector(r), MODEL) for r in live], 1)
        assert [h[0].ref_id if h else None for h in hits] == live
        for ref in deleted:
            assert g.get(ref, with_templates=False).status is RecordStatus.DELETED
        gone = g.search_many(Modality.FACE, [FaceTemplate(_vector(r), MODEL) for r in sorted(deleted)], 1)
        assert not any(h and h[0].ref_id in deleted for h in gone)
        return deleted
    finally:
        g.close()  # writes a snapshot, so the next round starts from snapshot + replay


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    raw = os.urandom(32)
    ring = KeyRing(raw)
    env = {**os.environ, KEY_ENV: base64.b64encode(raw).decode(),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(20261123)
    directory = tmp_path / "gallery"
    all_inserted: set[str] = set()
    all_deleted: set[str] = set()
    # (marker to kill on, whether a previous snapshot must have been loaded on reopen)
    rounds = [(None, False), ("SNAP-FILE", True), ("SNAP-BEGIN", True), (None, True)]
    for n, (kill_on, expect_snapshot) in enumerate(rounds):
        inserted, deleted, uncertain = _run_and_kill(directory, 100_000 * (n + 1), kill_on,
                                                     rng.randint(30, 120), env)
        assert inserted, "the child acknowledged nothing"
        all_inserted |= inserted
        all_deleted |= deleted
        all_deleted = _verify(directory, ring, all_inserted, all_deleted, uncertain, expect_snapshot)
