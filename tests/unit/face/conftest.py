"""Shared fixtures of the face tests: the converted dlib models (converted on first use)."""

from __future__ import annotations

import pytest

from engine.face import FaceConfig, FaceExtractor
from engine.face.landmarks import ShapePredictor
from engine.models.registry import ensure_model


@pytest.fixture(scope="session")
def predictor() -> ShapePredictor:
    manifest, path = ensure_model("dlib_sp5")
    return ShapePredictor(path, manifest)


@pytest.fixture(scope="session")
def extractor() -> FaceExtractor:
    return FaceExtractor.default(FaceConfig(threads=1))
