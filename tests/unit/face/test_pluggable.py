"""Any ArcFace-style ONNX model with a manifest replaces dlib's recognizer without code changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ConfigurationError, IntegrityError
from engine.face import FaceConfig, FaceExtractor
from engine.face.alignment import DLIB_TEMPLATE, align
from engine.models.registry import ensure_model
from engine.types import ModelRef
from tests.unit.face.tiny_arcface import build_tiny_arcface


def _dlib_manifest(name: str) -> Path:
    m, p = ensure_model(name)
    return p.parent / f"{m.name}.json"


def _extractor(embedding: Path, **cfg: object) -> FaceExtractor:
    return FaceExtractor(detector_manifest=_dlib_manifest("dlib_mmod"),
                         landmarks_manifest=_dlib_manifest("dlib_sp5"),
                         embedding_manifest=embedding, config=FaceConfig(threads=1, **cfg))  # type: ignore[arg-type]


def test_arcface_style_model_drops_in(tmp_path: Path) -> None:
    fx = _extractor(build_tiny_arcface(tmp_path))
    assert fx.model == ModelRef("tiny_arcface", "1+mphoto")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    pts = (0.25 + DLIB_TEMPLATE) / 1.5 * 150 * 1.2 + 40
    chip = align(img, pts, fx.embedder.manifest.alignment)
    assert chip.shape == (112, 112, 3)
    emb = fx.embed_chips(np.stack([chip, chip[::-1]]))
    assert emb.shape == (2, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])
    plain = _extractor(tmp_path / "tiny_arcface.json", mirror_photo=False)
    assert plain.model == ModelRef("tiny_arcface", "1")


def test_tampered_or_inconsistent_manifest_is_refused(tmp_path: Path) -> None:
    manifest = build_tiny_arcface(tmp_path)
    onnx_path = tmp_path / "tiny_arcface.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:-1] + b"\x01")
    with pytest.raises(IntegrityError):
        _extractor(manifest)
    other = tmp_path / "other"
    other.mkdir()
    wrong = build_tiny_arcface(other, dim=256)
    doc = json.loads(wrong.read_text())
    doc["output"]["dim"] = 512  # the manifest lies about the embedding size
    wrong.write_text(json.dumps(doc))
    fx = _extractor(wrong)
    with pytest.raises(ConfigurationError, match="256-d"):
        fx.embed_chips(np.zeros((1, 112, 112, 3), np.uint8))
