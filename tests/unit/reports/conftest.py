"""A seeded engine for report tests: a real gallery (SQLite + index) in a temp folder, face samples
as synthetic templates or as fake 'images' that a fake extractor (passed in through the engine's
constructor) turns into templates or refuses with a known quality reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.calibration import save_distributions
from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import AcquisitionFailed
from engine.extractor import Extraction
from engine.fusion import Fusion
from engine.records import Sample
from engine.types import FaceTemplate, Modality, ModelRef, Quality, QualityReason

MODEL = ModelRef("synthetic-face", "1")
DIM = 128


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeFaceExtractor:
    """b"face:<seed>:<quality>" -> a template of unit(seed); b"dark" -> refused TOO_DARK;
    b"none" -> no face found."""

    kind = "face"
    model = MODEL

    def extract(self, image: bytes) -> Extraction:
        text = bytes(image).decode()
        if text == "none":
            raise AcquisitionFailed("no face found", reasons=["NO_FACE"], details={"modality": "face"})
        if text == "dark":
            return Extraction(FaceTemplate(unit(0), MODEL), Quality(0.1, False, (QualityReason.TOO_DARK,)))
        _, seed, q = text.split(":")
        return Extraction(FaceTemplate(unit(int(seed)), MODEL), Quality(float(q), True))


def image(seed: int, quality: float = 0.9) -> list[Sample]:
    return [Sample(Modality.FACE, image=f"face:{seed}:{quality}".encode())]


def bad(kind: str) -> list[Sample]:
    return [Sample(Modality.FACE, image=kind.encode())]


@pytest.fixture(scope="session")
def fusion(tmp_path_factory: pytest.TempPathFactory) -> Fusion:
    rng = np.random.default_rng(11)
    d = tmp_path_factory.mktemp("cal")
    base = np.stack([unit(i) for i in range(2000)])
    noisy = base + rng.normal(scale=0.055, size=base.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    gen = np.einsum("ij,ij->i", base, noisy)
    imp = rng.normal(0.0, 1 / np.sqrt(DIM), 1_000_000)
    save_distributions(MODEL, "face", gen, imp, source="synthetic", command="test", directory=d)
    return Fusion.for_models({Modality.FACE: MODEL}, d)


@pytest.fixture()
def engine(tmp_path: Path, fusion: Fusion) -> Iterator[Engine]:
    cfg = EngineConfig(data_dir=tmp_path / "data", modalities=("face", "iris_left"), snapshot_every=0)
    eng = Engine.open(cfg, fusion=fusion, extractors=lambda kind: FakeFaceExtractor())
    yield eng
    eng.close()
