"""The vectorised predictor equals a plain scalar transcription of dlib's shape_predictor."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.face.landmarks import ShapePredictor, similarity_2x2


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """dlib's find_similarity_transform (Umeyama with an SVD), 2x2 part only."""
    ms, md = src.mean(0), dst.mean(0)
    sigma = ((src - ms) ** 2).sum() / len(src)
    cov = (dst - md).T @ (src - ms) / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    if np.linalg.det(cov) < 0:
        s[1, 1] = -1
    r = u @ s @ vt
    c = np.trace(np.diag(d) @ s) / sigma
    return c * r


def _reference(p: ShapePredictor, img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    h, w = img.shape[:2]
    init = p.initial.reshape(-1, 2)
    cur = p.initial.copy()
    for c in range(p.idx1.shape[0]):
        m = _umeyama(init.astype(np.float64), cur.reshape(-1, 2).astype(np.float64)).astype(np.float32)
        feats = np.zeros(p.anchor.shape[1], np.float32)
        for i in range(p.anchor.shape[1]):
            d = p.deltas[c, i]
            a = p.anchor[c, i]
            x = np.float32(m[0, 0] * d[0] + m[0, 1] * d[1]) + cur[2 * a]
            y = np.float32(m[1, 0] * d[0] + m[1, 1] * d[1]) + cur[2 * a + 1]
            ix = int(np.floor(left + (right - left) * float(x) + 0.5))
            iy = int(np.floor(top + (bottom - top) * float(y) + 0.5))
            if 0 <= ix < w and 0 <= iy < h:
                feats[i] = int(img[iy, ix].astype(int).sum()) // 3
        for t in range(p.idx1.shape[1]):
            node = 0
            while node < p.idx1.shape[2]:
                diff = np.float32(feats[p.idx1[c, t, node]] - feats[p.idx2[c, t, node]])
                node = 2 * node + 1 if diff > p.thresh[c, t, node] else 2 * node + 2
            cur = (cur + p.leaves[c, t, node - p.idx1.shape[2]]).astype(np.float32)  # one tree at a time
    pts = cur.reshape(-1, 2).astype(np.float64)
    return np.stack([np.floor(left + (right - left) * pts[:, 0] + 0.5),
                     np.floor(top + (bottom - top) * pts[:, 1] + 0.5)], 1).astype(np.int64)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(7)
    img = cv2.GaussianBlur(rng.integers(0, 256, (180, 220, 3), dtype=np.uint8), (0, 0), 2.5)
    return np.asarray(cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX), dtype=np.uint8)


def test_vectorised_equals_scalar_dlib_transcription(predictor: ShapePredictor, image: np.ndarray) -> None:
    boxes = [(40, 30, 139, 129), (100, 60, 179, 139), (-20, -10, 79, 89), (150, 120, 249, 219)]  # 2 off-image
    got = predictor.predict(image, boxes)
    assert got.shape == (4, 5, 2) and got.dtype == np.int64
    for b, pts in zip(boxes, got, strict=True):
        assert np.array_equal(pts, _reference(predictor, image, b))


def test_closed_form_similarity_equals_umeyama() -> None:
    rng = np.random.default_rng(3)
    src = rng.normal(size=(6, 5, 2))
    dst = src @ np.array([[0.8, -0.3], [0.3, 0.8]]).T + rng.normal(scale=0.05, size=(6, 5, 2)) + 4.0
    got = similarity_2x2(src, dst)
    for i in range(6):
        assert np.allclose(got[i], _umeyama(src[i], dst[i]), atol=1e-12)


def test_no_boxes_and_grey_images(predictor: ShapePredictor, image: np.ndarray) -> None:
    assert predictor.predict(image, np.zeros((0, 4))).shape == (0, 5, 2)
    grey = image.mean(axis=2).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    box = [(40, 30, 139, 129)]
    assert np.array_equal(predictor.predict(grey, box), predictor.predict(rgb, box))
