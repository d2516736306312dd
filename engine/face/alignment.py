"""Face alignment: dlib's face chip (``get_face_chip_details`` + ``extract_image_chip``) and the
ArcFace-style similarity warp for dropped-in models.

dlib chip (bit-identical to dlib on normal-size faces):
1. template points ``(padding + p) / (1 + 2 padding) * size`` (p from ``DLIB_CHIP_TEMPLATE``);
2. least-squares similarity T from the template to the (integer) landmarks;
3. angle = atan2(T_m (1, 0)), scale = |T_m (1, 0)|, centre = T(size/2, size/2); the chip rectangle is
   the square of side ``size * scale`` around it, corners at +-(side - 1) / 2, rotated by angle;
4. chip pixel (c, r) samples the image at the affine map sending (0, 0), (size-1, 0), (0, size-1)
   to the rotated rectangle's tl, tr, bl corners; bilinear, 0 outside, truncated to uint8.
When the rectangle is more than twice the chip size (faces over ~300 px) dlib samples from a
``pyramid_down<2>`` level instead; here a ``cv2.pyrDown`` level (same 5-tap filter, its own pixel
grid) stands in, so very large faces are close to but not bit-identical with dlib's chip.

ArcFace-style (``method: similarity``) with ``points: yunet5`` (YuNet's eyes, nose tip, mouth
corners): the least-squares similarity of all five points onto the template (OpenCV's ``alignCrop``).
With dlib's points (``dlib5``): dlib's 5 points are eye corners + nose base, not ArcFace's eye
centres + nose tip + mouth corners. We use the two eye centres (mean of each eye's corners), which
correspond exactly, and the nose base, whose ArcFace-space position is derived from dlib's own mean
face: the similarity taking dlib's template eye centres onto the ArcFace eye centres carries dlib's
template nose base to (~55.9, ~78.9) in the 112x112 ArcFace frame (below ArcFace's nose tip at 71.7,
above the mouth at 92.3, as the base of the nose is). The mouth points are unused.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError
from engine.face.landmarks import similarity_2x2

__all__ = ["ARCFACE_112", "align", "arcface_targets", "dlib_chip", "dlib_chip_transform", "eye_centres"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

DLIB_TEMPLATE = np.array([
    (0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475)], dtype=np.float64)

# The standard ArcFace (InsightFace) 112x112 template: left eye, right eye, nose tip, mouth corners.
ARCFACE_112 = np.array([(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
                        (41.5493, 92.3655), (70.7299, 92.2041)], dtype=np.float64)


def eye_centres(pts: F64) -> F64:
    """(.., 5, 2) dlib points -> (.., 3, 2): image-left eye centre, image-right eye centre, nose base."""
    left = (pts[..., 2, :] + pts[..., 3, :]) / 2.0
    right = (pts[..., 0, :] + pts[..., 1, :]) / 2.0
    return np.stack([left, right, pts[..., 4, :]], axis=-2)


def _fit(src: F64, dst: F64) -> tuple[F64, F64]:
    m = similarity_2x2(src[None], dst[None])[0]
    t = dst.mean(axis=0) - m @ src.mean(axis=0)
    return m, t


def arcface_targets(template: npt.ArrayLike) -> F64:
    """(3, 2) targets for (left eye centre, right eye centre, nose base) in a 5-point ArcFace-order
    template: the eyes as given, the nose base carried over from dlib's mean face (module doc)."""
    tpl = np.asarray(template, dtype=np.float64).reshape(5, 2)
    dl = eye_centres(DLIB_TEMPLATE)
    m, t = _fit(dl[:2], tpl[:2])
    return np.vstack([tpl[:2], m @ dl[2] + t])


