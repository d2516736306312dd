"""The TFJS graph-model reader, the two MobileFaceNet fixes and the ONNX writer, on a tiny graph
built in the test and checked against a hand-written numpy forward pass (tfjs_tiny.reference)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from engine.errors import ConfigurationError
from engine.models.tfjs import (
    FIX_NEGATE_PRELU_ALPHA,
    FIX_UNFUSE_PRELU_RELU,
    TfjsGraph,
    apply_fixes,
    decode_weights,
    load_graph_model,
    parse_graph_model,
)
from engine.models.tfjs_onnx import to_onnx
from tests.unit.models import tfjs_tiny

BOTH = [FIX_UNFUSE_PRELU_RELU, FIX_NEGATE_PRELU_ALPHA]


def _graph(model: dict[str, Any] | None = None, weights: dict[str, Any] | None = None) -> TfjsGraph:
    weights = weights if weights is not None else tfjs_tiny.make_weights()
    built, blob = tfjs_tiny.build_model(weights)
    shards = tfjs_tiny.split_shards(blob)
    return parse_graph_model(model if model is not None else built, shards.__getitem__)


def _run(graph: TfjsGraph, x_nhwc: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(to_onnx(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"x": np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))})
    return np.asarray(out)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(1).normal(0, 1, (3, 8, 8, 3)).astype(np.float32)


def test_weights_decode_float16_and_uint8_quantised() -> None:
    weights = tfjs_tiny.make_weights()
    g = _graph(weights=weights)
    ref = tfjs_tiny.dequantised(weights)
    np.testing.assert_array_equal(g.weights["c1/w"], weights["c1/w"].astype(np.float32))
    assert g.weights["c1/w"].dtype == np.float32
    np.testing.assert_allclose(g.weights["dw/w"], ref["dw/w"], rtol=0, atol=1e-7)
    assert g.weights["dw/w"].min() >= tfjs_tiny.DW_MIN - 1e-6
    assert g.weights["axis"].dtype == np.int32 and g.weights["axis"].tolist() == [1]
    assert g.outputs == ["emb"] and g.inputs == ["x"]


def test_uint16_quantisation_and_shard_boundaries() -> None:
    codes = np.array([0, 1, 65535, 300], dtype=np.uint16)
    manifest = [{"paths": ["a", "b"], "weights": [
        {"name": "q", "shape": [2, 2], "dtype": "float32",
         "quantization": {"dtype": "uint16", "scale": 0.5, "min": -2.0}},
        {"name": "f", "shape": [1], "dtype": "float32"}]}]
    blob = codes.tobytes() + np.float32(7.25).tobytes()
    out = decode_weights(manifest, {"a": blob[:3], "b": blob[3:]}.__getitem__)  # split mid-value
    np.testing.assert_array_equal(out["q"], (codes.astype(np.float32) * 0.5 - 2.0).reshape(2, 2))
    assert out["f"].tolist() == [7.25]


def test_weights_with_leftover_or_missing_bytes_are_refused() -> None:
    manifest = [{"paths": ["a"], "weights": [{"name": "f", "shape": [2], "dtype": "float32"}]}]
    with pytest.raises(ConfigurationError, match="unexplained"):
        decode_weights(manifest, lambda _: bytes(12))
    with pytest.raises(ConfigurationError, match="past the end"):
        decode_weights(manifest, lambda _: bytes(4))
    bad = [{"paths": ["a"], "weights": [{"name": "s", "shape": [1], "dtype": "string"}]}]
    with pytest.raises(ConfigurationError, match="dtype"):
        decode_weights(bad, lambda _: b"")


def test_onnx_matches_numpy_reference_as_shipped(x: np.ndarray) -> None:
    weights = tfjs_tiny.make_weights()
    out = _run(_graph(weights=weights), x)
    want = tfjs_tiny.reference(x, tfjs_tiny.dequantised(weights), fixed=False)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, want, atol=2e-5)


def test_both_fixes_detected_counted_and_give_true_prelu(x: np.ndarray) -> None:
    weights = tfjs_tiny.make_weights()
    g = _graph(weights=weights)
    counts = apply_fixes(g, BOTH)
    assert counts == {FIX_UNFUSE_PRELU_RELU: 1, FIX_NEGATE_PRELU_ALPHA: 2}
    ref = tfjs_tiny.dequantised(weights)
    out = _run(g, x)
    np.testing.assert_allclose(out, tfjs_tiny.reference(x, ref, fixed=True), atol=2e-5)
    assert not np.allclose(out, tfjs_tiny.reference(x, ref, fixed=False), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_each_fix_alone_changes_only_its_part() -> None:
    g = _graph()
    assert apply_fixes(g, [FIX_UNFUSE_PRELU_RELU]) == {FIX_UNFUSE_PRELU_RELU: 1}
    assert g.node("dw").attr_strs("fused_ops") == ["BiasAdd"]
    assert "dw/nasname_unfused_relu" in g.node("b/add").inputs
    assert g.node("b/abs").inputs == ["dw"] and g.node("b/sub").inputs == ["dw", "b/abs"]
    g2 = _graph()
    before = g2.weights[tfjs_tiny.SLOPE_B].copy()
    assert apply_fixes(g2, [FIX_NEGATE_PRELU_ALPHA]) == {FIX_NEGATE_PRELU_ALPHA: 2}
    np.testing.assert_array_equal(g2.weights[tfjs_tiny.SLOPE_B], -before)
    assert g2.node("dw").attr_strs("fused_ops") == ["BiasAdd", "Relu"]


def test_unknown_fix_and_broken_pattern_fail_loudly() -> None:
    with pytest.raises(ConfigurationError, match="unknown TFJS fix"):
        apply_fixes(_graph(), ["make_it_better"])
    model, _ = tfjs_tiny.build_model(tfjs_tiny.make_weights())
    broken = copy.deepcopy(model)
    for n in broken["modelTopology"]["node"]:
        if n["name"] == "b/add":  # positive branch no longer reads the conv: not a PReLU any more
            n["input"] = ["b/mul1", "b/mul1"]
    with pytest.raises(ConfigurationError, match="pattern not understood"):
        apply_fixes(_graph(model=broken), [FIX_UNFUSE_PRELU_RELU])


def test_unsupported_op_and_attributes_fail_loudly(x: np.ndarray) -> None:
    model, _ = tfjs_tiny.build_model(tfjs_tiny.make_weights())
    for field, value, match in [("op", "Tanh", "'Tanh'.*not supported"),
                                ("padding", "EXPLICIT", "unsupported padding"),
                                ("fused_ops", "FusedBatchNorm", "unsupported fused ops")]:
        bad = copy.deepcopy(model)
        for n in bad["modelTopology"]["node"]:
            if n["name"] == ("a/abs" if field == "op" else "c2"):
                if field == "op":
                    n["op"] = value
                elif field == "padding":
                    n["attr"]["padding"] = tfjs_tiny._s(value)
                else:
                    n["attr"]["fused_ops"] = tfjs_tiny._strs(value)
        with pytest.raises(ConfigurationError, match=match):
            to_onnx(_graph(model=bad))


def test_asymmetric_same_padding_puts_extra_pixel_bottom_right() -> None:
    g = _graph()
    onnx_model = to_onnx(g)
    conv = next(n for n in onnx_model.graph.node if n.name == "c1")
    pads = next(a.ints for a in conv.attribute if a.name == "pads")
    assert list(pads) == [0, 0, 1, 1]  # 8 px, k=3, stride 2 -> 4 outputs, 1 px of padding after


def test_not_a_graph_model_and_missing_weight_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"not a TensorFlow\.js graph model"):
        parse_graph_model({"format": "layers-model"}, lambda _: b"")
    model, blob = tfjs_tiny.build_model(tfjs_tiny.make_weights())
    model["modelTopology"]["node"].append({"name": "orphan", "op": "Const"})
    with pytest.raises(ConfigurationError, match="no weight"):
        parse_graph_model(model, tfjs_tiny.split_shards(blob).__getitem__)


def test_load_from_folder(tmp_path: Path, x: np.ndarray) -> None:
    weights = tfjs_tiny.make_weights()
    model, blob = tfjs_tiny.build_model(weights)
    (tmp_path / "model.json").write_text(json.dumps(model))
    for name, data in tfjs_tiny.split_shards(blob).items():
        (tmp_path / name).write_bytes(data)
    out = _run(load_graph_model(tmp_path), x)
    want = tfjs_tiny.reference(x, tfjs_tiny.dequantised(weights), fixed=False)
    np.testing.assert_allclose(out, want, atol=2e-5)
