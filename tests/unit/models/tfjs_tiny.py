"""A tiny TensorFlow.js graph model, built in memory, with a hand-written numpy forward pass.

The graph uses every op the converter supports for MobileFaceNet and contains both defect patterns:

    x (N,8,8,3) -> conv 3x3/2 SAME (float16 weights) -> PReLU a   (Relu/Abs/Sub/Mul/Add)
      -> depthwise 3x3/1 SAME x2 multiplier, fused BiasAdd+Relu (uint8 weights), whose output also
         feeds PReLU b's negative branch (defect 1)
      -> conv 1x1 VALID -> Add(residual a) -> depthwise 4x4 VALID -> Squeeze[1,2]
      -> Square -> Sum(axis 1, keep) -> Maximum(eps) -> Rsqrt -> Mul   (L2 normalisation)

8x8 input with a 3x3 stride-2 SAME conv needs 1 pixel of padding: TF puts it bottom/right only.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

SLOPE_A = "a/mul"
SLOPE_B = "b/mul"


def _s(text: str) -> dict[str, Any]:
    return {"s": base64.b64encode(text.encode()).decode()}


def _strs(*texts: str) -> dict[str, Any]:
    return {"list": {"s": [base64.b64encode(t.encode()).decode() for t in texts]}}


def _ints(*values: int) -> dict[str, Any]:
    return {"list": {"i": [str(v) for v in values]}}


def _conv(
    name: str, op: str, inputs: list[str], stride: int, padding: str, fused: list[str]
) -> dict[str, Any]:
    return {"name": name, "op": op, "input": inputs, "attr": {
        "strides": _ints(1, stride, stride, 1), "padding": _s(padding), "data_format": _s("NHWC"),
        "dilations": _ints(1, 1, 1, 1), "fused_ops": _strs(*fused), "num_args": {"i": "1"}}}


def _node(name: str, op: str, *inputs: str, **attr: Any) -> dict[str, Any]:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def make_weights(seed: int = 0) -> dict[str, Any]:
    """Random weights; the quantised ones are given as their stored codes so the reference can use
    exactly the dequantised values."""
    r = np.random.default_rng(seed)
    w: dict[str, Any] = {
        "c1/w": r.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float16),  # stored as float16
        "c1/b": r.normal(0, 0.1, 4).astype(np.float32),
        SLOPE_A: r.uniform(-0.3, 0.3, 4).astype(np.float32),
        "dw/w_q": r.integers(0, 256, (3, 3, 4, 2)).astype(np.uint8),  # uint8 codes
        "dw/b": r.normal(0, 0.1, 8).astype(np.float32),
        SLOPE_B: r.uniform(-0.3, 0.3, 8).astype(np.float32),
        "c2/w": r.normal(0, 0.3, (1, 1, 8, 4)).astype(np.float32),
        "c2/b": r.normal(0, 0.1, 4).astype(np.float32),
        "dw2/w": r.normal(0, 0.3, (4, 4, 4, 1)).astype(np.float32),
        "dw2/b": r.normal(0, 0.1, 4).astype(np.float32),
        "axis_q": np.array([1], dtype=np.uint8),  # int32 axis stored uint8 (scale 1, min 0)
        "eps": np.array(1e-10, dtype=np.float32),
    }
    return w


DW_SCALE, DW_MIN = 0.004, -0.5


def build_model(weights: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """(model.json content, shard bytes) of the tiny graph model."""
    nodes = [_node("x", "Placeholder", dtype={"type": "DT_FLOAT"},
                   shape={"shape": {"dim": [{"size": "-1"}, {"size": "8"}, {"size": "8"}, {"size": "3"}]}})]
    consts = ("c1/w", "c1/b", SLOPE_A, "dw/w", "dw/b", SLOPE_B,
              "c2/w", "c2/b", "dw2/w", "dw2/b", "axis", "eps")
    for name in consts:
        nodes.append(_node(name, "Const"))
    nodes += [
        _conv("c1", "_FusedConv2D", ["x", "c1/w", "c1/b"], 2, "SAME", ["BiasAdd"]),
        _node("a/relu", "Relu", "c1"), _node("a/abs", "Abs", "c1"), _node("a/sub", "Sub", "c1", "a/abs"),
        _node("a/mul1", "Mul", "a/sub", SLOPE_A), _node("a/add", "Add", "a/relu", "a/mul1"),
        _conv("dw", "FusedDepthwiseConv2dNative", ["a/add", "dw/w", "dw/b"], 1, "SAME", ["BiasAdd", "Relu"]),
        _node("b/abs", "Abs", "dw"), _node("b/sub", "Sub", "dw", "b/abs"),
        _node("b/mul1", "Mul", SLOPE_B, "b/sub"), _node("b/add", "AddV2", "dw", "b/mul1"),
        _conv("c2", "_FusedConv2D", ["b/add", "c2/w", "c2/b"], 1, "VALID", ["BiasAdd"]),
        _node("res", "Add", "c2", "a/add"),
        _conv("dw2", "FusedDepthwiseConv2dNative", ["res", "dw2/w", "dw2/b"], 1, "VALID", ["BiasAdd"]),
        _node("sq", "Squeeze", "dw2", squeeze_dims=_ints(1, 2)),
        _node("sq2", "Square", "sq"), _node("sum", "Sum", "sq2", "axis", keep_dims={"b": True}),
        _node("max", "Maximum", "sum", "eps"), _node("rsqrt", "Rsqrt", "max"),
        _node("emb", "Mul", "sq", "rsqrt"),
    ]
    # Order in the manifest differs from node order on purpose (weights are found by name).
    specs: list[dict[str, Any]] = []
    blob = b""
    for name, arr in weights.items():
        spec: dict[str, Any] = {"name": name, "shape": list(arr.shape), "dtype": "float32"}
        if name == "c1/w":
            spec["quantization"] = {"dtype": "float16"}
        elif name == "dw/w_q":
            spec.update(name="dw/w", quantization={"dtype": "uint8", "scale": DW_SCALE, "min": DW_MIN})
        elif name == "axis_q":
            spec.update(name="axis", dtype="int32", quantization={"dtype": "uint8", "scale": 1.0, "min": 0.0})
        specs.append(spec)
        blob += arr.tobytes()
    model = {"format": "graph-model", "generatedBy": "test", "convertedBy": "test",
             "userDefinedMetadata": {"signature": {"outputs": {"emb": {"name": "emb:0"}}}},
             "modelTopology": {"node": nodes, "library": {}, "versions": {}},
             "weightsManifest": [{"paths": list(split_shards(blob)), "weights": specs}]}
    return model, blob


def split_shards(blob: bytes) -> dict[str, bytes]:
    half = len(blob) // 2
    return {"group1-shard1of2.bin": blob[:half], "group1-shard2of2.bin": blob[half:]}


def dequantised(weights: dict[str, Any]) -> dict[str, F32]:
    w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items() if not k.endswith("_q")}
    w["dw/w"] = weights["dw/w_q"].astype(np.float32) * np.float32(DW_SCALE) + np.float32(DW_MIN)
    return w


# ------------------------------------------------------------------------- numpy reference (NHWC)


def conv_nhwc(x: F32, w: F32, b: F32, stride: int, padding: str, depthwise: bool) -> F32:
    """TF Conv2D / DepthwiseConv2dNative + BiasAdd by direct summation over the kernel window."""
    n, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    if padding == "SAME":
        ho, wo = -(-h // stride), -(-wd // stride)
        top = max((ho - 1) * stride + kh - h, 0) // 2
        left = max((wo - 1) * stride + kw - wd, 0) // 2
    else:
        ho, wo, top, left = (h - kh) // stride + 1, (wd - kw) // stride + 1, 0, 0
    padded = np.zeros((n, h + kh * 2, wd + kw * 2, c), np.float64)
    padded[:, kh:kh + h, kw:kw + wd] = x
    cout = c * w.shape[3] if depthwise else w.shape[3]
    out = np.zeros((n, ho, wo, cout), np.float64)
    for i in range(kh):
        for j in range(kw):
            rows = kh - top + i + stride * np.arange(ho)
            cols = kw - left + j + stride * np.arange(wo)
            patch = padded[:, rows][:, :, cols]  # (n, ho, wo, c)
            if depthwise:
                out += (patch[..., :, None] * w[i, j][None, None, None]).reshape(n, ho, wo, cout)
            else:
                out += patch @ w[i, j].astype(np.float64)
    return (out + b).astype(np.float32)


def prelu(x: F32, slope_const: F32, pre: F32 | None = None) -> F32:
    """relu(x) + c * (p - |p|) with ``p`` the negative branch's input (``x`` unless given)."""
    p = x if pre is None else pre
    return np.maximum(x, 0) + slope_const * (p - np.abs(p))


