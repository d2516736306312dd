"""Value objects shared by every part of the engine.

Score convention (the only one in nasname): every comparison yields a *similarity*, higher = more
alike. Face: cosine similarity of L2-normalised embeddings, in [-1, 1]. Iris: 1 - normalised fractional
Hamming distance, in [0, 1] (about 0.5 for different eyes). Fusion turns per-modality similarities into
log-likelihood ratios and sums them (``engine.fusion``); thresholds come from a target FPIR
(``engine.calibration``), never from a literal in code.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput

__all__ = [
    "INSTRUCTIONS",
    "FaceTemplate",
    "IrisTemplate",
    "Modality",
    "ModelRef",
    "Quality",
    "QualityReason",
    "Template",
    "check_template",
    "template_from_bytes",
    "template_shape",
]

F32 = npt.NDArray[np.float32]
_F32_MAX = float(np.finfo(np.float32).max)
U8 = npt.NDArray[np.uint8]


class Modality(StrEnum):
    """A slot in a record. More (fingerprints) can be added; each maps to one template *kind*."""

    FACE = "face"
    IRIS_LEFT = "iris_left"
    IRIS_RIGHT = "iris_right"

    @property
    def kind(self) -> str:
        """``"face"`` (float embedding) or ``"iris"`` (binary code + mask)."""
        return "face" if self is Modality.FACE else "iris"

    @classmethod
    def parse(cls, value: str) -> Modality:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInput(
                f"unknown modality {value!r}; expected one of {', '.join(m.value for m in cls)}",
                reason="UNKNOWN_MODALITY",
            ) from None


class QualityReason(StrEnum):
    """Why a sample is poor, in words a clerk can act on (retake the photo, open the eye wider...)."""

    NO_FACE = "NO_FACE"
    MULTIPLE_FACES = "MULTIPLE_FACES"
    FACE_TOO_SMALL = "FACE_TOO_SMALL"
    BLURRED = "BLURRED"
    TOO_DARK = "TOO_DARK"
    TOO_BRIGHT = "TOO_BRIGHT"
    LOW_CONTRAST = "LOW_CONTRAST"
    EXTREME_POSE = "EXTREME_POSE"
    LOW_DETECTOR_CONFIDENCE = "LOW_DETECTOR_CONFIDENCE"
    NO_IRIS = "NO_IRIS"
    UNRELIABLE_BOUNDARY = "UNRELIABLE_BOUNDARY"
    OCCLUDED = "OCCLUDED"
    PUPIL_RATIO_OUT_OF_RANGE = "PUPIL_RATIO_OUT_OF_RANGE"
    IRIS_TOO_SMALL = "IRIS_TOO_SMALL"
    OFF_AXIS = "OFF_AXIS"

    @property
    def instruction(self) -> str:
        """What the station operator should change before taking the picture again."""
        return INSTRUCTIONS[self]


#: One instruction per reason, in words an operator can act on at once (``Quality.instructions``).
INSTRUCTIONS: dict[QualityReason, str] = {
    QualityReason.NO_FACE: "show the whole face to the camera",
    QualityReason.MULTIPLE_FACES: "one person only",
    QualityReason.FACE_TOO_SMALL: "move closer",
    QualityReason.BLURRED: "hold still and focus",
    QualityReason.TOO_DARK: "more light",
    QualityReason.TOO_BRIGHT: "less light on the face",
    QualityReason.LOW_CONTRAST: "more light",
    QualityReason.EXTREME_POSE: "look straight at the camera",
    QualityReason.LOW_DETECTOR_CONFIDENCE: "uncover the face and look at the camera",
    QualityReason.NO_IRIS: "open the eyes wider",
    QualityReason.UNRELIABLE_BOUNDARY: "remove glasses",
    QualityReason.OCCLUDED: "open the eyes wider",
    QualityReason.PUPIL_RATIO_OUT_OF_RANGE: "more light",
    QualityReason.IRIS_TOO_SMALL: "move closer",
    QualityReason.OFF_AXIS: "look straight into the camera",
}


@dataclass(frozen=True)
class ModelRef:
    """Identity of the model that made a template. Templates of different refs are never compared."""

    model_id: str
    version: str

    def __str__(self) -> str:
        return f"{self.model_id}@{self.version}"


@dataclass(frozen=True)
class Quality:
    """Quality verdict of one sample: ``score`` in [0, 1] (higher is better), ``ok`` = passes the gate,
    ``reasons`` = every problem found (may be non-empty even when ``ok``, as warnings),
    ``measures`` = the raw measurements behind it (sharpness, brightness, inter-eye px...).
    ``rejected``: the reasons that refuse the sample (``ok`` is False exactly when there is one); the
    other reasons are warnings. Which rule warns and which refuses is calibrated (docs/QUALITY.md)."""

    score: float
    ok: bool
    reasons: tuple[QualityReason, ...] = ()
    measures: dict[str, float] = field(default_factory=dict)
    rejected: tuple[QualityReason, ...] = ()

    @property
    def warnings(self) -> tuple[QualityReason, ...]:
        return tuple(r for r in self.reasons if r not in self.rejected)

    @property
    def instructions(self) -> tuple[str, ...]:
        """The operator's instructions for every reason (refusing ones first), without repeats."""
        ordered = [*self.rejected, *self.warnings]
        return tuple(dict.fromkeys(r.instruction for r in ordered))


