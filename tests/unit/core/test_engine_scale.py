"""De-duplication finds planted duplicates in galleries of 10k, 100k and 1M synthetic templates under
the shipped calibrations (dlib face, Gabor iris): face only, iris only, and fused.

Regression for issue 18 item 3: the face LLR used to stop at 12.75 while the face-only threshold at
FPIR 0.003 rose past it at 22,443 records, so from there on not even an exact copy was found. The
gallery here is a test fake (passed to the Engine through its constructor) that holds the real exact
indexes without the store, so that a million templates load in seconds; what is tested is the
engine's decision (gallery size -> threshold -> candidates) on real calibrations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.fusion import Fusion
from engine.gallery import Gallery, default_index_factory
from engine.iris.synthetic_codes import capture, impostor_gallery
from engine.records import EnrollOutcome, RecordStatus, Sample
from engine.store.values import WriteResult
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template

FACE_MODEL = ModelRef("dlib_resnet_v1", "1+mphoto")
IRIS_MODEL = ModelRef("nasname-iris-gabor", "1.2847742a29")
DIM, NBYTES, COLUMNS = 128, 256, 256
F, IL = Modality.FACE, Modality.IRIS_LEFT


class IndexOnlyGallery:
    """The part of ``Gallery`` the engine's search uses, over real exact indexes (labels 0..n-1, record
    ``R<label>``, one partition). ``insert`` only counts (enroll stores its result there)."""

    def __init__(self, faces: npt.NDArray[np.float32] | None, irises: tuple[Any, Any] | None,
                 face_model: ModelRef = FACE_MODEL) -> None:
        make = default_index_factory()
        self.indexes: dict[Modality, Any] = {}
        self.n = len(faces) if faces is not None else len(irises[0])  # type: ignore[index]
        labels = np.arange(self.n, dtype=np.int64)
        if faces is not None:
            index = make(F, FaceTemplate(faces[0], face_model))
            for i in range(0, self.n, 100_000):
                index.add(labels[i:i + 100_000], [FaceTemplate(v, face_model) for v in faces[i:i + 100_000]])
            self.indexes[F] = index
        if irises is not None:
            codes, masks = irises
            index = make(IL, IrisTemplate(codes[0], masks[0], COLUMNS, IRIS_MODEL))
            index.add_arrays(labels, codes, masks)
            self.indexes[IL] = index
        self.inserted: list[RecordStatus] = []

    def models(self) -> dict[Modality, ModelRef]:
        return {m: i.model for m, i in self.indexes.items()}

    def count(self, status: RecordStatus | None = RecordStatus.ACTIVE, partition: str | None = None) -> int:
        return self.n

    def search_labels(self, modality: Modality, probes: Sequence[Template], k: int, *,
                      partition: str | None = None, ref_ids: Sequence[str] | None = None) -> Any:
        return self.indexes[modality].search(list(probes), k)

    def score(self, modality: Modality, template: Template, labels: npt.NDArray[np.int64]) -> Any:
        return self.indexes[modality].score(template, labels)

    def ref_ids_of(self, labels: Sequence[int] | npt.NDArray[np.int64]) -> dict[int, str]:
        return {int(x): f"R{int(x)}" for x in labels}

    def partitions_of(self, labels: npt.NDArray[np.int64]) -> list[str]:
        return ["default"] * len(labels)

    def insert(self, templates: Any, *, status: RecordStatus = RecordStatus.ACTIVE, **kw: Any) -> WriteResult:
        self.inserted.append(status)
        return WriteResult(f"new-{len(self.inserted)}", self.n + len(self.inserted), 0)

    def close(self) -> None:
        pass


def unit_rows(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def near(v: npt.NDArray[np.float32], cosine: float, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """A unit vector at exactly ``cosine`` to ``v``: a second capture that the model finds very alike."""
    noise = rng.standard_normal(DIM).astype(np.float32)
    noise -= noise @ v * v
    noise /= np.linalg.norm(noise)
    w = cosine * v + np.sqrt(1 - cosine**2) * noise
    return (w / np.linalg.norm(w)).astype(np.float32)


@pytest.fixture(scope="module")
def fusion() -> Fusion:
    return Fusion.for_models({F: FACE_MODEL, IL: IRIS_MODEL})


def probes(kind: str, n: int, rng: np.random.Generator, faces: Any, irises: Any, target: int
           ) -> dict[str, list[Sample]]:
    """The exact copy and a near duplicate of record ``target``, in the modalities of ``kind``."""
    out: dict[str, list[Sample]] = {"exact": [], "near": []}
    if kind in ("face", "fused"):
        out["exact"].append(Sample(F, template=FaceTemplate(faces[target].copy(), FACE_MODEL)))
        out["near"].append(Sample(F, template=FaceTemplate(near(faces[target], 0.99, rng), FACE_MODEL)))
    if kind in ("iris", "fused"):
        codes, masks = irises
        out["exact"].append(Sample(IL, template=IrisTemplate(codes[target].copy(), masks[target].copy(),
                                                             COLUMNS, IRIS_MODEL)))
        # a second capture: rotated, 5-13.5 % of the bits flipped in bursts, other eyelids
        again = capture(codes[target:target + 1], COLUMNS, seed=int(rng.integers(1 << 30)))
        out["near"].append(Sample(IL, template=IrisTemplate(again.codes[0], again.masks[0] & masks[target],
                                                            COLUMNS, IRIS_MODEL)))
    return out


def check_finds_planted(kind: str, n: int, fusion: Fusion, tmp_path: Any) -> None:
    rng = np.random.default_rng(n)
    faces = unit_rows(rng, n) if kind in ("face", "fused") else None
    irises = impostor_gallery(n, NBYTES, COLUMNS, seed=n) if kind in ("iris", "fused") else None
    gallery = IndexOnlyGallery(faces, irises)
    modalities = ("face",) if kind == "face" else ("iris_left",) if kind == "iris" else ("face", "iris_left")
    engine = Engine(cast(Gallery, gallery), EngineConfig(data_dir=tmp_path, modalities=modalities),
                    fusion=fusion)
    try:
        target = int(rng.integers(n))
        for name, samples in probes(kind, n, rng, faces, irises, target).items():
            found = engine.identify(samples, max_results=5, target_fpir=0.003)
            assert found.threshold.gallery_size == n and found.threshold.target_met, name
            assert [c.reference_id for c in found.candidates] == [f"R{target}"], (name, found.candidates)
            enrolled = engine.enroll(None, samples, target_fpir=0.003)
            assert enrolled.outcome is EnrollOutcome.PENDING_ADJUDICATION, name
            assert enrolled.candidates[0].reference_id == f"R{target}", name
        # and an unrelated person is not a candidate
        stranger: list[Sample] = []
        if faces is not None:
            stranger.append(Sample(F, template=FaceTemplate(unit_rows(rng, 1)[0], FACE_MODEL)))
        if irises is not None:
            codes, masks = impostor_gallery(1, NBYTES, COLUMNS, seed=n + 1)
            stranger.append(Sample(IL, template=IrisTemplate(codes[0], masks[0], COLUMNS, IRIS_MODEL)))
        assert engine.identify(stranger, max_results=5, target_fpir=0.003).candidates == []
    finally:
        engine.close()


@pytest.mark.parametrize("kind", ["face", "iris", "fused"])
@pytest.mark.parametrize("n", [10_000, 100_000])
def test_planted_duplicates_are_found(kind: str, n: int, fusion: Fusion, tmp_path: Any) -> None:
    check_finds_planted(kind, n, fusion, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["face", "iris", "fused"])
def test_planted_duplicates_are_found_in_a_million(kind: str, fusion: Fusion, tmp_path: Any) -> None:
    check_finds_planted(kind, 1_000_000, fusion, tmp_path)


def test_unmeetable_target_is_reported_and_exact_copies_still_found(tmp_path: Any) -> None:
    # A model whose impostors collide now and then (1 in 1000 impostor pairs scores in the top bin):
    # no threshold gives FPIR 0.003 over 10k records. The result says so, and applies the strictest
    # threshold there is, which an exact copy passes and a 0.99 near copy does not.
    from engine.calibration import save_distributions

    model = ModelRef("colliding-face", "1")
    rng = np.random.default_rng(2)
    imp = np.concatenate([rng.normal(0.0, 0.09, 999_000), np.full(1000, 0.9999)])
    save_distributions(model, "face", rng.normal(0.8, 0.05, 5000), imp, source="synthetic",
                       command="test", directory=tmp_path)
    fusion = Fusion.for_models({F: model}, tmp_path)
    faces = unit_rows(rng, 10_000)
    gallery = IndexOnlyGallery(faces, None, model)
    engine = Engine(cast(Gallery, gallery), EngineConfig(data_dir=tmp_path, modalities=("face",)),
                    fusion=fusion)
    try:
        exact = engine.identify([Sample(F, template=FaceTemplate(faces[7].copy(), model))], target_fpir=0.003)
        assert not exact.threshold.target_met
        assert exact.threshold.expected_fpir is not None and exact.threshold.expected_fpir > 0.003
        assert [c.reference_id for c in exact.candidates] == ["R7"]
        close = engine.identify([Sample(F, template=FaceTemplate(near(faces[7], 0.99, rng), model))],
                                target_fpir=0.003)
        assert not close.threshold.target_met and close.candidates == []
    finally:
        engine.close()
