"""Face embedding: aligned chips -> L2-normalised vectors, by any ONNX model described by a manifest.

The manifest's ``input`` says how to feed the graph (``width``/``height``, ``channels`` RGB|BGR,
``layout`` NCHW|NHWC, ``mean`` per channel, ``scale``: value = (pixel - mean) * scale) and ``output``
the embedding ``dim``. dlib's recognizer: 150x150 RGB NCHW, mean (122.782, 117.001, 104.298),
scale 1/256, 128-d; an ArcFace model: 112x112, mean 127.5, scale 1/127.5, 512-d.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError, InvalidInput
from engine.face.runtime import session
from engine.models.manifest import ModelManifest

__all__ = ["FaceEmbedder"]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


class FaceEmbedder:
    """``embed(chips)``: (B, H, W, 3) uint8 RGB chips -> (B, dim) float32 raw model outputs;
    ``embed_normalised`` averages optional mirrored chips and L2-normalises."""

    def __init__(self, model_path: Path, manifest: ModelManifest, threads: int = 1,
                 batch_size: int = 16) -> None:
        if manifest.kind != "face_embedding":
            raise ConfigurationError(f"model {manifest.name} is a {manifest.kind}, not a face_embedding")
        inp = manifest.input
        try:
            self.width, self.height = int(inp["width"]), int(inp["height"])
            self.dim = int(manifest.output["dim"])
            mean = np.asarray(inp.get("mean", [0.0, 0.0, 0.0]), np.float32).reshape(-1)
            self.scale = np.float32(inp.get("scale", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"model manifest {manifest.name}: bad input/output: {exc}") from exc
        self.bgr = str(inp.get("channels", "RGB")).upper() == "BGR"
        self.nhwc = str(inp.get("layout", "NCHW")).upper() == "NHWC"
        if mean.size == 1:
            mean = np.repeat(mean, 3)
        self.mean = mean.reshape(1, 1, 1, 3)
        self.manifest = manifest
        self.batch_size = max(1, batch_size)
        self.session = session(model_path, threads)
        self.input_name = str(inp.get("name") or self.session.get_inputs()[0].name)
        out_name = manifest.output.get("name")
        self.output_names = [str(out_name)] if out_name else None

    def _prepare(self, chips: U8) -> F32:
        src = chips[..., ::-1] if self.bgr else chips
        x: F32 = (src.astype(np.float32) - self.mean) * self.scale
        return np.ascontiguousarray(x if self.nhwc else x.transpose(0, 3, 1, 2))

    def embed(self, chips: U8) -> F32:
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (self.height, self.width, 3) or chips.dtype != np.uint8:
            raise InvalidInput(f"chips must be uint8 (B, {self.height}, {self.width}, 3), got "
                               f"{chips.dtype} {chips.shape}", reason="INVALID_CHIP")
        outs = []
        for i in range(0, chips.shape[0], self.batch_size):
            batch = self._prepare(chips[i : i + self.batch_size])
            try:
                y = self.session.run(self.output_names, {self.input_name: batch})[0]
            except Exception as exc:  # onnxruntime's own error types; the model does not fit its manifest
                raise ConfigurationError(f"model {self.manifest.name} failed to run: {exc}") from exc
            outs.append(np.asarray(y, np.float32).reshape(batch.shape[0], -1))
        out = np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)
        if out.shape[1] != self.dim:
            raise ConfigurationError(f"model {self.manifest.name} gives {out.shape[1]}-d outputs, its "
                                     f"manifest says {self.dim}")
        return out

    def embed_normalised(self, chips: U8, *, flip: bool = False, groups: int = 1) -> F32:
        """L2-normalised embeddings, one per chip group: ``chips`` holds ``groups`` consecutive chips
        per face (e.g. jittered copies) whose raw outputs are averaged; with ``flip`` each chip's
        mirror image is added to its group too. Returns (B // groups, dim)."""
        chips = np.asarray(chips)
        if flip:
            chips = np.concatenate([chips, chips[:, :, ::-1]], axis=0)
        raw = self.embed(chips)
        if flip:
            half = raw.shape[0] // 2
            raw = raw[:half] + raw[half:]
        raw = raw.reshape(-1, groups, self.dim).sum(axis=1)
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        out: F32 = (raw / np.maximum(norm, 1e-12)).astype(np.float32)
        return out
