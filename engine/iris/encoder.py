"""Runs the ONNX Gabor encoder (built by ``engine.models.gabor``) on a normalised iris."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError, InvalidInput
from engine.iris.normalization import NormalizedIris
from engine.models.gabor import DEFAULT_SPEC, GaborSpec, ensure_encoder
from engine.models.manifest import ModelManifest
from engine.types import IrisTemplate, ModelRef

__all__ = ["IrisEncoder"]

U8 = npt.NDArray[np.uint8]


class IrisEncoder:
    """``encode(NormalizedIris) -> IrisTemplate``. The session is single-threaded on purpose: the
    graph is tiny and the engine parallelises over requests, not inside one."""

    def __init__(self, manifest: ModelManifest, onnx_path: Path, threads: int = 1):
        import onnxruntime as ort

        self.manifest = manifest
        self.radial = int(manifest.input["radial"])
        self.angular = int(manifest.input["angular"])
        self.columns = int(manifest.output["columns"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ConfigurationError(f"cannot load iris encoder {onnx_path.name}: {exc}") from exc

    @classmethod
    def default(cls, spec: GaborSpec = DEFAULT_SPEC, directory: Path | None = None) -> IrisEncoder:
        """The encoder for ``spec`` from the model directory, built on first use."""
        manifest, path = ensure_encoder(spec, directory)
        return cls(manifest, path)

    @property
    def model(self) -> ModelRef:
        return self.manifest.ref

    def encode_arrays(self, norm: NormalizedIris) -> tuple[U8, U8]:
        """Packed ``(code, mask)`` bytes, each ``(nbytes,)`` uint8."""
        if norm.image.shape != (self.radial, self.angular):
            raise InvalidInput(
                f"normalised iris is {norm.image.shape}, the encoder expects {(self.radial, self.angular)}",
                reason="INVALID_TEMPLATE",
            )
        feeds = {
            "image": np.ascontiguousarray(norm.image, dtype=np.float32)[None, None],
            "valid": norm.mask.astype(np.float32)[None, None],
        }
        code, mask = self._session.run(["code", "mask"], feeds)
        return np.asarray(code, dtype=np.uint8), np.asarray(mask, dtype=np.uint8)

    def encode(self, norm: NormalizedIris) -> IrisTemplate:
        code, mask = self.encode_arrays(norm)
        return IrisTemplate(code, mask, self.columns, self.model)