@dataclass(frozen=True, eq=False)
class FaceTemplate:
    """An L2-normalised float32 embedding, shape ``(d,)``."""

    vector: F32
    model: ModelRef

    def __post_init__(self) -> None:
        # Checked and normalised in float64: a float32 norm of e.g. [1e30] * 128 overflows to inf and
        # v / inf would store the zero vector (a template that matches nobody, or breaks a restart).
        # In float64 the squared norm of float32-range values cannot overflow (128 * 3.4e38^2 ~ 1e79)
        # nor underflow to 0 (the smallest float32 squared is ~2e-90): it is finite exactly when every
        # value is, and zero exactly for the zero vector. After dividing by it in float64, the float32
        # cast leaves the norm within ~1e-7 of 1: stored templates are unit length.
        v = np.asarray(self.vector)
        if v.ndim != 1 or v.size == 0 or v.dtype.kind not in "fiu":
            raise InvalidInput("a face template must be a non-empty 1-D float vector",
                               reason="INVALID_TEMPLATE")
        v64 = v.astype(np.float64)
        sq = float(v64 @ v64)
        if not math.isfinite(sq) or (v.dtype != np.float32 and float(np.max(np.abs(v64))) > _F32_MAX):
            raise InvalidInput("a face template must hold finite float32 values", reason="INVALID_TEMPLATE")
        if sq == 0.0:
            raise InvalidInput("a face template must not be the zero vector", reason="INVALID_TEMPLATE")
        norm = math.sqrt(sq)
        if abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
            out = (v64 / norm).astype(np.float32)
        else:
            out = v.astype(np.float32, copy=False)
        object.__setattr__(self, "vector", np.ascontiguousarray(out))

    @property
    def modality_kind(self) -> str:
        return "face"

    def to_bytes(self) -> bytes:
        return _header("F", self.model) + self.vector.astype("<f4").tobytes()


@dataclass(frozen=True, eq=False)
class IrisTemplate:
    """A binary iris code and its validity mask, both packed bits (``np.packbits``, big bit order),
    shape ``(nbytes,)``. The unpacked bits are laid out column-major by angle: ``columns`` angular
    columns of ``nbytes * 8 / columns`` bits each, so a rotation of the eye by one column is a circular
    roll of the packed bytes by ``nbytes / columns`` (every column is a whole number of bytes)."""

    code: U8
    mask: U8
    columns: int
    model: ModelRef

    def __post_init__(self) -> None:
        code = np.ascontiguousarray(self.code, dtype=np.uint8)
        mask = np.ascontiguousarray(self.mask, dtype=np.uint8)
        if code.ndim != 1 or code.shape != mask.shape or code.size == 0:
            raise InvalidInput("iris code and mask must be equal-length 1-D packed byte arrays",
                               reason="INVALID_TEMPLATE")
        if self.columns <= 0 or code.size % self.columns:
            raise InvalidInput("iris code length must be a whole number of bytes per column",
                               reason="INVALID_TEMPLATE")
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "mask", mask)

    @property
    def modality_kind(self) -> str:
        return "iris"

    @property
    def bytes_per_column(self) -> int:
        return self.code.size // self.columns

    def to_bytes(self) -> bytes:
        head = _header("I", self.model) + struct.pack("<I", self.columns)
        return head + self.code.tobytes() + self.mask.tobytes()


