"""Fixtures for store tests: a throw-away key ring and store, seeded synthetic templates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.crypto import KeyRing
from engine.store import Store
from engine.types import FaceTemplate, IrisTemplate, ModelRef

FACE_MODEL = ModelRef("test-face", "1")
IRIS_MODEL = ModelRef("test-iris", "1")


def face(seed: int, d: int = 128, model: ModelRef = FACE_MODEL) -> FaceTemplate:
    return FaceTemplate(np.random.default_rng(seed).standard_normal(d).astype(np.float32), model)


def iris(seed: int, nbytes: int = 256, columns: int = 64, model: ModelRef = IRIS_MODEL) -> IrisTemplate:
    rng = np.random.default_rng(seed)
    return IrisTemplate(rng.integers(0, 256, nbytes, dtype=np.uint8),
                        rng.integers(0, 256, nbytes, dtype=np.uint8), columns, model)


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def store(tmp_path: Path, keyring: KeyRing) -> Iterator[Store]:
    s = Store(tmp_path / "nasname.db", keyring)
    yield s
    s.close()
