"""The converter's other ops (not in MobileFaceNet's graph) on a second tiny graph, against numpy:
plain Conv2D / DepthwiseConv2dNative, fused BiasAdd+Relu / BiasAdd+Relu6, Relu6, Minimum, Sqrt,
Identity, RealDiv, Sum without keep_dims over a spatial axis (result needs a transpose back to TF
order), SAME padding asymmetric at stride 1 (even kernel) and stride 2, and a rank-4 graph output
(returned in TF's NHWC order)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from engine.models.tfjs import parse_graph_model
from engine.models.tfjs_onnx import to_onnx
from tests.unit.models.tfjs_tiny import _conv, _node, conv_nhwc


def _weights() -> dict[str, np.ndarray]:
    r = np.random.default_rng(3)
    return {
        "c/w": r.normal(0, 0.5, (3, 3, 2, 3)).astype(np.float32),
        "ba/w": r.normal(0, 0.8, (1, 1, 3, 4)).astype(np.float32),
        "ba/b": r.normal(0, 0.5, 4).astype(np.float32),
        "d/w": r.normal(0, 0.5, (2, 2, 4, 1)).astype(np.float32),
        "e/w": r.normal(0, 0.5, (1, 1, 4, 4)).astype(np.float32),
        "e/b": r.normal(0, 0.3, 4).astype(np.float32),
        "k": np.array([1.0, 4.0, 8.0, 12.0], np.float32),
        "cap": np.array(2.5, np.float32),
        "eps": np.array(0.1, np.float32),
        "axis": np.array([1], np.int32),
        "div": np.array([1.0, 2.0, 4.0, 0.5], np.float32),
        "floor": np.array(0.2, np.float32),
    }


def _model(w: dict[str, np.ndarray]) -> tuple[dict[str, Any], bytes]:
    nodes = [_node("x", "Placeholder",
                   shape={"shape": {"dim": [{"size": "-1"}, {"size": "7"}, {"size": "6"}, {"size": "2"}]}})]
    nodes += [_node(name, "Const") for name in w]
    c = _conv("c", "Conv2D", ["x", "c/w"], 2, "SAME", [])
    del c["attr"]["fused_ops"], c["attr"]["num_args"]
    d = _conv("d", "DepthwiseConv2dNative", ["ba", "d/w"], 1, "SAME", [])
    del d["attr"]["fused_ops"], d["attr"]["num_args"]
    nodes += [
        c,
        _conv("ba", "_FusedConv2D", ["c", "ba/w", "ba/b"], 1, "VALID", ["BiasAdd", "Relu6"]),
        d,
        _conv("e", "_FusedConv2D", ["d", "e/w", "e/b"], 1, "SAME", ["BiasAdd", "Relu"]),
        _node("m", "Mul", "e", "k"), _node("r6", "Relu6", "m"), _node("mn", "Minimum", "r6", "cap"),
        _node("add", "AddV2", "mn", "eps"), _node("sq", "Sqrt", "add"), _node("idn", "Identity", "sq"),
        _node("s1", "Sum", "idn", "axis", keep_dims={"b": False}), _node("dv", "RealDiv", "s1", "div"),
        _node("out", "Maximum", "dv", "floor"),
    ]
    specs = [{"name": k, "shape": list(v.shape), "dtype": "int32" if v.dtype == np.int32 else "float32"}
             for k, v in w.items()]
    outputs = {"out": {"name": "out:0"}, "feat": {"name": "e"}}
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "userDefinedMetadata": {"signature": {"outputs": outputs}},
             "weightsManifest": [{"paths": ["w.bin"], "weights": specs}]}
    return model, b"".join(v.tobytes() for v in w.values())


def _reference(x: np.ndarray, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    c = conv_nhwc(x, w["c/w"], np.zeros(3, np.float32), 2, "SAME", False)
    ba = np.clip(conv_nhwc(c, w["ba/w"], w["ba/b"], 1, "VALID", False), 0, 6)
    d = conv_nhwc(ba, w["d/w"], np.zeros(4, np.float32), 1, "SAME", True)
    e = np.maximum(conv_nhwc(d, w["e/w"], w["e/b"], 1, "SAME", False), 0)
    sq = np.sqrt(np.minimum(np.clip(e * w["k"], 0, 6), w["cap"]) + w["eps"])
    out = np.maximum(sq.sum(axis=1) / w["div"], w["floor"])
    return out, e


def test_other_ops_match_numpy() -> None:
    w = _weights()
    model, blob = _model(w)
    graph = parse_graph_model(model, {"w.bin": blob}.__getitem__)
    onnx_model = to_onnx(graph)
    sess = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(4).normal(0, 1, (2, 7, 6, 2)).astype(np.float32)
    out, feat = sess.run(None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
    want_out, want_feat = _reference(x, w)
    assert out.shape == (2, 3, 4) and feat.shape == (2, 4, 3, 4)
    np.testing.assert_allclose(feat, want_feat, atol=2e-5)
    np.testing.assert_allclose(out, want_out, atol=2e-5)
    assert 0 < np.mean(feat * w["k"] > 6) < 1  # Relu6 really clips some values, not all
    pads = {n.name: list(next(a.ints for a in n.attribute if a.name == "pads"))
            for n in onnx_model.graph.node if n.op_type == "Conv"}
    assert pads["c"] == [1, 0, 1, 1]  # 7 rows: 1 + 1; 6 columns: 0 before, 1 after (stride 2)
    assert pads["d"] == [0, 0, 1, 1]  # 2x2 kernel at stride 1: the one pixel goes after