Template = FaceTemplate | IrisTemplate

UNIT_NORM_TOLERANCE = 1e-3
"""A face template whose norm is within this of 1 is kept as given; any other is normalised."""


def template_shape(template: Template) -> str:
    """A template's shape signature: every template of one modality in a gallery shares it."""
    if isinstance(template, FaceTemplate):
        return f"f32x{template.vector.size}"
    return f"iris:{template.code.size}x{template.columns}"


def check_template(modality: Modality, template: Template, shape: str | None = None) -> str:
    """The one check of a template against its slot: the right kind for ``modality`` and, once the
    gallery has one, the gallery's ``shape`` (dimension / code size and columns). Values (finite, unit
    norm, equal code and mask lengths) are checked when a template is constructed. Raises
    ``InvalidInput`` (INVALID_TEMPLATE, never a model mismatch: the model may well be right); returns
    the template's shape."""
    if not isinstance(template, FaceTemplate | IrisTemplate):
        raise InvalidInput(f"not a template: {type(template).__name__}", reason="INVALID_TEMPLATE")
    if template.modality_kind != modality.kind:
        raise InvalidInput(f"a {template.modality_kind} template cannot fill the {modality.value} slot",
                           reason="INVALID_TEMPLATE")
    found = template_shape(template)
    if shape is not None and found != shape:
        raise InvalidInput(f"{modality.value} template shape {found} differs from the gallery's {shape}",
                           reason="INVALID_TEMPLATE", details={"modality": modality.value, "expected": shape,
                                                              "got": found})
    return found

_MAGIC = b"NT1"


def _header(kind: str, model: ModelRef) -> bytes:
    mid, ver = model.model_id.encode(), model.version.encode()
    if len(mid) > 255 or len(ver) > 255:
        raise InvalidInput("model id/version too long", reason="INVALID_TEMPLATE")
    return _MAGIC + kind.encode() + bytes([len(mid)]) + mid + bytes([len(ver)]) + ver


def template_from_bytes(blob: bytes) -> Template:
    """Inverse of ``Template.to_bytes`` (the plaintext that the store encrypts). Raises ``InvalidInput``."""
    try:
        if blob[:3] != _MAGIC:
            raise ValueError("bad magic")
        kind = chr(blob[3])
        pos = 4
        n = blob[pos]
        mid = blob[pos + 1 : pos + 1 + n].decode()
        pos += 1 + n
        n = blob[pos]
        ver = blob[pos + 1 : pos + 1 + n].decode()
        pos += 1 + n
        model = ModelRef(mid, ver)
        if kind == "F":
            return FaceTemplate(np.frombuffer(blob, dtype="<f4", offset=pos).astype(np.float32), model)
        if kind == "I":
            (columns,) = struct.unpack_from("<I", blob, pos)
            pos += 4
            body = np.frombuffer(blob, dtype=np.uint8, offset=pos)
            if body.size % 2:
                raise ValueError("odd iris body length")
            half = body.size // 2
            return IrisTemplate(body[:half].copy(), body[half:].copy(), columns, model)
        raise ValueError(f"unknown template kind {kind!r}")
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as exc:
        raise InvalidInput(f"malformed template bytes: {exc}", reason="INVALID_TEMPLATE") from exc


def describe(obj: Any) -> str:
    """Short non-biometric description for logs (never the vector or code itself)."""
    if isinstance(obj, FaceTemplate):
        return f"face[{obj.vector.size}]@{obj.model}"
    if isinstance(obj, IrisTemplate):
        return f"iris[{obj.code.size * 8}b/{obj.columns}c]@{obj.model}"
    return type(obj).__name__