def dlib_chip_transform(landmarks: npt.ArrayLike, size: int = 150, padding: float = 0.25) -> F64:
    """The 2x3 affine map from chip pixel (c, r, 1) to image coordinates (dlib's geometry)."""
    to = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    frm = (padding + DLIB_TEMPLATE) / (2 * padding + 1) * size
    m, t = _fit(frm, to)
    angle = math.atan2(m[1, 0], m[0, 0])
    scale = math.hypot(m[0, 0], m[1, 0])
    centre = m @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2.0
    ca, sa = math.cos(angle), math.sin(angle)
    rot = np.array([[ca, -sa], [sa, ca]])
    tl = centre + rot @ np.array([-half, -half])
    tr = centre + rot @ np.array([half, -half])
    bl = centre + rot @ np.array([-half, half])
    a = np.column_stack([(tr - tl) / (size - 1), (bl - tl) / (size - 1), tl])
    return a


def _bilinear(img: U8, a: F64, size: int) -> U8:
    """dlib's ``transform_image`` with ``interpolate_bilinear``: 0 outside, truncation to uint8."""
    h, w = img.shape[:2]
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float64)
    x = a[0, 0] * cc + a[0, 1] * rr + a[0, 2]
    y = a[1, 0] * cc + a[1, 1] * rr + a[1, 2]
    x0, y0 = np.floor(x), np.floor(y)
    ok = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    xi = np.clip(x0, 0, max(w - 2, 0)).astype(np.intp)
    yi = np.clip(y0, 0, max(h - 2, 0)).astype(np.intp)
    lr = (x - x0)[..., None]
    tb = (y - y0)[..., None]
    src = img if img.ndim == 3 else img[:, :, None]
    f = src.astype(np.float64)
    tl, tr = f[yi, xi], f[yi, np.minimum(xi + 1, w - 1)]
    bl, br = f[np.minimum(yi + 1, h - 1), xi], f[np.minimum(yi + 1, h - 1), np.minimum(xi + 1, w - 1)]
    val = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    val = np.where(ok[..., None], val, 0.0)
    out: U8 = np.clip(val, 0, 255).astype(np.uint8)
    return out if img.ndim == 3 else out[..., 0]


def dlib_chip(img: U8, landmarks: npt.ArrayLike, size: int = 150, padding: float = 0.25) -> U8:
    """The (size, size, 3) uint8 face chip dlib would extract for these 5 landmarks."""
    a = dlib_chip_transform(landmarks, size, padding)
    # dlib descends a pyramid_down<2> while the halved rectangle still has more pixels than the chip.
    side = math.hypot(a[0, 0], a[1, 0]) * (size - 1) + 1
    while (side / 2.0) ** 2 > size * size and min(img.shape[:2]) > 2 * size:
        img = np.asarray(cv2.pyrDown(img), dtype=np.uint8)
        a = a / 2.0
        side /= 2.0
    return _bilinear(img, a, size)


def align(img: U8, landmarks: npt.ArrayLike, alignment: dict[str, object]) -> U8:
    """Chip for a model's manifest ``alignment`` entry (``dlib_chip`` or ``similarity``)."""
    method = alignment.get("method")
    size = int(alignment.get("size", 150))  # type: ignore[call-overload]
    if method == "dlib_chip":
        return dlib_chip(img, landmarks, size, float(alignment.get("padding", 0.25)))  # type: ignore[arg-type]
    if method == "similarity":
        raw = alignment.get("template", ARCFACE_112.tolist())
        template = np.asarray(raw, dtype=np.float64).reshape(-1, 2)
        pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
        if alignment.get("points") == "yunet5":
            # landmarks already in ArcFace order (YuNet): all 5 points onto the template, least
            # squares, as OpenCV's ``FaceRecognizerSF.alignCrop``
            src, dst = pts, template
        else:
            # dlib points. 3-point template: targets for (left eye centre, right eye centre, nose
            # base) given directly (e.g. MobileFaceNet's manifest); 5 points: an ArcFace-order
            # template, nose base derived as above.
            dst = template if template.shape[0] == 3 else arcface_targets(template)
            src = eye_centres(pts)
        m, t = _fit(src, dst)
        warp = np.column_stack([m, t])
        chip = cv2.warpAffine(img, warp, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return np.asarray(chip, dtype=np.uint8)
    raise ConfigurationError(f"unknown alignment method {method!r} in the model manifest")
