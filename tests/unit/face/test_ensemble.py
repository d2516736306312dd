"""Fusion of two face models (``engine.face.ensemble``) with fake pipelines passed in, and its name
resolution (config, registry checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.config import EngineConfig
from engine.errors import AcquisitionFailed, ConfigurationError, ModelMismatch
from engine.extractor import Extraction
from engine.extractors import check_face_model, face_model_ref, require_installed
from engine.face.config import FaceConfig
from engine.face.detector import Detection
from engine.face.ensemble import ENSEMBLE_WEIGHTS, FaceEnsembleExtractor, ensemble_parts, ensemble_ref
from engine.face.extractor import overlapping_face
from engine.types import FaceTemplate, Modality, ModelRef, Quality, QualityReason

U8 = npt.NDArray[np.uint8]
BOX = Detection(100, 80, 229, 239, 1.0)  # the score is not passed on: the ensemble rebuilds the box


class FakeFace:
    """A face pipeline whose template is a fixed vector per image (keyed by the image's first pixel);
    records the ``near`` box it was given; ``fail``: raises NO_FACE as a real pipeline does."""

    config = FaceConfig()

    def __init__(self, model_id: str, vectors: dict[int, npt.NDArray[np.float32]], fail: bool = False,
                 quality_ok: bool = True) -> None:
        self._model = ModelRef(model_id, "1+mphoto")
        self.vectors = vectors
        self.fail = fail
        self.quality_ok = quality_ok
        self.near: list[Detection | None] = []

    @property
    def model(self) -> ModelRef:
        return self._model

    def extract(self, image: bytes | U8, near: Detection | None = None) -> Extraction:
        self.near.append(near)
        if self.fail:
            raise AcquisitionFailed("no face found at the given box", reasons=[QualityReason.NO_FACE.value],
                                    details={"faces_found": 2})
        assert isinstance(image, np.ndarray)  # the ensemble decodes once and hands both the pixels
        v = self.vectors[int(image[0, 0, 0])]
        measures = {"face_box_x": float(BOX.left), "face_box_y": float(BOX.top),
                    "face_box_w": float(BOX.width), "face_box_h": float(BOX.height)}
        reasons = () if self.quality_ok else (QualityReason.TOO_DARK,)
        quality = Quality(0.8, self.quality_ok, reasons, measures, reasons)
        return Extraction(FaceTemplate(v, self.model), quality,
                          {"faces_found": 1, "stage_ms": {"decode": 0.1, "detect": 2.0, "embed": 3.0}})


def _unit(rng: np.random.Generator, dim: int) -> npt.NDArray[np.float32]:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _image(key: int) -> U8:
    return np.full((120, 120, 3), key, np.uint8)


def _pair(rng: np.random.Generator, **kw: bool) -> tuple[FakeFace, FakeFace]:
    first = FakeFace("first", {k: _unit(rng, 128) for k in range(4)}, quality_ok=kw.get("quality_ok", True))
    second = FakeFace("second", {k: _unit(rng, 192) for k in range(4)}, fail=kw.get("fail", False))
    return first, second


@pytest.mark.parametrize("weight", [0.3, 0.6])
def test_inner_product_is_the_weighted_sum_of_cosines(weight: float) -> None:
    rng = np.random.default_rng(1)
    first, second = _pair(rng)
    fx = FaceEnsembleExtractor(first, second, weight)
    t = [x.vector for x in (fx.extract(_image(k)).template for k in range(4)) if isinstance(x, FaceTemplate)]
    assert len(t) == 4
    for a in range(4):
        assert t[a].shape == (320,) and abs(float(np.linalg.norm(t[a])) - 1.0) < 1e-6
        for b in range(a + 1, 4):
            want = (weight * float(first.vectors[a] @ first.vectors[b])
                    + (1 - weight) * float(second.vectors[a] @ second.vectors[b]))
            assert abs(float(t[a] @ t[b]) - want) < 1e-6


def test_secondary_embeds_the_primarys_face_and_primary_quality_governs() -> None:
    first, second = _pair(np.random.default_rng(2), quality_ok=False)
    out = FaceEnsembleExtractor(first, second, 0.3).extract(_image(0))
    assert first.near == [None] and second.near == [BOX]
    assert out.quality.ok is False and out.quality.rejected == (QualityReason.TOO_DARK,)
    stages = out.details["stage_ms"]
    assert {"detect", "embed", "second_detect", "second_embed"} <= set(stages)
    assert "second_decode" not in stages  # decoded once, by the ensemble


def test_overlapping_face_takes_the_best_overlap_or_refuses() -> None:
    bystander = Detection(300, 60, 420, 180, 0.99)
    subject = Detection(110, 95, 225, 230, 0.7)  # IoU with BOX ~0.65
    assert overlapping_face([bystander, subject], BOX) == subject
    with pytest.raises(AcquisitionFailed) as err:
        overlapping_face([bystander], BOX)
    assert err.value.reasons == (QualityReason.NO_FACE.value,)


def test_secondary_failure_fails_the_extraction() -> None:
    first, second = _pair(np.random.default_rng(3), fail=True)
    fx = FaceEnsembleExtractor(first, second, 0.3, secondary_name="dlib_resnet_v1")
    with pytest.raises(AcquisitionFailed, match=r"dlib_resnet_v1 .*did not find the face") as err:
        fx.extract(_image(0))
    assert err.value.reasons == (QualityReason.NO_FACE.value,)
    assert err.value.details["second_faces_found"] == 2


def test_secondary_failure_on_a_refused_photo_names_the_first_models_reasons_first() -> None:
    first, second = _pair(np.random.default_rng(5), fail=True, quality_ok=False)
    with pytest.raises(AcquisitionFailed) as err:
        FaceEnsembleExtractor(first, second, 0.3).extract(_image(0))
    assert err.value.reasons == (QualityReason.TOO_DARK.value, QualityReason.NO_FACE.value)


def test_model_ref_names_both_models_and_the_weight() -> None:
    first, second = _pair(np.random.default_rng(4))
    ref = FaceEnsembleExtractor(first, second, 0.3).model
    assert ref == ModelRef("first+second", "1+mphoto,1+mphoto,w0.30")
    assert ref not in (first.model, second.model)
    assert ensemble_ref(first.model, second.model, 0.6) != ref
    with pytest.raises(ConfigurationError):
        FaceEnsembleExtractor(first, second, 1.0)


@pytest.mark.parametrize("name", ["sface+iris_gabor", "dlib_resnet_v1+sface", "sface+sface",
                                  "sface+dlib_resnet_v1+mobilefacenet"])
def test_unknown_pair_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="not a known fusion"):
        ensemble_parts(name)
    with pytest.raises(ConfigurationError, match="not a known fusion"):
        require_installed(name)


def test_known_pairs() -> None:
    assert ensemble_parts("sface+dlib_resnet_v1") == ("sface", "dlib_resnet_v1", 0.3)
    assert ensemble_parts("sface+mobilefacenet") == ("sface", "mobilefacenet", 0.6)
    assert all(0 < w < 1 for w in ENSEMBLE_WEIGHTS.values())


def test_fusion_with_an_opt_in_model_needs_it_installed(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as err:
        require_installed("sface+mobilefacenet", tmp_path)  # an empty model directory
    assert err.value.reason == "MODEL_NOT_INSTALLED" and err.value.details["model"] == "mobilefacenet"


def test_config_accepts_a_fusion_name() -> None:
    assert EngineConfig(face_model="sface+dlib_resnet_v1").face_model == "sface+dlib_resnet_v1"
    for bad in ("sface+", "+sface", "sface+dlib_resnet_v1+mobilefacenet", "sface dlib"):
        with pytest.raises(ConfigurationError, match="face_model"):
            EngineConfig(face_model=bad)


def test_gallery_of_a_fusion_is_not_opened_with_another_face_model(tmp_path: Path) -> None:
    fused = face_model_ref("sface+dlib_resnet_v1")
    assert fused.model_id == f"{face_model_ref('sface').model_id}+{face_model_ref('dlib_resnet_v1').model_id}"
    check_face_model("sface+dlib_resnet_v1", {Modality.FACE: fused}, tmp_path)
    with pytest.raises(ModelMismatch) as err:
        check_face_model("sface", {Modality.FACE: fused}, tmp_path)
    assert err.value.reason == "FACE_MODEL_MISMATCH"