def reference(x: F32, w: dict[str, F32], fixed: bool) -> F32:
    """Forward pass of the tiny graph; ``fixed`` = as repaired by both fixes (true PReLU semantics:
    pre-activation in the negative branch, negated slope constants)."""
    sign = -1.0 if fixed else 1.0
    c1 = conv_nhwc(x, w["c1/w"], w["c1/b"], 2, "SAME", False)
    a = prelu(c1, sign * w[SLOPE_A])
    dw = conv_nhwc(a, w["dw/w"], w["dw/b"], 1, "SAME", True)
    if fixed:
        b = prelu(dw, sign * w[SLOPE_B])
    else:
        relu = np.maximum(dw, 0)  # the shipped graph: fused Relu also reaches Abs/Sub
        b = relu + w[SLOPE_B] * (relu - np.abs(relu))
    c2 = conv_nhwc(b, w["c2/w"], w["c2/b"], 1, "VALID", False)
    dw2 = conv_nhwc(c2 + a, w["dw2/w"], w["dw2/b"], 1, "VALID", True)
    e = dw2[:, 0, 0, :]
    return (e / np.sqrt(np.maximum((e * e).sum(axis=1, keepdims=True), w["eps"]))).astype(np.float32)


def dumps(model: dict[str, Any]) -> str:
    return json.dumps(model)
