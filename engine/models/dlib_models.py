"""dlib's three CC0 face models (PyPI ``face-recognition-models``), registered by name.

``dlib_resnet_v1`` (face_embedding, ONNX), ``dlib_mmod`` (face_detector, ONNX), ``dlib_sp5``
(face_landmarks, ``.npz`` of the regression-tree ensemble). The source ``.dat`` files are located
without importing the package (its ``__init__`` imports ``pkg_resources``, gone from new setuptools).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from engine.errors import ConfigurationError
from engine.models.dlib_nets import DETECTOR_DEF, RECOGNIZER_DEF, read_network
from engine.models.dlib_onnx import OPSET, build_onnx
from engine.models.dlib_shape import read_shape_predictor, shape_predictor_npz
from engine.models.manifest import ModelManifest, sha256_file, write_atomic
from engine.models.registry import ModelSpec, register

__all__ = ["DLIB_CHIP_TEMPLATE", "dlib_source_dir", "source_path"]

CONVERTER_VERSION = 1
PACKAGE = "face_recognition_models"
LICENCE = "CC0 1.0 (Davis E. King, dlib.net), via PyPI face-recognition-models"

# dlib's 5-point face-chip template (get_face_chip_details), in the order of the predictor's parts:
# 0/1 = outer/inner corner of the eye on the image's right, 2/3 = outer/inner corner of the eye on
# the image's left, 4 = base of the nose. Coordinates are in the unpadded unit square.
DLIB_CHIP_TEMPLATE = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

FILES = {
    "dlib_resnet_v1": "dlib_face_recognition_resnet_model_v1.dat",
    "dlib_mmod": "mmod_human_face_detector.dat",
    "dlib_sp5": "shape_predictor_5_face_landmarks.dat",
}


def dlib_source_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"the {PACKAGE} package (dlib's face weights) is not installed; "
                                 "pip install face-recognition-models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def source_path(name: str) -> Path:
    path = dlib_source_dir() / FILES[name]
    if not path.is_file():
        raise ConfigurationError(f"dlib model file {path} is missing")
    return path


def _available(name: str) -> bool:
    try:
        source_path(name)
    except ConfigurationError:
        return False
    return True


def _source(path: Path) -> dict[str, Any]:
    return {"file": path.name, "package": PACKAGE, "sha256": sha256_file(path), "licence": LICENCE,
            "converter_version": CONVERTER_VERSION}


def _save(directory: Path, manifest_args: dict[str, Any], file_name: str, data: bytes) -> ModelManifest:
    path = directory / file_name
    write_atomic(path, data)
    manifest = ModelManifest(onnx_file=file_name, onnx_sha256=sha256_file(path), **manifest_args)
    manifest.save(directory)
    return manifest


def build_recognizer(directory: Path) -> ModelManifest:
    src = source_path("dlib_resnet_v1")
    net = read_network(src, RECOGNIZER_DEF)
    model = build_onnx(net, input_hw=(150, 150), graph_name="dlib_resnet_v1", output_name="embedding",
                       doc="dlib face recognition ResNet v1 (150x150 chip -> 128-d), converted by nasname")
    mean = [float(m) for m in net.input["mean"]]
    args = {
        "name": "dlib_resnet_v1", "model_id": "dlib_resnet_v1", "version": "1", "kind": "face_embedding",
        "input": {"name": "input", "width": 150, "height": 150, "channels": "RGB", "layout": "NCHW",
                  "mean": mean, "scale": 1.0 / 256.0},
        "alignment": {"method": "dlib_chip", "size": 150, "padding": 0.25,
                      "template": [list(p) for p in DLIB_CHIP_TEMPLATE], "points": "dlib5"},
        "output": {"name": "embedding", "dim": 128, "normalise": True},
        "source": _source(src),
        "extra": {"opset": OPSET, "dlib_l2_threshold": float(net.loss.get("dist_thresh", 0.6))},
    }
    return _save(directory, args, "dlib_resnet_v1.onnx", model.SerializeToString())


def build_detector(directory: Path) -> ModelManifest:
    src = source_path("dlib_mmod")
    net = read_network(src, DETECTOR_DEF)
    model = build_onnx(net, input_hw=None, graph_name="dlib_mmod", output_name="scores",
                       doc="dlib mmod CNN face detector (score map, stride 8), converted by nasname")
    windows = net.loss["windows"]
    if windows != [(80, 80)]:
        raise ConfigurationError(f"mmod detector has windows {windows}; nasname supports one 80x80 window")
    args = {
        "name": "dlib_mmod", "model_id": "dlib_mmod", "version": "1", "kind": "face_detector",
        "input": {"name": "input", "channels": "RGB", "layout": "NCHW",
                  "mean": [float(m) for m in net.input["mean"]], "scale": 1.0 / 256.0},
        "output": {"name": "scores", "stride": 8, "offset": 14, "window": [80, 80]},
        "source": _source(src),
        "extra": {"opset": OPSET, "nms_iou": float(net.loss["nms_iou"]), "pyramid_scale": 5.0 / 6.0},
    }
    return _save(directory, args, "dlib_mmod.onnx", model.SerializeToString())


def build_shape_predictor(directory: Path) -> ModelManifest:
    src = source_path("dlib_sp5")
    arrays = read_shape_predictor(src)
    args = {
        "name": "dlib_sp5", "model_id": "dlib_sp5", "version": "1", "kind": "face_landmarks",
        "output": {"points": int(arrays["initial_shape"].size // 2), "order": "dlib5",
                   "cascades": int(arrays["leaf_values"].shape[0]),
                   "trees": int(arrays["leaf_values"].shape[1])},
        "source": _source(src),
        "extra": {"format": "npz", "arrays": sorted(arrays)},
    }
    return _save(directory, args, "dlib_sp5.npz", shape_predictor_npz(arrays))


register(ModelSpec("dlib_resnet_v1", "face_embedding",
                   "dlib ResNet face recognizer, 150x150 chip -> 128-d (ONNX)", build_recognizer,
                   lambda: _available("dlib_resnet_v1")))
register(ModelSpec("dlib_mmod", "face_detector", "dlib mmod CNN face detector (ONNX)", build_detector,
                   lambda: _available("dlib_mmod")))
register(ModelSpec("dlib_sp5", "face_landmarks", "dlib 5-point shape predictor, regression trees (npz)",
                   build_shape_predictor, lambda: _available("dlib_sp5")))
