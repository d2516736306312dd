"""Gallery test helpers: a brute-force reference index (face cosine / iris 1 - masked HD, no rotation)
passed in through the constructor, the real FaceIndex factory, and seeded templates."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pytest

from engine.crypto import KeyRing
from engine.errors import ModelMismatch
from engine.gallery import Gallery, GalleryConfig, IndexFactory, IndexLoader
from engine.index.base import Labels, SearchResult, TemplateIndex
from engine.index.face import FaceIndex
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template
from tests.unit.store.conftest import FACE_MODEL, IRIS_MODEL, face, iris

__all__ = ["FACE_MODEL", "IRIS_MODEL", "BruteForceIndex", "face", "iris"]


def _vector(t: Template) -> npt.NDArray[np.float32]:
    if isinstance(t, FaceTemplate):
        return t.vector
    return np.concatenate([np.unpackbits(t.code), np.unpackbits(t.mask)]).astype(np.float32)


def _similarity(q: Template, x: npt.NDArray[np.float32]) -> float:
    if isinstance(q, FaceTemplate):
        return float(q.vector @ x)
    assert isinstance(q, IrisTemplate)
    n = x.size // 2
    qc, qm = np.unpackbits(q.code).astype(bool), np.unpackbits(q.mask).astype(bool)
    valid = qm & x[n:].astype(bool)
    if not valid.any():
        return 0.0
    return 1.0 - float(np.count_nonzero((qc ^ x[:n].astype(bool)) & valid)) / float(valid.sum())


class BruteForceIndex:
    """Reference TemplateIndex: a dict label -> vector, exhaustive scoring, ties broken by label."""

    def __init__(self, model: ModelRef) -> None:
        self._model = model
        self.items: dict[int, npt.NDArray[np.float32]] = {}

    @property
    def model(self) -> ModelRef:
        return self._model

    def __len__(self) -> int:
        return len(self.items)

    def _check(self, t: Template) -> None:
        if t.model != self._model:
            raise ModelMismatch("other model")

    def add(self, labels: Labels, templates: list[Template]) -> None:
        for label, t in zip(labels.tolist(), templates, strict=True):
            self._check(t)
            self.items[int(label)] = _vector(t)

    def remove(self, labels: Labels) -> None:
        for label in labels.tolist():
            self.items.pop(int(label), None)

    def search(self, queries: list[Template], k: int, allowed: Labels | None = None) -> SearchResult:
        D = np.full((len(queries), k), -np.inf, dtype=np.float32)
        I = np.full((len(queries), k), -1, dtype=np.int64)  # noqa: E741
        keep = None if allowed is None else set(allowed.tolist())
        for qi, q in enumerate(queries):
            self._check(q)
            scored = sorted(((-_similarity(q, x), lab) for lab, x in self.items.items()
                             if keep is None or lab in keep))[:k]
            for j, (s, lab) in enumerate(scored):
                D[qi, j], I[qi, j] = -s, lab
        return D, I

    def score(self, query: Template, labels: Labels) -> npt.NDArray[np.float32]:
        return np.array([_similarity(query, self.items[int(x)]) if int(x) in self.items else np.nan
                         for x in labels.tolist()], dtype=np.float32)

    def save(self, path: Path | BinaryIO) -> None:
        labels = np.array(sorted(self.items), dtype=np.int64)
        xb = np.stack([self.items[int(x)] for x in labels]) if labels.size else np.empty((0, 1), np.float32)
        meta = json.dumps([self._model.model_id, self._model.version]).encode()
        np.savez(path, labels=labels, xb=xb, meta=np.frombuffer(meta, dtype=np.uint8))

    @classmethod
    def load(cls, path: Path | BinaryIO) -> BruteForceIndex:
        with np.load(path) as z:
            mid, ver = json.loads(z["meta"].tobytes())
            index = cls(ModelRef(mid, ver))
            index.items = {int(lab): x for lab, x in zip(z["labels"].tolist(), z["xb"], strict=True)}
        return index


def brute_factory(modality: Modality, example: Template) -> TemplateIndex:
    return BruteForceIndex(example.model)


def brute_loader(modality: Modality, model: ModelRef, path: BinaryIO) -> TemplateIndex:
    return BruteForceIndex.load(path)


def face_factory(modality: Modality, example: Template) -> TemplateIndex:
    if isinstance(example, FaceTemplate):
        return FaceIndex(example.model, example.vector.size)
    return BruteForceIndex(example.model)


def face_loader(modality: Modality, model: ModelRef, path: BinaryIO) -> TemplateIndex:
    return FaceIndex.load(path) if modality is Modality.FACE else BruteForceIndex.load(path)


QUIET = GalleryConfig(snapshot_every=0, snapshot_interval_s=0)  # no background snapshots in unit tests

OpenGallery = Callable[..., Gallery]


@pytest.fixture
def open_gallery(tmp_path: Path) -> Iterator[OpenGallery]:
    """``open_gallery(**kw)`` opens the gallery in tmp_path/g with the real FaceIndex for faces (a
    brute-force index for iris); every gallery opened is closed at the end."""
    ring = KeyRing.generate()
    opened: list[Gallery] = []

    def make(factory: IndexFactory = face_factory, loader: IndexLoader | None = face_loader,
             config: GalleryConfig = QUIET, directory: Path | None = None, **kw: object) -> Gallery:
        g = Gallery(directory or tmp_path / "g", ring, factory, loader, config=config, **kw)  # type: ignore[arg-type]
        opened.append(g)
        return g

    yield make
    for g in opened:
        g.close()
