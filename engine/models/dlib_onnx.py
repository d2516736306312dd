"""Build ONNX graphs (opset 17, ``onnx.helper``) from networks parsed by ``dlib_nets.read_network``.

Graph input is the already-normalised NCHW float32 tensor ((pixel - mean) / 256, R,G,B; the manifest
records the normalisation and ``engine.face`` applies it), so the same preprocessing code serves any
dropped-in model. Affine layers are folded into the convolution before them. dlib semantics that ONNX
does not have natively are spelled out:

* ``add_prev``: output takes the per-dimension max of both inputs; missing elements are zero, aligned
  at index 0 -> an explicit ``Pad`` (channels, bottom, right) of the smaller input before ``Add``.
* average pooling: windows clipped to the image, padding not counted -> ``count_include_pad=0``.
* ``fc``: ``flatten(x) @ W`` with W stored (inputs x outputs).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ConfigurationError
from engine.models.dlib_format import LayerRecord
from engine.models.dlib_nets import ParsedNet

__all__ = ["OPSET", "build_onnx"]

OPSET = 17


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(value, n))
        return n

    def node(self, op: str, inputs: list[str], prefix: str, **attrs: object) -> str:
        out = self.name(prefix)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))  # type: ignore[arg-type]
        return out


def _fold_conv(con: LayerRecord, aff: LayerRecord | None) -> tuple[np.ndarray, np.ndarray]:
    w = con.params["weight"].astype(np.float64)
    b = con.params["bias"].astype(np.float64)
    if aff is not None:
        g = aff.params["gamma"].astype(np.float64)
        beta = aff.params["beta"].astype(np.float64)
        if g.size != w.shape[0]:
            raise ConfigurationError("affine layer size does not match the convolution before it")
        w = w * g[:, None, None, None]
        b = b * g + beta
    return w.astype(np.float32), b.astype(np.float32)


def build_onnx(net: ParsedNet, *, input_hw: tuple[int, int] | None, graph_name: str,
               output_name: str, doc: str) -> onnx.ModelProto:
    """``input_hw`` fixes the spatial size (recognizer) or ``None`` leaves it dynamic (detector)."""
    bld = _Builder()
    cur = "input"
    shape: tuple[int, int, int] | None = (3, *input_hw) if input_hw else None
    tags: dict[int, tuple[str, tuple[int, int, int] | None]] = {}
    ops, layers = net.definition, net.layers
    i = 0
    while i < len(ops):
        op, rec = ops[i], layers[i]
        if op.kind == "tag":
            tags[op.arg[0]] = (cur, shape)
        elif op.kind == "skip":
            cur, shape = tags[op.arg[0]]
        elif rec is None:
            raise ConfigurationError(f"layer {i} ({op.kind}) has no record")
        elif op.kind == "con":
            aff = None
            if i + 1 < len(ops) and ops[i + 1].kind == "affine":
                aff = layers[i + 1]
                i += 1
            w, b = _fold_conv(rec, aff)
            k, s = rec.ints["nr"], rec.ints["stride_y"]
            py, px = rec.ints["pad_y"], rec.ints["pad_x"]
            cur = bld.node("Conv", [cur, bld.const("W", w), bld.const("B", b)], "conv",
                           kernel_shape=[k, k], strides=[s, s], pads=[py, px, py, px])
            if shape:
                shape = (w.shape[0], 1 + (shape[1] + 2 * py - k) // s, 1 + (shape[2] + 2 * px - k) // s)
        elif op.kind == "affine":  # an affine not after a conv: per-channel scale and shift
            g = rec.params["gamma"].reshape(1, -1, 1, 1)
            be = rec.params["beta"].reshape(1, -1, 1, 1)
            cur = bld.node("Mul", [cur, bld.const("g", g)], "mul")
            cur = bld.node("Add", [cur, bld.const("b", be)], "add")
        elif op.kind == "relu":
            cur = bld.node("Relu", [cur], "relu")
        elif op.kind in ("max_pool", "avg_pool"):
            k, s, p = rec.ints["nr"], rec.ints["stride_y"], rec.ints["pad_y"]
            if k == 0:
                cur = bld.node("GlobalAveragePool", [cur], "gap")
                shape = (shape[0], 1, 1) if shape else None
            else:
                attrs: dict[str, object] = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p]}
                if op.kind == "avg_pool":
                    attrs["count_include_pad"] = 0
                cur = bld.node("MaxPool" if op.kind == "max_pool" else "AveragePool", [cur], "pool", **attrs)
                if shape:
                    shape = (shape[0], 1 + (shape[1] + 2 * p - k) // s, 1 + (shape[2] + 2 * p - k) // s)
        elif op.kind == "add_prev":
            other, oshape = tags[op.arg[0]]
            if shape is None or oshape is None:
                raise ConfigurationError("add_prev needs static shapes")
            full = tuple(max(a, b) for a, b in zip(shape, oshape, strict=True))
            a_name = _pad_to(bld, cur, shape, full)
            b_name = _pad_to(bld, other, oshape, full)
            cur = bld.node("Add", [a_name, b_name], "addprev")
            shape = (full[0], full[1], full[2])
        elif op.kind == "fc":
            w = rec.params["weight"]
            cur = bld.node("Flatten", [cur], "flat", axis=1)
            if shape and shape[0] * shape[1] * shape[2] != w.shape[0]:
                raise ConfigurationError(f"fc expects {w.shape[0]} inputs, the network gives {shape}")
            cur = bld.node("MatMul", [cur, bld.const("fcW", w)], "fc")
            if rec.ints["has_bias"]:
                cur = bld.node("Add", [cur, bld.const("fcB", rec.params["bias"])], "fcb")
        else:
            raise ConfigurationError(f"op {op.kind} not supported by the ONNX builder")
        i += 1
    bld.nodes.append(helper.make_node("Identity", [cur], [output_name], name="output"))
    in_dims: list[int | str] = ["N", 3, *(input_hw or ("H", "W"))]
    last = net.definition[-1]
    out_dims: list[int | str] = ["N", last.arg[0]] if last.kind == "fc" else ["N", last.arg[0], "Ho", "Wo"]
    graph = helper.make_graph(
        bld.nodes, graph_name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_dims)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_dims)],
        initializer=bld.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nasname.engine.models", doc_string=doc)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _pad_to(bld: _Builder, name: str, shape: tuple[int, ...], full: tuple[int, ...]) -> str:
    if tuple(shape) == tuple(full):
        return name
    # ONNX Pad order: begin of every axis, then end of every axis (N, C, H, W).
    pads = np.array([0, 0, 0, 0, 0, full[0] - shape[0], full[1] - shape[1], full[2] - shape[2]], np.int64)
    return bld.node("Pad", [name, bld.const("pads", pads)], "pad", mode="constant")
