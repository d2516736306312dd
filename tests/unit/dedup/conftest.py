"""Dedup test helpers: a data directory with a real Store and key, seeded face/iris templates with
planted duplicates, and a Fusion built from synthetic calibration files (passed in, never patched)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine.calibration import save_distributions
from engine.crypto import KeyRing
from engine.datadir import DataDir
from engine.dedup import DedupJob, JobSpec
from engine.dedup.data import ModalityData
from engine.dedup.pairs import IrisExact
from engine.fusion import Fusion
from engine.iris.synthetic_codes import capture, impostor_gallery, random_irises
from engine.store import Store
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template

FACE_MODEL = ModelRef("dedup-test-face", "1")
IRIS_MODEL = ModelRef("dedup-test-iris", "1")
NBYTES, COLUMNS = 256, 256

F32 = npt.NDArray[np.float32]


def unit_rows(rng: np.random.Generator, n: int, d: int = 128) -> F32:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def at_cosine(rng: np.random.Generator, anchor: F32, c: float, avoid: Sequence[F32] = ()) -> F32:
    """A unit vector at cosine exactly ``c`` to ``anchor``, its noise orthogonal to ``avoid`` too."""
    u = rng.standard_normal(anchor.size)
    for v in (anchor, *avoid):
        v64 = v.astype(np.float64) / np.linalg.norm(v)
        u -= (u @ v64) * v64
    u /= np.linalg.norm(u)
    out = c * anchor.astype(np.float64) + np.sqrt(1 - c * c) * u
    return (out / np.linalg.norm(out)).astype(np.float32)


def make_fusion(directory: Path) -> Fusion:
    """Calibrations: face impostors N(0, 0.12), genuine N(0.8, 0.06); iris from the synthetic code
    generator itself (impostor and mated scores of the exact kernel)."""
    rng = np.random.default_rng(99)
    save_distributions(
        FACE_MODEL,
        "face",
        rng.normal(0.8, 0.06, 200_000),
        rng.normal(0.0, 0.12, 1_000_000),
        source="synthetic",
        command="tests/unit/dedup/conftest.py",
        directory=directory,
    )
    codes, masks = impostor_gallery(300, NBYTES, COLUMNS, seed=5)
    data = ModalityData(IRIS_MODEL, np.arange(300), codes=codes, masks=masks, columns=COLUMNS)
    _, _, imp = IrisExact(data).block(0, 300, -1.0)
    eyes = random_irises(300, NBYTES, COLUMNS, seed=6)
    a, b = capture(eyes, COLUMNS, seed=7), capture(eyes, COLUMNS, seed=8)
    both = ModalityData(
        IRIS_MODEL,
        np.arange(600),
        codes=np.concatenate([a.codes, b.codes]),
        masks=np.concatenate([a.masks, b.masks]),
        columns=COLUMNS,
    )
    gen = IrisExact(both).score_pairs(np.arange(300), np.arange(300, 600))
    save_distributions(
        IRIS_MODEL,
        "iris",
        gen,
        imp,
        source="synthetic codes",
        command="tests/unit/dedup/conftest.py",
        directory=directory,
    )
    return Fusion.for_models(
        {Modality.FACE: FACE_MODEL, Modality.IRIS_LEFT: IRIS_MODEL, Modality.IRIS_RIGHT: IRIS_MODEL},
        directory,
    )


def crossing(fusion: Fusion, modality: Modality, t_llr: float) -> float:
    """The similarity where ``modality``'s LLR reaches ``t_llr`` (bisection on the calibration)."""
    cal = fusion.calibration(modality)
    lo, hi = float(cal.grid[0]), float(cal.grid[-1])
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(cal.llr_of(mid)) >= t_llr:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass
class Gallery:
    data_dir: Path
    keyring: KeyRing
    ref_ids: list[str] = field(default_factory=list)


def make_data_dir(path: Path, records: Sequence[tuple[str, Mapping[Modality, Template], str]]) -> Gallery:
    """A data directory (key file + store) holding ``records`` as (ref_id, templates, partition)."""
    path.mkdir(parents=True, exist_ok=True)
    keyring = KeyRing.from_file(path / "nasname.key")
    store = Store(path / "nasname.db", keyring)
    try:
        for ref, templates, part in records:
            store.insert(templates, ref_id=ref, partition=part)
    finally:
        store.close()
    return Gallery(path, keyring, [r for r, _, _ in records])


def face_t(v: F32) -> FaceTemplate:
    return FaceTemplate(v, FACE_MODEL)


def iris_t(code: npt.NDArray[np.uint8], mask: npt.NDArray[np.uint8]) -> IrisTemplate:
    return IrisTemplate(code, mask, COLUMNS, IRIS_MODEL)


@pytest.fixture(scope="session")
def fusion(tmp_path_factory: pytest.TempPathFactory) -> Fusion:
    return make_fusion(tmp_path_factory.mktemp("calibration"))


_SOURCES: dict[str, DataDir] = {}


def source(data_dir: Path | str) -> DataDir:
    """The gallery of ``data_dir`` opened shared (what the command line gives a job), one per directory
    for the whole session (closed at its end)."""
    key = str(data_dir)
    if key not in _SOURCES:
        _SOURCES[key] = DataDir.open(Path(data_dir), exclusive=False)
    return _SOURCES[key]


def create_job(spec: JobSpec, job_dir: Path, **kwargs: Any) -> DedupJob:
    """``DedupJob.create`` with the job's gallery opened as the command line would."""
    return DedupJob.create(spec, job_dir, source=source(spec.data_dir), **kwargs)


def open_job(job_dir: Path, **kwargs: Any) -> DedupJob:
    spec = DedupJob.open(job_dir).spec
    return DedupJob.open(job_dir, source=source(spec.data_dir), **kwargs)


@pytest.fixture(scope="session", autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    for d in _SOURCES.values():
        d.close()
    _SOURCES.clear()
