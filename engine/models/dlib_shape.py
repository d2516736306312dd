"""Convert dlib's ``shape_predictor`` (ensemble of regression trees, Kazemi & Sullivan) to arrays.

File layout (``dlib/image_processing/shape_predictor.h``), floats in dlib's FLOAT encoding:
    INT version (1)
    MATRIX<float> initial_shape (2P x 1: x0, y0, x1, y1 ..., normalised to the face box)
    vector<vector<tree>> forests (cascades x trees); tree = vector<{INT idx1, INT idx2, FLOAT thresh}>
        splits, vector<MATRIX<float> (2P x 1)> leaf_values
    vector<vector<INT>> anchor_idx; vector<vector<vector<FLOAT,2>>> deltas (per cascade, per pixel)

Every tree must be complete (splits = 2^d - 1, leaves = 2^d) and every index in range; the arrays
are written to an ``.npz`` (no pickle) that ``engine.face.landmarks`` evaluates.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError
from engine.models.dlib_format import DlibReader

__all__ = ["SHAPE_ARRAYS", "read_shape_predictor", "shape_predictor_npz"]

SHAPE_ARRAYS = ("initial_shape", "split_idx1", "split_idx2", "split_thresh", "leaf_values", "anchor_idx",
                "deltas")


def read_shape_predictor(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Parse and validate; returns the arrays named in ``SHAPE_ARRAYS``:
    initial_shape (2P,) f32; split_idx1/2 (C, T, S) i32; split_thresh (C, T, S) f32;
    leaf_values (C, T, S+1, 2P) f32; anchor_idx (C, F) i32; deltas (C, F, 2) f32."""
    try:
        r = DlibReader(path.read_bytes(), path.name)
    except OSError as exc:
        raise ConfigurationError(f"cannot read model source {path}: {exc}") from exc
    r.expect_int(1, "shape_predictor version")
    init = r.float_matrix()
    if init.shape[1] != 1 or init.shape[0] % 2:
        raise r.fail(f"initial shape must be a 2P x 1 column, found {init.shape}")
    dim = init.shape[0]
    n_casc = r.int_()
    idx1: list[list[list[int]]] = []
    idx2: list[list[list[int]]] = []
    thr: list[list[list[float]]] = []
    leaves: list[list[npt.NDArray[np.float64]]] = []
    n_splits = -1
    for _ in range(n_casc):
        n_trees = r.int_()
        ci1, ci2, cth, clv = [], [], [], []
        for _ in range(n_trees):
            ns = r.int_()
            if n_splits < 0:
                n_splits = ns
            if ns != n_splits or (ns + 1) & ns:
                raise r.fail(f"tree with {ns} splits: every tree must be complete and of equal depth")
            t1, t2, tt = [], [], []
            for _ in range(ns):
                t1.append(r.int_())
                t2.append(r.int_())
                tt.append(r.float_())
            nl = r.int_()
            if nl != ns + 1:
                raise r.fail(f"tree with {ns} splits has {nl} leaves")
            lv = np.empty((nl, dim), np.float64)
            for j in range(nl):
                m = r.float_matrix()
                if m.shape != (dim, 1):
                    raise r.fail(f"leaf value of shape {m.shape}, expected ({dim}, 1)")
                lv[j] = m[:, 0]
            ci1.append(t1)
            ci2.append(t2)
            cth.append(tt)
            clv.append(lv)
        idx1.append(ci1)
        idx2.append(ci2)
        thr.append(cth)
        leaves.append(clv)
    if r.int_() != n_casc:
        raise r.fail("anchor_idx count differs from the number of cascades")
    anchors = []
    for _ in range(n_casc):
        anchors.append([r.int_() for _ in range(r.int_())])
    if r.int_() != n_casc:
        raise r.fail("deltas count differs from the number of cascades")
    deltas = []
    for _ in range(n_casc):
        deltas.append([(r.float_(), r.float_()) for _ in range(r.int_())])
    if not r.at_end():
        raise r.fail("unexpected trailing bytes")
    try:
        out: dict[str, npt.NDArray[np.generic]] = {
            "initial_shape": init[:, 0].astype(np.float32),
            "split_idx1": np.asarray(idx1, np.int32),
            "split_idx2": np.asarray(idx2, np.int32),
            "split_thresh": np.asarray(thr, np.float32),
            "leaf_values": np.asarray(leaves, np.float32),
            "anchor_idx": np.asarray(anchors, np.int32),
            "deltas": np.asarray(deltas, np.float32),
        }
    except ValueError as exc:  # ragged: cascades with different tree or pixel counts
        raise r.fail(f"irregular ensemble: {exc}") from exc
    n_feat = out["anchor_idx"].shape[1]
    for key in ("split_idx1", "split_idx2"):
        a = out[key]
        if a.size and (a.min() < 0 or a.max() >= n_feat):
            raise r.fail(f"{key} out of range 0..{n_feat - 1}")
    a = out["anchor_idx"]
    if a.min() < 0 or a.max() >= dim // 2:
        raise r.fail("anchor index out of range of the shape's parts")
    return out


def shape_predictor_npz(arrays: dict[str, npt.NDArray[np.generic]]) -> bytes:
    """Serialise the arrays to ``.npz`` bytes (deterministic order, no pickled objects)."""
    buf = io.BytesIO()
    np.savez(buf, *[], **{k: arrays[k] for k in SHAPE_ARRAYS})  # type: ignore[arg-type]
    return buf.getvalue()
