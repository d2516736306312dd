"""Write a ``TfjsGraph`` as an ONNX model with ``onnx.helper`` (no TensorFlow, no tf2onnx).

Layout: TF graphs are NHWC; ONNX convolutions are NCHW. Every rank-4 runtime tensor is kept NCHW in
the ONNX graph while its *logical* (TF) shape is tracked, so TF axes in attributes (squeeze dims,
reduction axes) and rank-4 constants in element-wise ops are remapped, and weights are re-laid out
(Conv HWIO -> OIHW; depthwise HWCM -> (C*M)1HW with ``group = C``). The model input is NCHW
``(N, C, H, W)``; a rank-4 output is transposed back to TF's NHWC.

Padding: TF ``SAME`` gives ``ceil(in / stride)`` outputs and puts the odd pixel of padding at the
bottom/right (``pad_total = max((out - 1) * stride + k - in, 0)``, ``before = total // 2``); it is
written as explicit ONNX pads, which needs static spatial sizes. ``VALID`` is no padding.

Supported ops: Placeholder, Const, Identity, _FusedConv2D / Conv2D, FusedDepthwiseConv2dNative /
DepthwiseConv2dNative (fused BiasAdd, then optionally Relu or Relu6), Relu, Relu6, Abs, Square, Sqrt,
Rsqrt, Add/AddV2, Sub, Mul, RealDiv, Maximum, Minimum, Squeeze, Sum. Anything else raises
``ConfigurationError`` naming the op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ConfigurationError
from engine.models.tfjs import TfjsGraph, TfjsNode

__all__ = ["DEFAULT_OPSET", "to_onnx"]

DEFAULT_OPSET = 17
_TO_STORED = (0, 2, 3, 1)  # logical NHWC axis -> stored NCHW axis
_NCHW = (0, 3, 1, 2)  # stored NCHW axis -> logical NHWC axis (a transpose permutation)
_UNARY = {"Relu": "Relu", "Abs": "Abs", "Sqrt": "Sqrt", "Identity": "Identity"}
_BINARY = {"Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
           "Maximum": "Max", "Minimum": "Min"}
_CONV = ("_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative")


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]  # logical TF shape; -1 = unknown (batch)

    @property
    def nchw(self) -> bool:
        return len(self.shape) == 4


def _same_pads(size: int, k: int, stride: int, where: str) -> tuple[int, int, int]:
    if size < 0:
        raise ConfigurationError(f"{where}: SAME padding needs a static spatial size")
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def _broadcast(a: tuple[int, ...], b: tuple[int, ...], where: str) -> tuple[int, ...]:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif -1 in (x, y):
            out.append(max(x, y))
        else:
            raise ConfigurationError(f"{where}: shapes {a} and {b} do not broadcast")
    return tuple(out)


class _Writer:
    def __init__(self, graph: TfjsGraph) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.values: dict[str, _Tensor] = {}
        self.inputs: list[onnx.ValueInfoProto] = []

    # -- helpers
    def const(self, name: str, value: npt.NDArray[Any]) -> str:
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.ascontiguousarray(value), name)
        return name

    def relu6_bounds(self) -> tuple[str, str]:
        zero = self.const("nasname_zero", np.array(0, np.float32))
        return zero, self.const("nasname_six", np.array(6, np.float32))

    def emit(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def value(self, name: str) -> _Tensor:
        if name not in self.values:
            raise ConfigurationError(f"TFJS node {name!r} is used as a runtime value but is a constant")
        return self.values[name]

    def weight(self, n: TfjsNode, index: int) -> npt.NDArray[Any]:
        src = self.graph.node(n.inputs[index])
        if src.op != "Const":
            raise ConfigurationError(f"TFJS node {n.name!r}: input {index} must be a Const, is {src.op}")
        return self.graph.weights[src.name]

    # -- ops
    def placeholder(self, n: TfjsNode) -> None:
        dims = n.attr.get("shape", {}).get("shape", {})
        if dims.get("unknownRank") or "dim" not in dims:
            raise ConfigurationError(f"TFJS input {n.name!r} has no static rank")
        shape = tuple(int(d.get("size", -1)) for d in dims["dim"])
        stored = [shape[i] for i in _NCHW] if len(shape) == 4 else list(shape)
        onnx_dims: list[int | str] = [d if d >= 0 else f"{n.name}_dim{i}" for i, d in enumerate(stored)]
        self.inputs.append(helper.make_tensor_value_info(n.name, TensorProto.FLOAT, onnx_dims))
        self.values[n.name] = _Tensor(n.name, shape)

    def conv(self, n: TfjsNode) -> None:
        x = self.value(n.inputs[0])
        if not x.nchw:
            raise ConfigurationError(f"TFJS conv {n.name!r} input is not rank 4")
        if n.attr_str("data_format", "NHWC") != "NHWC" or set(n.attr_ints("dilations", [1, 1, 1, 1])) != {1}:
            raise ConfigurationError(f"TFJS conv {n.name!r}: only NHWC without dilation is supported")
        strides = n.attr_ints("strides")
        if len(strides) != 4 or strides[0] != 1 or strides[3] != 1:
            raise ConfigurationError(f"TFJS conv {n.name!r}: unsupported strides {strides}")
        fused = n.attr_strs("fused_ops") if n.op.startswith(("_Fused", "Fused")) else []
        if fused not in ([], ["BiasAdd"], ["BiasAdd", "Relu"], ["BiasAdd", "Relu6"]):
            raise ConfigurationError(f"TFJS conv {n.name!r}: unsupported fused ops {fused}")
        extra = 1 if fused else 0
        if len(n.inputs) != 2 + extra or (fused and int(n.attr.get("num_args", {}).get("i", 1)) != 1):
            raise ConfigurationError(f"TFJS conv {n.name!r}: {len(n.inputs)} inputs do not match {fused}")
        w = self.weight(n, 1).astype(np.float32)
        kh, kw, cin, m = w.shape
        if cin != x.shape[3]:
            raise ConfigurationError(
                f"TFJS conv {n.name!r}: weights expect {cin} channels, input has {x.shape[3]}"
            )
        if "Depthwise" in n.op:
            weight, group, cout = w.reshape(kh, kw, cin * m).transpose(2, 0, 1)[:, None], cin, cin * m
        else:
            weight, group, cout = w.transpose(3, 2, 0, 1), 1, m
        padding = n.attr_str("padding")
        if padding == "SAME":
            ho, top, bottom = _same_pads(x.shape[1], kh, strides[1], n.name)
            wo, left, right = _same_pads(x.shape[2], kw, strides[2], n.name)
        elif padding == "VALID":
            ho, top, bottom = (x.shape[1] - kh) // strides[1] + 1, 0, 0
            wo, left, right = (x.shape[2] - kw) // strides[2] + 1, 0, 0
        else:
            raise ConfigurationError(f"TFJS conv {n.name!r}: unsupported padding {padding!r}")
        ins = [x.name, self.const(f"{n.inputs[1]}/nasname_oihw", weight)]
        if fused:
            bias = self.weight(n, 2).astype(np.float32)
            if bias.shape != (cout,):
                raise ConfigurationError(f"TFJS conv {n.name!r}: bias shape {bias.shape} != ({cout},)")
            ins.append(self.const(n.inputs[2], bias))
        out = n.name if len(fused) < 2 else f"{n.name}/nasname_preact"
        self.emit("Conv", ins, out, kernel_shape=[kh, kw], strides=strides[1:3], group=group,
                  pads=[top, left, bottom, right])
        if len(fused) == 2 and fused[1] == "Relu":
            self.emit("Relu", [out], n.name)
        elif len(fused) == 2:
            lo, hi = self.relu6_bounds()
            self.emit("Clip", [out, lo, hi], n.name)
        self.values[n.name] = _Tensor(n.name, (x.shape[0], ho, wo, cout))

    def unary(self, n: TfjsNode) -> None:
        x = self.value(n.inputs[0])
        if n.op in _UNARY:
            self.emit(_UNARY[n.op], [x.name], n.name)
        elif n.op == "Square":
            self.emit("Mul", [x.name, x.name], n.name)
        elif n.op == "Rsqrt":
            self.emit("Reciprocal", [self.emit("Sqrt", [x.name], f"{n.name}/nasname_sqrt")], n.name)
        elif n.op == "Relu6":
            lo, hi = self.relu6_bounds()
            self.emit("Clip", [x.name, lo, hi], n.name)
        self.values[n.name] = _Tensor(n.name, x.shape)

    def binary(self, n: TfjsNode) -> None:
        if len(n.inputs) != 2:
            raise ConfigurationError(f"TFJS {n.op} {n.name!r} has {len(n.inputs)} inputs")
        srcs = [self.graph.node(i) for i in n.inputs]
        runtime = [self.value(s.name) for s in srcs if s.op != "Const"]
        if not runtime:
            raise ConfigurationError(f"TFJS {n.op} {n.name!r} on two constants is not supported")
        shapes = [self.values[s.name].shape if s.op != "Const" else self.graph.weights[s.name].shape
                  for s in srcs]
        out_shape = _broadcast(tuple(shapes[0]), tuple(shapes[1]), n.name)
        if len(out_shape) == 4 and any(len(t.shape) not in (0, 4) for t in runtime):
            raise ConfigurationError(f"TFJS {n.op} {n.name!r} mixes a rank-4 value with another rank")
        ins = []
        for s in srcs:
            if s.op != "Const":
                ins.append(s.name)
                continue
            c = self.graph.weights[s.name]
            if len(out_shape) == 4 and c.ndim > 0:
                c = c.reshape((1,) * (4 - c.ndim) + c.shape).transpose(0, 3, 1, 2)
                ins.append(self.const(f"{s.name}/nasname_nchw", c))
            else:
                ins.append(self.const(s.name, c))
        self.emit(_BINARY[n.op], ins, n.name)
        self.values[n.name] = _Tensor(n.name, out_shape)

    def drop_axes(self, n: TfjsNode, x: _Tensor, axes: list[int], keep: bool, op: str, *extra: str) -> None:
        """Squeeze / reduce the logical ``axes`` of ``x``; keep the logical axis order of the result."""
        rank = len(x.shape)
        axes = sorted({a % rank for a in axes}) if rank else []
        stored = [_TO_STORED[a] for a in axes] if x.nchw else axes
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else tuple(
            d for i, d in enumerate(x.shape) if i not in axes)
        axes_name = self.const(f"{n.name}/nasname_axes", np.array(stored, dtype=np.int64))
        kw = {"keepdims": int(keep)} if op != "Squeeze" else {}
        target = n.name
        order = [i for i in range(rank) if i not in axes]
        stored_order = sorted(order, key=lambda a: _TO_STORED[a]) if x.nchw else order
        needs_perm = not keep and stored_order != order
        if needs_perm:
            target = f"{n.name}/nasname_stored"
        self.emit(op, [x.name, *extra, axes_name], target, **kw)
        if needs_perm:
            self.emit("Transpose", [target], n.name, perm=[stored_order.index(a) for a in order])
        self.values[n.name] = _Tensor(n.name, out_shape)

    def squeeze(self, n: TfjsNode) -> None:
        x = self.value(n.inputs[0])
        dims = n.attr_ints("squeeze_dims", []) or [i for i, d in enumerate(x.shape) if d == 1]
        if any(x.shape[d % len(x.shape)] != 1 for d in dims):
            raise ConfigurationError(f"TFJS Squeeze {n.name!r}: dims {dims} of {x.shape} are not all 1")
        self.drop_axes(n, x, dims, False, "Squeeze")

    def reduce_sum(self, n: TfjsNode) -> None:
        x = self.value(n.inputs[0])
        axes = [int(a) for a in np.atleast_1d(self.weight(n, 1))]
        self.drop_axes(n, x, axes, n.attr_bool("keep_dims", False), "ReduceSum")

    def output(self, name: str) -> onnx.ValueInfoProto:
        t = self.value(name)
        out = name
        if t.nchw:
            out = self.emit("Transpose", [t.name], f"{name}/nasname_nhwc", perm=[0, 2, 3, 1])
        dims: list[int | str] = [d if d >= 0 else f"{name}_dim{i}" for i, d in enumerate(t.shape)]
        return helper.make_tensor_value_info(out, TensorProto.FLOAT, dims)


def _topological(graph: TfjsGraph) -> list[TfjsNode]:
    by_name = {n.name: n for n in graph.nodes}
    done: set[str] = set()
    order: list[TfjsNode] = []
    for root in graph.nodes:
        stack: list[tuple[TfjsNode, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node.name in done:
                continue
            if expanded:
                done.add(node.name)
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((by_name[i], False) for i in node.inputs if i not in done)
            if len(stack) > 4 * len(by_name) + 8:
                raise ConfigurationError("TFJS graph has a cycle")
    return order


def to_onnx(graph: TfjsGraph, *, opset: int = DEFAULT_OPSET, name: str = "tfjs") -> onnx.ModelProto:
    """Translate ``graph`` to a checked ONNX model (inputs NCHW, see the module docstring)."""
    w = _Writer(graph)
    for n in _topological(graph):
        if n.op == "Const":
            continue  # materialised at use, in the layout the user needs
        if n.op == "Placeholder":
            w.placeholder(n)
        elif n.op in _CONV:
            w.conv(n)
        elif n.op in _UNARY or n.op in ("Square", "Rsqrt", "Relu6"):
            w.unary(n)
        elif n.op in _BINARY:
            w.binary(n)
        elif n.op == "Squeeze":
            w.squeeze(n)
        elif n.op == "Sum":
            w.reduce_sum(n)
        else:
            raise ConfigurationError(f"TFJS op {n.op!r} (node {n.name!r}) is not supported by the converter")
    outputs = [w.output(o) for o in graph.outputs]
    onnx_graph = helper.make_graph(w.nodes, name, w.inputs, outputs, list(w.inits.values()))
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="nasname.tfjs")
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConfigurationError(f"converted ONNX graph is invalid: {exc}") from exc
    return model
