"""A tiny ArcFace-shaped ONNX model (112x112 RGB -> 512-d) and its manifest, built in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from engine.face.alignment import ARCFACE_112
from engine.models.manifest import ModelManifest, sha256_file, write_atomic


def build_tiny_arcface(directory: Path, name: str = "tiny_arcface", dim: int = 512) -> Path:
    """Writes ``<name>.onnx`` + ``<name>.json``; returns the manifest path."""
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.1, (8, 3, 8, 8)).astype(np.float32)
    fc = rng.normal(0, 0.05, (8 * 14 * 14, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["data", "w"], ["c"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "fc"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", dim])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx_path = directory / f"{name}.onnx"
    write_atomic(onnx_path, model.SerializeToString())
    manifest = ModelManifest(
        name=name, model_id=name, version="1", kind="face_embedding", onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        input={"name": "data", "width": 112, "height": 112, "channels": "RGB", "layout": "NCHW",
               "mean": [127.5, 127.5, 127.5], "scale": 1 / 127.5},
        alignment={"method": "similarity", "size": 112, "template": ARCFACE_112.tolist(),
                   "points": "arcface5"},
        output={"name": "fc1", "dim": dim, "normalise": True},
        source={"file": "built in the test"})
    return manifest.save(directory)
