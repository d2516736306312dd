"""Build the iris encoder: an ONNX graph of analytic 2-D Gabor filters with phase quantisation.

There is no trained iris network; the kernels are Daugman's complex 2-D Gabor wavelets, written
down from their formula, so the "model" is fully defined by ``GaborSpec`` and rebuilt on first use
(a build product, never committed). The graph takes the normalised polar iris (``1 x 1 x R x A``
image, zero-mean, and its ``1 x 1 x R x A`` validity mask ``valid`` as 0/1 floats) and returns the packed iris
code and mask bytes, exactly the ``IrisTemplate`` layout:

    pad circularly along the angle (the polar image wraps around) -> conv with the real and
    imaginary kernels, stride A / columns along the angle -> keep ``rows`` radial positions ->
    code bit = sign of each response (the phase quadrant) -> mask bit = the kernel's support is
    mostly valid AND the response is not "fragile" (magnitude far below the image's typical one,
    whose sign flips with noise) -> bits ordered column-major (angle outermost), packed 8 to a byte.

The version string carries a hash of the spec, so a changed filter bank is a new template space.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ConfigurationError, IntegrityError
from engine.models.manifest import ModelManifest, model_dir, sha256_file, write_atomic

__all__ = [
    "DEFAULT_SPEC",
    "GaborFilter",
    "GaborSpec",
    "build_encoder",
    "ensure_encoder",
    "gabor_kernels",
    "model_name",
    "write_encoder",
]

log = logging.getLogger(__name__)

MODEL_ID = "nasname-iris-gabor"
OPSET = 17


@dataclass(frozen=True)
class GaborFilter:
    """One complex Gabor wavelet on the polar grid (units: grid pixels). ``wavelength`` is the
    period along the angle; ``sigma_angle``/``sigma_radial`` the Gaussian envelope widths."""

    wavelength: float
    sigma_angle: float
    sigma_radial: float


@dataclass(frozen=True)
class GaborSpec:
    """The encoder. ``radial`` x ``angular``: the normalised grid it expects; ``columns``: angular
    positions in the code; ``rows``: radial grid indices sampled; every (row, filter) gives 2 bits
    (real and imaginary sign), so a column holds ``2 * len(rows) * len(filters)`` bits, which must
    be a multiple of 8. ``min_support``: fraction of the kernel envelope that must fall on valid
    pixels; ``fragile``: responses weaker than this fraction of the mean magnitude are masked."""

    radial: int = 32
    angular: int = 512
    columns: int = 256
    rows: tuple[int, ...] = (4, 12, 20, 28)
    filters: tuple[GaborFilter, ...] = (GaborFilter(wavelength=24.0, sigma_angle=8.0, sigma_radial=3.0),)
    min_support: float = 0.6
    fragile: float = 0.15

    @property
    def bits_per_column(self) -> int:
        return 2 * len(self.rows) * len(self.filters)

    @property
    def nbytes(self) -> int:
        return self.columns * self.bits_per_column // 8

    def validate(self) -> None:
        if self.bits_per_column % 8:
            raise ConfigurationError("Gabor spec: bits per column must be a multiple of 8")
        if self.angular % self.columns:
            raise ConfigurationError("Gabor spec: angular samples must be a multiple of columns")
        if not self.rows or min(self.rows) < 0 or max(self.rows) >= self.radial:
            raise ConfigurationError("Gabor spec: rows must index the radial grid")

    @property
    def version(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"1.{digest}"


DEFAULT_SPEC = GaborSpec()


def gabor_kernels(spec: GaborSpec) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(2F, 1, kh, kw) kernels (real, imaginary interleaved per filter, zero DC) and (2F, 1, kh, kw)
    envelopes normalised to sum 1, all filters padded to the largest support."""
    half_h = max(int(np.ceil(2.5 * f.sigma_radial)) for f in spec.filters)
    half_w = max(int(np.ceil(2.5 * f.sigma_angle)) for f in spec.filters)
    y, x = np.mgrid[-half_h : half_h + 1, -half_w : half_w + 1].astype(np.float64)
    kern, env = [], []
    for f in spec.filters:
        g = np.exp(-(x**2) / (2 * f.sigma_angle**2) - (y**2) / (2 * f.sigma_radial**2))
        for part in (np.cos(2 * np.pi * x / f.wavelength), np.sin(2 * np.pi * x / f.wavelength)):
            k = g * part
            k -= g * (k.sum() / g.sum())  # no response to uniform brightness
            k /= np.abs(k).sum()
            kern.append(k)
            env.append(g / g.sum())
    return (np.asarray(kern, np.float32)[:, None], np.asarray(env, np.float32)[:, None])


