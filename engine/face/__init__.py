"""Face pipeline: detection, landmarks, alignment, quality, embedding (see ``FaceExtractor``)."""

from engine.face.config import DetectorConfig, FaceConfig, QualityThresholds
from engine.face.extractor import FaceAnalysis, FaceExtractor

__all__ = ["DetectorConfig", "FaceAnalysis", "FaceConfig", "FaceExtractor", "QualityThresholds"]
