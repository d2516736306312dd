"""dlib-style jitter (``num_jitters``): slightly shifted, scaled, rotated and mirrored copies of a chip.

Same ranges as dlib's ``jitter_image`` (translation +-2%, object height 0.97-1.0 of the crop,
rotation +-3 degrees, mirror with probability 0.5), drawn from a fixed seed so that one image always
gives the same template.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["jitter_chips"]

U8 = npt.NDArray[np.uint8]
SEED = 20170101


def jitter_chips(chips: U8, n: int, seed: int = SEED) -> U8:
    """(B, S, S, 3) -> (B * (n + 1), S, S, 3): each chip followed by ``n`` jittered copies."""
    rng = np.random.default_rng(seed)
    out: list[U8] = []
    for chip in chips:
        out.append(chip)
        s = chip.shape[0]
        for _ in range(n):
            tx, ty = rng.uniform(-0.02, 0.02, 2) * (s - 6)
            scale = rng.uniform(0.97, 0.99999)
            angle = math.radians(rng.uniform(-3.0, 3.0))
            c = (s - 1) / 2.0
            # chip pixel -> source: rotate by angle and zoom out by 1/scale about the shifted centre
            k = 1.0 / scale
            ca, sa = math.cos(angle) * k, math.sin(angle) * k
            m = np.array([[ca, -sa, c + tx - ca * c + sa * c], [sa, ca, c + ty - sa * c - ca * c]])
            j = cv2.warpAffine(chip, m, (s, s), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            if rng.random() > 0.5:
                j = j[:, ::-1]
            out.append(np.ascontiguousarray(j))
    return np.stack(out) if out else chips
