"""Fusion of two face models as one opt-in face model: ``sface+dlib_resnet_v1``, ``sface+mobilefacenet``.

The template is ONE unit vector, ``concat(sqrt(w) * e_primary, sqrt(1 - w) * e_secondary)`` (each
half the L2-normalised embedding of its model), so the inner product the index already computes is
exactly ``w * cos_primary + (1 - w) * cos_secondary``: the store, the indexes, dedup and transfer
treat it as any other face template, and its calibration is measured like any other face model's.

Both halves embed the SAME face: the primary pipeline (YuNet + SFace) chooses the face as usual and
the secondary (dlib's mmod + sp5) embeds the detection overlapping that box most
(``FaceExtractor.analyse(near=...)``); a photo with bystanders would otherwise mix two people. If the
secondary does not find that face, the extraction fails (``AcquisitionFailed``, NO_FACE): a template
needs both halves. The primary's quality verdict (the calibrated gate) is the template's.

Opt-in, never the default: the secondary pipeline adds ~40 ms per face (docs/QUALITY.md, "Fusing two
face models"), and ``sface+mobilefacenet`` needs MobileFaceNet installed with its licence accepted.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engine.errors import AcquisitionFailed, ConfigurationError
from engine.extractor import Extraction
from engine.face.config import FaceConfig
from engine.face.detector import Detection
from engine.face.extractor import FaceExtractor, as_rgb
from engine.types import FaceTemplate, ModelRef, Quality, QualityReason

__all__ = ["ENSEMBLE_WEIGHTS", "FaceEnsembleExtractor", "ensemble_parts", "ensemble_ref"]

U8 = npt.NDArray[np.uint8]

#: Weight ``w`` of the primary model's cosine, per ensemble name. Tuned on the shared LFW set
#: (face_lfw.csv, 4,563 photos, all pairs; score-level fusion of the product's cosine matrices,
#: scanned in steps of 0.05-0.1 for the lowest FNIR at FPIR 1e-3..1e-2 with models/tune_face_fusion.py;
#: docs/QUALITY.md, "Fusing two face models"): sface+dlib best at 0.25-0.3, sface+mobilefacenet at
#: 0.6-0.7. Not tuned on held-back data.
ENSEMBLE_WEIGHTS: dict[str, float] = {
    "sface+dlib_resnet_v1": 0.3,
    "sface+mobilefacenet": 0.6,
}


class FaceComponent(Protocol):
    """What the ensemble needs of each half (``FaceExtractor``; fakes in unit tests)."""

    @property
    def model(self) -> ModelRef: ...

    @property
    def config(self) -> FaceConfig: ...

    def extract(self, image: bytes | U8, near: Detection | None = None) -> Extraction: ...


def ensemble_parts(name: str) -> tuple[str, str, float]:
    """(primary, secondary, weight of the primary) of ensemble ``name``; ``ConfigurationError`` for a
    pair without a tuned weight."""
    parts = name.split("+")
    if len(parts) != 2 or name not in ENSEMBLE_WEIGHTS:
        known = ", ".join(sorted(ENSEMBLE_WEIGHTS))
        raise ConfigurationError(f"face_model {name!r} is not a known fusion of two face models "
                                 f"(known: {known}); a pair needs a weight measured for it",
                                 reason="UNKNOWN_MODEL", details={"model": name})
    return parts[0], parts[1], ENSEMBLE_WEIGHTS[name]


def ensemble_ref(primary: ModelRef, secondary: ModelRef, weight: float) -> ModelRef:
    """``<primary id>+<secondary id>@<primary version>,<secondary version>,w<weight>``: differs from
    both components and changes with either model or the weight (file-name safe: the calibration file
    is named after it)."""
    return ModelRef(f"{primary.model_id}+{secondary.model_id}",
                    f"{primary.version},{secondary.version},w{weight:.2f}")


def _chosen_box(quality: Quality) -> Detection:
    """The box the primary chose, from the measures every ``FaceExtractor`` extraction reports."""
    m = quality.measures
    left, top = round(m["face_box_x"]), round(m["face_box_y"])
    return Detection(left, top, left + round(m["face_box_w"]) - 1, top + round(m["face_box_h"]) - 1, 1.0)


class FaceEnsembleExtractor:
    """Implements ``engine.extractor.Extractor`` (kind ``"face"``) from two face pipelines and the
    primary's weight ``weight`` (in (0, 1)). ``FaceEnsembleExtractor.default("sface+dlib_resnet_v1")``
    builds both from the registry."""

    kind = "face"

    def __init__(self, primary: FaceComponent, secondary: FaceComponent, weight: float,
                 secondary_name: str = "the second face model") -> None:
        if not 0.0 < weight < 1.0:
            raise ConfigurationError(f"the primary model's weight must be in (0, 1), got {weight}")
        self.primary = primary
        self.secondary = secondary
        self.weight = weight
        self.secondary_name = secondary_name
        self._scales = (np.float32(math.sqrt(weight)), np.float32(math.sqrt(1.0 - weight)))
        self._model = ensemble_ref(primary.model, secondary.model, weight)

    @classmethod
    def default(cls, name: str, config: FaceConfig | None = None, *,
                model_directory: Path | None = None) -> FaceEnsembleExtractor:
        first, second, weight = ensemble_parts(name)
        return cls(FaceExtractor.default(config, embedding=first, model_directory=model_directory),
                   FaceExtractor.default(config, embedding=second, model_directory=model_directory),
                   weight, secondary_name=second)

    @property
    def model(self) -> ModelRef:
        return self._model

    def extract(self, image: bytes | U8) -> Extraction:
        t0 = time.perf_counter()
        rgb = as_rgb(image, self.primary.config)  # decoded once for both pipelines
        decode_ms = (time.perf_counter() - t0) * 1e3
        first = self.primary.extract(rgb)
        try:
            second = self.secondary.extract(rgb, near=_chosen_box(first.quality))
        except AcquisitionFailed as exc:
            # a photo the first model's gate refuses anyway: its reasons come first (what to change)
            refused = [r.value for r in first.quality.rejected]
            raise AcquisitionFailed(
                f"{self.secondary_name} (the second face model) did not find the face the first one chose",
                reasons=[*refused, QualityReason.NO_FACE.value],
                details={"faces_found": first.details.get("faces_found", 0),
                         "second_faces_found": exc.details.get("faces_found", 0)}) from exc
        halves = [t.vector for t in (first.template, second.template) if isinstance(t, FaceTemplate)]
        if len(halves) != 2:
            raise ConfigurationError("both models of a face fusion must make face templates")
        a, b = self._scales
        vec = np.concatenate([a * halves[0], b * halves[1]]).astype(np.float32)
        stages = {**dict(first.details.get("stage_ms", {})), "decode": round(decode_ms, 3)}
        stages.update({f"second_{k}": v for k, v in dict(second.details.get("stage_ms", {})).items()
                       if k != "decode"})
        details = {**first.details, "stage_ms": stages,
                   "second_faces_found": second.details.get("faces_found", 0)}
        return Extraction(FaceTemplate(vec, self.model), first.quality, details)
