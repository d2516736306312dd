"""Iris pipeline: segmentation, rubber-sheet normalisation, ONNX Gabor encoding, quality
(see ``IrisExtractor``), and the masked rotation-tolerant matcher (``engine.iris.matcher``)."""

from engine.iris.extractor import IrisExtractor

__all__ = ["IrisExtractor"]
