"""dlib's 5-point shape predictor (cascade of regression-tree ensembles) in vectorised numpy.

Landmark-identical to dlib's ``shape_predictor::operator()`` because it follows its arithmetic:
feature pixels are placed with a float32 2x2 similarity (current shape vs. initial shape), mapped
into the box in double, rounded to the nearest pixel and read as dlib's grey ``(r + g + b) / 3``
(integer division; 0 outside the image); a split goes left when
``float(p[idx1]) - float(p[idx2]) > thresh``; and the leaf vectors are added to the shape **one tree
after another in float32** (``np.cumsum`` is sequential; a pairwise or float64 sum moved points by
up to 5 px in ~12% of boxes). All boxes of an image and all trees of a cascade run at once.

Parts (dlib order): 0/1 outer/inner corner of the eye on the image's right, 2/3 outer/inner corner of
the eye on the image's left, 4 base of the nose. No mouth corners.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError
from engine.models.dlib_shape import SHAPE_ARRAYS
from engine.models.manifest import ModelManifest

__all__ = ["ShapePredictor", "similarity_2x2"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def similarity_2x2(src: F64, dst: F64) -> F64:
    """Least-squares similarity (scale * rotation, no reflection) mapping centred ``src`` points to
    centred ``dst``; ``src``/``dst`` (B, P, 2). Returns (B, 2, 2). Equals Umeyama's solution that
    dlib's ``find_similarity_transform`` computes with an SVD whenever no reflection is involved."""
    s = src - src.mean(axis=1, keepdims=True)
    d = dst - dst.mean(axis=1, keepdims=True)
    norm = np.maximum((s * s).sum(axis=(1, 2)), 1e-300)
    a = (s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1]).sum(axis=1) / norm
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(axis=1) / norm
    return np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], axis=1)


class ShapePredictor:
    """``predict(rgb, boxes)``: boxes (B, 4) inclusive ``left, top, right, bottom`` -> (B, 5, 2)
    integer landmark pixels (x, y)."""

    def __init__(self, npz_path: Path, manifest: ModelManifest | None = None) -> None:
        if manifest is not None and manifest.kind != "face_landmarks":
            raise ConfigurationError(f"model {manifest.name} is a {manifest.kind}, not face_landmarks")
        try:
            with np.load(npz_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in SHAPE_ARRAYS}
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigurationError(f"cannot load shape predictor {npz_path}: {exc}") from exc
        self.initial: F32 = arrays["initial_shape"].astype(np.float32)
        self.idx1 = arrays["split_idx1"].astype(np.intp)
        self.idx2 = arrays["split_idx2"].astype(np.intp)
        self.thresh: F32 = arrays["split_thresh"].astype(np.float32)
        self.leaves: F32 = arrays["leaf_values"].astype(np.float32)
        self.anchor = arrays["anchor_idx"].astype(np.intp)
        self.deltas: F32 = arrays["deltas"].astype(np.float32)
        self.n_parts = self.initial.size // 2
        self.depth = int(np.log2(self.idx1.shape[2] + 1))
        self._init_pts = self.initial.reshape(-1, 2).astype(np.float64)

    def predict(self, rgb: npt.NDArray[np.uint8], boxes: npt.ArrayLike) -> npt.NDArray[np.int64]:
        box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        nb = box.shape[0]
        if nb == 0:
            return np.zeros((0, self.n_parts, 2), np.int64)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        h, w = rgb.shape[:2]
        left, top = box[:, 0:1], box[:, 1:2]
        bw, bh = box[:, 2:3] - left, box[:, 3:4] - top  # dlib: (1, 1) -> br corner, not br + 1
        shape = np.repeat(self.initial[None], nb, axis=0)  # (B, 2P) float32
        n_trees = self.idx1.shape[1]
        tree_ix = np.arange(n_trees)
        for c in range(self.idx1.shape[0]):
            cur = shape.reshape(nb, -1, 2)
            m = similarity_2x2(np.repeat(self._init_pts[None], nb, 0), cur.astype(np.float64))
            m = m.astype(np.float32)
            d = self.deltas[c]  # (F, 2)
            anc = cur[:, self.anchor[c], :]  # (B, F, 2) float32
            # float32 products and sums, as dlib's matrix<float,2,2> * vector<float,2>
            px = m[:, None, 0, 0] * d[None, :, 0] + m[:, None, 0, 1] * d[None, :, 1] + anc[..., 0]
            py = m[:, None, 1, 0] * d[None, :, 0] + m[:, None, 1, 1] * d[None, :, 1] + anc[..., 1]
            ix = np.floor(left + bw * px.astype(np.float64) + 0.5).astype(np.int64)
            iy = np.floor(top + bh * py.astype(np.float64) + 0.5).astype(np.int64)
            inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
            pix = rgb[np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)].astype(np.uint16).sum(axis=-1) // 3
            feats = np.where(inside, pix, 0).astype(np.float32)  # (B, F)
            node = np.zeros((nb, n_trees), np.intp)
            for _ in range(self.depth):
                i1 = self.idx1[c, tree_ix[None, :], node]
                i2 = self.idx2[c, tree_ix[None, :], node]
                f1 = np.take_along_axis(feats, i1, axis=1)
                f2 = np.take_along_axis(feats, i2, axis=1)
                go_left = (f1 - f2) > self.thresh[c, tree_ix[None, :], node]
                node = 2 * node + np.where(go_left, 1, 2)
            leaf = node - self.idx1.shape[2]
            vals = self.leaves[c, tree_ix[None, :], leaf]  # (B, T, 2P) float32
            stacked = np.concatenate([shape[:, None, :], vals], axis=1)
            shape = np.cumsum(stacked, axis=1, dtype=np.float32)[:, -1, :]
        pts = shape.reshape(nb, -1, 2).astype(np.float64)
        out_x = np.floor(left + bw * pts[..., 0] + 0.5)
        out_y = np.floor(top + bh * pts[..., 1] + 0.5)
        return np.stack([out_x, out_y], axis=-1).astype(np.int64)
