"""Chimeric multi-modal subjects: a face subject paired with an iris subject, fused by the engine.

Face and iris data sets rarely come from the same people, so (as is standard practice) the i-th face
subject is paired with the i-th iris subject, both in order of first appearance in the manifest, and
the k-th face sample with the k-th iris sample of the pair (extra samples are dropped). This assumes
the two modalities are independent, which is also the assumption of the engine's LLR fusion.
The fused similarity of two chimeric samples is the sum of the per-modality LLRs
(``engine.fusion.Fusion``) over the modalities both samples have; a sample fails only when both of
its modalities failed.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError
from engine.evaluation.analysis import KindScores
from engine.types import Modality, ModelRef

__all__ = ["calibration_status", "chimeric_scores", "engine_fusion", "fusion_available"]

I64 = npt.NDArray[np.int64]


def fusion_available() -> bool:
    try:
        importlib.import_module("engine.fusion").Fusion  # noqa: B018 - probing for the class
    except (ImportError, AttributeError):
        return False
    return True


def _pairing(subjects: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, s in enumerate(subjects):
        out.setdefault(s, []).append(i)
    return out  # dicts keep first-appearance order


def engine_fusion(face_model: ModelRef, iris_model: ModelRef) -> Any:
    """The engine's ``Fusion`` for these two models (their shipped calibration, or its defaults)."""
    try:
        fusion_cls = importlib.import_module("engine.fusion").Fusion
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"engine.fusion is not available: {exc}") from exc
    return fusion_cls.for_models({Modality.FACE: face_model, Modality.IRIS_LEFT: iris_model})


def calibration_status(fusion: Any) -> dict[str, str]:
    """Per modality: ``measured`` (a calibration file of the model) or ``default`` (coarse built-in
    distributions: fused figures then say little about a calibrated deployment)."""
    out = {}
    for m in (Modality.FACE, Modality.IRIS_LEFT):
        measured = getattr(fusion.calibration(m), "measured", None)
        out[m.kind] = "unknown" if measured is None else ("measured" if measured else "default")
    return out


def chimeric_scores(face: KindScores, iris: KindScores, fusion: Any) -> KindScores:
    """Fused ``KindScores`` of the chimeric subjects (kind ``"fused"``); ``fusion`` offers
    ``calibration(modality).llr_of(scores)`` (``engine.fusion.Fusion``)."""
    f_groups = list(_pairing(face.subjects).items())
    i_groups = list(_pairing(iris.subjects).items())
    fi: list[int] = []
    ii: list[int] = []
    subjects: list[str] = []
    for (fs, fidx), (is_, iidx) in zip(f_groups, i_groups, strict=False):
        for a, b in zip(fidx, iidx, strict=False):
            fi.append(a)
            ii.append(b)
            subjects.append(f"{fs}+{is_}")
    f = np.array(fi, dtype=np.int64)
    r = np.array(ii, dtype=np.int64)
    f_ok, i_ok = face.ok[f], iris.ok[r]
    llr_f = fusion.calibration(Modality.FACE).llr_of(np.nan_to_num(face.scores[np.ix_(f, f)]))
    llr_i = fusion.calibration(Modality.IRIS_LEFT).llr_of(np.nan_to_num(iris.scores[np.ix_(r, r)]))
    both_f = f_ok[:, None] & f_ok[None, :]
    both_i = i_ok[:, None] & i_ok[None, :]
    fused = np.where(both_f, llr_f, 0.0) + np.where(both_i, llr_i, 0.0)
    # a pair with no modality in common has no comparison at all
    usable = both_f | both_i
    fused = np.where(usable, fused, -np.inf)
    return KindScores("fused", subjects, f_ok | i_ok, fused.astype(np.float32))
