"""``IrisExtractor``: encoded NIR eye image -> iris template (code + mask) + quality.

    decode (engine.imageio, bombs refused before decode) -> segment -> rubber sheet -> ONNX Gabor
    encoder -> quality

Every stage's parameters live in one frozen ``IrisExtractorConfig``, so a capture device gets its own
profile (``IrisExtractorConfig(segmentation=SegmentationParams(iris_radius_px=(80, 140)))``) while
templates stay comparable as long as the encoder spec is the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from engine.errors import AcquisitionFailed, ConfigurationError, InvalidImage
from engine.extractor import Extraction
from engine.imageio import ImageLimits, decode_gray
from engine.iris.encoder import IrisEncoder
from engine.iris.normalization import NormalizationParams, NormalizedIris, normalize
from engine.iris.quality import QualityParams, assess
from engine.iris.segmentation import Segmentation, SegmentationParams, segment
from engine.models.gabor import DEFAULT_SPEC, GaborSpec
from engine.types import ModelRef, QualityReason

__all__ = ["IrisExtractor", "IrisExtractorConfig"]


@dataclass(frozen=True)
class IrisExtractorConfig:
    """A capture-device profile. ``encoder`` must match between devices whose templates are
    compared (it defines the template version); the other stages may differ per device."""

    segmentation: SegmentationParams = field(default_factory=SegmentationParams)
    normalization: NormalizationParams = field(default_factory=NormalizationParams)
    quality: QualityParams = field(default_factory=QualityParams)
    encoder: GaborSpec = DEFAULT_SPEC
    limits: ImageLimits = field(default_factory=ImageLimits)


class IrisExtractor:
    """Implements ``engine.extractor.Extractor`` for kind ``"iris"``."""

    def __init__(self, config: IrisExtractorConfig, encoder: IrisEncoder):
        if (encoder.radial, encoder.angular) != (config.normalization.radial, config.normalization.angular):
            raise ConfigurationError("iris encoder grid and normalisation grid differ")
        self.config = config
        self.encoder = encoder

    @classmethod
    def default(cls, config: IrisExtractorConfig | None = None) -> IrisExtractor:
        """Extractor with ``config`` (default profile if None); the encoder graph is built on first use
        into ``engine.models.manifest.model_dir()``."""
        cfg = config or IrisExtractorConfig()
        return cls(cfg, IrisEncoder.default(cfg.encoder))

    @property
    def kind(self) -> str:
        return "iris"

    @property
    def model(self) -> ModelRef:
        return self.encoder.model

    def _gray(self, image: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        if isinstance(image, bytes | bytearray | memoryview):
            return decode_gray(bytes(image), self.config.limits)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise InvalidImage("image must be encoded bytes or a uint8 array")
        lim = self.config.limits
        if image.ndim == 3 and image.shape[2] in (3, 4):
            code = cv2.COLOR_RGBA2GRAY if image.shape[2] == 4 else cv2.COLOR_RGB2GRAY
            image = np.asarray(cv2.cvtColor(image, code), dtype=np.uint8)
        if image.ndim != 2:
            raise InvalidImage(f"image array must be (H, W) grey or (H, W, 3) RGB, got {image.shape}")
        h, w = image.shape
        if min(h, w) < lim.min_side or max(h, w) > lim.max_side or h * w > lim.max_pixels:
            raise InvalidImage(f"image array of {w}x{h} is outside the accepted size",
                               reason="BAD_IMAGE_SIZE")
        return np.ascontiguousarray(image)

    def run(self, image: bytes | npt.NDArray[np.uint8]) -> tuple[Segmentation, NormalizedIris, Extraction]:
        """Like ``extract`` but also returns the intermediate stages (for tools and tests)."""
        t0 = time.perf_counter()
        gray = self._gray(image)
        t1 = time.perf_counter()
        seg = segment(gray, self.config.segmentation)
        t2 = time.perf_counter()
        norm = normalize(seg, self.config.normalization)
        t3 = time.perf_counter()
        template = self.encoder.encode(norm)
        t4 = time.perf_counter()
        if not template.mask.any():
            raise AcquisitionFailed("no usable iris texture: everything is occluded or outside the frame",
                                    reasons=[QualityReason.NO_IRIS.value, QualityReason.OCCLUDED.value])
        quality = assess(seg, template.mask, self.config.quality)
        t5 = time.perf_counter()
        stage_ms = {name: round((b - a) * 1000.0, 3) for name, a, b in (
            ("decode", t0, t1), ("segment", t1, t2), ("normalize", t2, t3), ("encode", t3, t4),
            ("quality", t4, t5))}
        details = {"stage_ms": stage_ms, "usable_fraction": quality.measures["usable_fraction"]}
        return seg, norm, Extraction(template, quality, details)

    def extract(self, image: bytes | npt.NDArray[np.uint8]) -> Extraction:
        """See ``engine.extractor.Extractor.extract``. Raises ``InvalidImage``/``ImageTooLarge`` for bad
        input and ``AcquisitionFailed`` (NO_IRIS) when no iris is found."""
        return self.run(image)[2]
