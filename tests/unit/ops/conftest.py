"""Helpers for the operations tests: a gallery of synthetic face and iris templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.config import EngineConfig
from engine.crypto import KeyRing
from engine.gallery import Gallery, default_index_factory, load_index
from engine.store import WriteResult
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template

FACE = ModelRef("ops_face", "1")
IRIS = ModelRef("ops_iris", "1")


def face(i: int) -> FaceTemplate:
    v = np.random.default_rng(i).normal(size=16).astype(np.float32)
    return FaceTemplate(v / np.linalg.norm(v), FACE)


def iris(i: int) -> IrisTemplate:
    rng = np.random.default_rng(10_000 + i)
    return IrisTemplate(rng.integers(0, 256, 64, dtype=np.uint8), np.full(64, 255, np.uint8), 8, IRIS)


def templates(i: int) -> dict[Modality, Template]:
    out: dict[Modality, Template] = {Modality.FACE: face(i)}
    if i % 2 == 0:
        out[Modality.IRIS_LEFT] = iris(i)
    return out


def open_gallery(root: Path, keyring: KeyRing | None = None) -> Gallery:
    """The gallery in ``root`` (its key file in ``root`` unless ``keyring``), default indexes."""
    if keyring is None:
        from engine.datadir import DataDir

        return Gallery(DataDir.open(root, env={}), None, default_index_factory(), load_index)
    return Gallery(root, keyring, default_index_factory(), load_index)


def fill(gallery: Gallery, n: int, start: int = 0) -> list[WriteResult]:
    return [gallery.insert(templates(i), ref_id=f"R{i}", partition="camp-a") for i in range(start, start + n)]


def config_of(root: Path) -> EngineConfig:
    return EngineConfig(data_dir=root, site_id="camp-test")