def build_encoder(spec: GaborSpec = DEFAULT_SPEC) -> onnx.ModelProto:
    """The ONNX graph described in the module docstring."""
    spec.validate()
    kern, env = gabor_kernels(spec)
    kh, kw = kern.shape[2:]
    ph, pw = kh // 2, kw // 2
    stride = spec.angular // spec.columns
    rows = np.asarray(spec.rows)
    steps = np.diff(rows)
    if rows.size > 1 and np.all(steps == steps[0]) and steps[0] > 0:
        # evenly spaced rows: a vertical stride computes only them (8x less work than all rows)
        step = int(steps[0])
        top = ph - int(rows[0])
        bottom = (int(rows[-1]) + ph) - (spec.radial - 1)
        conv_rows = {"strides": [step, stride]}
        row_index = np.arange(rows.size, dtype=np.int64)
    else:
        top = bottom = ph
        conv_rows = {"strides": [1, stride]}
        row_index = rows.astype(np.int64)
    if top < 0 or bottom < 0:
        # negative pads would crop; slice instead is not needed for the sizes we use
        raise ConfigurationError("Gabor spec: kernel smaller than the row offset; widen sigma_radial")
    conv: dict[str, Any] = {"kernel_shape": [kh, kw], "pads": [top, 0, bottom, 0], **conv_rows}
    weights = (2 ** np.arange(7, -1, -1)).astype(np.float32)
    inits = [
        numpy_helper.from_array(kern, "kernels"),
        numpy_helper.from_array(env, "envelopes"),
        numpy_helper.from_array(row_index, "rows"),
        numpy_helper.from_array(np.array([spec.angular - pw], np.int64), "tail_start"),
        numpy_helper.from_array(np.array([spec.angular], np.int64), "tail_end"),
        numpy_helper.from_array(np.array([0], np.int64), "head_start"),
        numpy_helper.from_array(np.array([pw], np.int64), "head_end"),
        numpy_helper.from_array(np.array([3], np.int64), "axis_angle"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes_spatial"),
        numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
        numpy_helper.from_array(np.array([spec.min_support], np.float32), "min_support"),
        numpy_helper.from_array(np.array([spec.fragile], np.float32), "fragile"),
        numpy_helper.from_array(np.array([1e-6], np.float32), "eps"),
        numpy_helper.from_array(np.array([spec.nbytes, 8], np.int64), "byte_shape"),
        numpy_helper.from_array(weights, "bit_weights"),
    ]
    nodes = []
    for src in ("image", "valid"):
        nodes += [
            helper.make_node("Slice", [src, "tail_start", "tail_end", "axis_angle"], [f"{src}_tail"]),
            helper.make_node("Slice", [src, "head_start", "head_end", "axis_angle"], [f"{src}_head"]),
            helper.make_node("Concat", [f"{src}_tail", src, f"{src}_head"], [f"{src}_wrapped"], axis=3),
        ]
    nodes += [
        helper.make_node("Conv", ["image_wrapped", "kernels"], ["resp_all"], **conv),
        helper.make_node("Conv", ["valid_wrapped", "envelopes"], ["support_all"], **conv),
        helper.make_node("Gather", ["resp_all", "rows"], ["resp"], axis=2),
        helper.make_node("Gather", ["support_all", "rows"], ["support"], axis=2),
        helper.make_node("Greater", ["resp", "zero"], ["code_b"]),
        helper.make_node("Greater", ["support", "min_support"], ["supported"]),
        # mean magnitude per filter channel over supported positions -> fragile-bit threshold
        helper.make_node("Cast", ["supported"], ["supported_f"], to=TensorProto.FLOAT),
        helper.make_node("Abs", ["resp"], ["mag"]),
        helper.make_node("Mul", ["mag", "supported_f"], ["mag_valid"]),
        helper.make_node("ReduceSum", ["mag_valid", "axes_spatial"], ["mag_sum"], keepdims=1),
        helper.make_node("ReduceSum", ["supported_f", "axes_spatial"], ["n_valid"], keepdims=1),
        helper.make_node("Add", ["n_valid", "eps"], ["n_valid_eps"]),
        helper.make_node("Div", ["mag_sum", "n_valid_eps"], ["mag_mean"]),
        helper.make_node("Mul", ["mag_mean", "fragile"], ["mag_floor"]),
        helper.make_node("Greater", ["mag", "mag_floor"], ["strong"]),
        helper.make_node("And", ["supported", "strong"], ["mask_b"]),
    ]
    for name in ("code", "mask"):
        nodes += [
            helper.make_node("Cast", [f"{name}_b"], [f"{name}_f"], to=TensorProto.FLOAT),
            # (1, 2F, rows, C) -> (1, C, rows, 2F): angle outermost, so a column is whole bytes
            helper.make_node("Transpose", [f"{name}_f"], [f"{name}_t"], perm=[0, 3, 2, 1]),
            helper.make_node("Reshape", [f"{name}_t", "byte_shape"], [f"{name}_bits"]),
            helper.make_node("MatMul", [f"{name}_bits", "bit_weights"], [f"{name}_val"]),
            helper.make_node("Cast", [f"{name}_val"], [name], to=TensorProto.UINT8),
        ]
    shape = [1, 1, spec.radial, spec.angular]
    graph = helper.make_graph(
        nodes, "iris_gabor_encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("valid", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("code", TensorProto.UINT8, [spec.nbytes]),
         helper.make_tensor_value_info("mask", TensorProto.UINT8, [spec.nbytes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nasname.engine.models.gabor")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


DEFAULT_NAME = "iris_gabor"


def model_name(spec: GaborSpec) -> str:
    """``iris_gabor`` for the default bank, ``iris_gabor_<version>`` for any other."""
    return DEFAULT_NAME if spec == DEFAULT_SPEC else f"{DEFAULT_NAME}_{spec.version}"


def _manifest(name: str, spec: GaborSpec, onnx_file: str, sha: str) -> ModelManifest:
    return ModelManifest(
        name=name,
        model_id=MODEL_ID,
        version=spec.version,
        kind="iris_encoder",
        onnx_file=onnx_file,
        onnx_sha256=sha,
        input={"radial": spec.radial, "angular": spec.angular, "names": ["image", "valid"],
               "image": "zero-mean unit-variance polar iris, invalid points 0", "valid": "1 = usable point"},
        output={"columns": spec.columns, "bytes_per_column": spec.bits_per_column // 8,
                "nbytes": spec.nbytes, "packing": "np.packbits big bit order, angle outermost"},
        source={"method": "analytic 2-D Gabor wavelets (Daugman)", "builder": "engine.models.gabor",
                "licence": "Apache-2.0 (generated)"},
        extra={"spec": asdict(spec)},
    )


def write_encoder(spec: GaborSpec, directory: Path) -> ModelManifest:
    """Build the graph of ``spec`` and write it with its manifest into ``directory``."""
    name = model_name(spec)
    onnx_path = directory / f"{name}.onnx"
    write_atomic(onnx_path, build_encoder(spec).SerializeToString())
    manifest = _manifest(name, spec, onnx_path.name, sha256_file(onnx_path))
    manifest.save(directory)
    return manifest


def ensure_encoder(spec: GaborSpec = DEFAULT_SPEC,
                   directory: Path | None = None) -> tuple[ModelManifest, Path]:
    """(manifest, verified onnx path) of the encoder for ``spec``; built on first use, and rebuilt
    when the cached file is missing, altered, or was built from another spec (stale version)."""
    d = directory or model_dir()
    mpath = d / f"{model_name(spec)}.json"
    if mpath.is_file():
        manifest = ModelManifest.load(mpath)
        if manifest.version == spec.version:
            try:
                return manifest, manifest.verify(d)
            except (ConfigurationError, IntegrityError):
                log.warning("iris encoder file missing or altered; rebuilding it")
        else:
            log.info("cached iris encoder is another version; rebuilding it")
    manifest = write_encoder(spec, d)
    return manifest, manifest.verify(d)
