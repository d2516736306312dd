"""Engine fixtures on a real gallery (SQLite + FAISS face index) with synthetic face templates: random
unit vectors in 128-d (impostor cosine ~ N(0, 0.09)) and mates made by adding noise (cosine ~0.8); the
calibration handed to the engine describes exactly that, so the FPIR thresholds are meaningful."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.calibration import save_distributions
from engine.config import EngineConfig
from engine.engine import Engine
from engine.fusion import Fusion
from engine.records import Sample
from engine.types import FaceTemplate, Modality, ModelRef

MODEL = ModelRef("synthetic-face", "1")
DIM = 128


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def mate(v: np.ndarray, rng: np.random.Generator, noise: float = 0.055) -> np.ndarray:
    w = v + rng.normal(scale=noise, size=DIM).astype(np.float32)
    return w / np.linalg.norm(w)


def face(v: np.ndarray, model: ModelRef = MODEL) -> list[Sample]:
    return [Sample(Modality.FACE, template=FaceTemplate(v, model))]


def write_calibration(d: Path, variant: str = "") -> Path:
    """The synthetic face calibration these templates follow (impostor cosine ~ N(0, 1/128), mates
    from ``mate``), written into ``d`` (as ``variant``: the same numbers); shared with the transfer
    tests."""
    rng = np.random.default_rng(11)
    base = np.stack([unit(rng) for _ in range(3000)])
    gen = np.einsum("ij,ij->i", base, np.stack([mate(v, rng) for v in base]))
    imp = rng.normal(0.0, 1 / np.sqrt(DIM), 2_000_000)
    save_distributions(MODEL, "face", gen, imp, source="synthetic", command="test", directory=d,
                       variant=variant)
    return d


@pytest.fixture(scope="module")
def fusion(tmp_path_factory: pytest.TempPathFactory) -> Fusion:
    return Fusion.for_models({Modality.FACE: MODEL}, write_calibration(tmp_path_factory.mktemp("cal")))


@pytest.fixture()
def engine(tmp_path: Path, fusion: Fusion) -> Iterator[Engine]:
    cfg = EngineConfig(data_dir=tmp_path / "data", modalities=("face",), snapshot_every=0)
    eng = Engine.open(cfg, fusion=fusion)
    yield eng
    eng.close()


@pytest.fixture()
def people(engine: Engine) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    vectors = {f"P{i:03d}": unit(rng) for i in range(200)}
    for ref, v in vectors.items():
        partition = "camp-a" if int(ref[1:]) % 2 else "camp-b"
        assert engine.insert(ref, face(v), partition=partition).reference_id == ref
    return vectors
