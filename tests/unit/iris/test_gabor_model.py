"""The ONNX Gabor encoder: same numbers as the formula, manifest, caching and versioning."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from engine.models.gabor import DEFAULT_SPEC, GaborFilter, GaborSpec, ensure_encoder, gabor_kernels
from engine.models.manifest import ModelManifest
from engine.models.registry import ensure_model


def _reference(spec: GaborSpec, image: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy/OpenCV re-statement of the graph: (code bits, mask bits), each (columns, 8)."""
    kern, env = gabor_kernels(spec)
    kh, kw = kern.shape[2:]
    stride = spec.angular // spec.columns

    def filt(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        wrapped = np.concatenate([x[:, -(kw // 2):], x, x[:, : kw // 2]], axis=1)
        padded = np.pad(wrapped, ((kh // 2, kh // 2), (0, 0)))
        out = cv2.filter2D(padded, -1, k, borderType=cv2.BORDER_CONSTANT)
        return out[kh // 2 : -(kh // 2), kw // 2 : -(kw // 2)][list(spec.rows), ::stride]

    resp = np.stack([filt(image, kern[c, 0]) for c in range(kern.shape[0])])  # (2F, rows, C)
    supp = np.stack([filt(valid, env[c, 0]) for c in range(env.shape[0])])
    ok = supp > spec.min_support
    mag = np.abs(resp)
    mean = (mag * ok).sum(axis=(1, 2), keepdims=True) / (ok.sum(axis=(1, 2), keepdims=True) + 1e-6)
    mask = ok & (mag > spec.fragile * mean)
    order = (2, 1, 0)  # -> (C, rows, 2F)
    code = (resp > 0).transpose(order).reshape(spec.columns, -1)
    return code, mask.transpose(order).reshape(spec.columns, -1)


def test_graph_equals_formula(tmp_path: Path) -> None:
    manifest, path = ensure_encoder(DEFAULT_SPEC, tmp_path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.standard_normal((32, 512)).astype(np.float32), (0, 0), 1.5)
    valid = np.ones((32, 512), np.float32)
    valid[:10, 100:220] = 0  # an eyelid
    code, mask = sess.run(["code", "mask"], {"image": image[None, None], "valid": valid[None, None]})
    ref_code, ref_mask = _reference(DEFAULT_SPEC, image, valid)
    assert code.dtype == np.uint8 and code.shape == (256,)
    got_code = np.unpackbits(code).reshape(256, 8)
    got_mask = np.unpackbits(mask).reshape(256, 8)
    assert np.mean(got_code == ref_code) > 0.999
    assert np.mean(got_mask == ref_mask) > 0.995
    # the eyelid masks the inner rows in its columns, not elsewhere
    assert got_mask[55:105, :2].mean() < 0.1 and got_mask[150:250].mean() > 0.7
    assert manifest.output["nbytes"] == 256 and manifest.output["columns"] == 256


def test_circular_shift_of_input_is_column_roll(tmp_path: Path) -> None:
    _, path = ensure_encoder(DEFAULT_SPEC, tmp_path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    image = rng.standard_normal((32, 512)).astype(np.float32)
    valid = np.ones_like(image)
    a, _ = sess.run(None, {"image": image[None, None], "valid": valid[None, None]})
    b, _ = sess.run(None, {"image": np.roll(image, 14, axis=1)[None, None], "valid": valid[None, None]})
    assert np.array_equal(np.roll(a, 7), b)  # 14 angular samples = 7 columns = 7 bytes


def test_cached_rebuilt_when_altered_and_versioned(tmp_path: Path) -> None:
    m1, p1 = ensure_encoder(DEFAULT_SPEC, tmp_path)
    mtime = p1.stat().st_mtime_ns
    m2, _ = ensure_encoder(DEFAULT_SPEC, tmp_path)
    assert m2.onnx_sha256 == m1.onnx_sha256 and p1.stat().st_mtime_ns == mtime  # cached, not rebuilt
    p1.write_bytes(b"tampered")
    m3, p3 = ensure_encoder(DEFAULT_SPEC, tmp_path)
    assert m3.onnx_sha256 == m1.onnx_sha256 and p3.read_bytes() != b"tampered"
    other = GaborSpec(filters=(GaborFilter(16.0, 6.0, 3.0),))
    m4, _ = ensure_encoder(other, tmp_path)
    assert m4.version != m1.version and m4.model_id == m1.model_id and m4.name != m1.name
    assert ModelManifest.load(tmp_path / f"{m1.name}.json").kind == "iris_encoder"


def test_registered_with_the_model_registry(tmp_path: Path) -> None:
    manifest, path = ensure_model("iris_gabor", tmp_path)
    assert manifest.version == DEFAULT_SPEC.version and path.is_file()
