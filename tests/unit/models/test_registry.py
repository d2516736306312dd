"""Model registry: conversion on first use, caching, sha256 verification, the `models` command."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from engine.errors import ConfigurationError, IntegrityError
from engine.models import cli
from engine.models.manifest import ModelManifest, sha256_file, write_atomic
from engine.models.registry import ModelSpec, ensure_model, register, registered


def _tiny_build(calls: list[Path]):  # type: ignore[no-untyped-def]
    def build(directory: Path) -> ModelManifest:
        calls.append(directory)
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "tiny",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        path = directory / "tiny_test_model.onnx"
        write_atomic(path, helper.make_model(graph).SerializeToString())
        m = ModelManifest(name="tiny_test_model", model_id="tiny", version="1", kind="test",
                          onnx_file=path.name, onnx_sha256=sha256_file(path))
        m.save(directory)
        return m
    return build


def test_convert_once_then_cached_and_verified(tmp_path: Path) -> None:
    calls: list[Path] = []
    register(ModelSpec("tiny_test_model", "test", "a test model", _tiny_build(calls), default=False))
    m1, p1 = ensure_model("tiny_test_model", tmp_path)
    m2, p2 = ensure_model("tiny_test_model", tmp_path)
    assert calls == [tmp_path] and p1 == p2 and m1 == m2 and p1.is_file()
    p1.unlink()  # a deleted model file is converted again
    ensure_model("tiny_test_model", tmp_path)
    assert len(calls) == 2
    p1.write_bytes(p1.read_bytes() + b"\x00")  # altered after conversion: refused, not overwritten
    with pytest.raises(IntegrityError, match="does not match its manifest"):
        ensure_model("tiny_test_model", tmp_path)


def test_names_are_unique_and_unknown_names_fail() -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        register(ModelSpec("dlib_mmod", "face_detector", "impostor", lambda d: None))  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="unknown model"):
        ensure_model("no_such_model")
    names = {s.name for s in registered()}
    assert {"dlib_resnet_v1", "dlib_mmod", "dlib_sp5"} <= names


def test_dlib_manifests_describe_the_models() -> None:
    m, path = ensure_model("dlib_resnet_v1")
    assert m.kind == "face_embedding" and m.output["dim"] == 128 and m.input["width"] == 150
    assert m.alignment["method"] == "dlib_chip" and m.alignment["padding"] == 0.25
    assert len(m.source["sha256"]) == 64 and m.source["file"].endswith(".dat")
    assert sha256_file(path) == m.onnx_sha256
    _, lpath = ensure_model("dlib_sp5")
    with np.load(lpath, allow_pickle=False) as z:
        assert z["leaf_values"].shape == (15, 500, 16, 10)


def test_cli_list_convert_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("dlib_mmod",):
        _, p = ensure_model(name)
        shutil.copy(p, tmp_path / p.name)
        shutil.copy(p.parent / f"{name}.json", tmp_path / f"{name}.json")
    assert cli.main(["--model-dir", str(tmp_path), "list"]) == 0
    assert "dlib_mmod" in capsys.readouterr().out
    assert cli.main(["--model-dir", str(tmp_path), "verify"]) == 0
    (tmp_path / "dlib_mmod.onnx").write_bytes(b"broken")
    assert cli.main(["--model-dir", str(tmp_path), "verify"]) == 1
    assert "BROKEN" in capsys.readouterr().out
    assert cli.main(["--model-dir", str(tmp_path), "convert", "no_such_model"]) == 1
    assert cli.main(["frobnicate"]) == 2
