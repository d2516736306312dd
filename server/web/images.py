"""Images for the console: stored samples re-encoded for display, and unwrapped irises.

Stored images are decoded through ``engine.imageio`` (size and decompression-bomb limits) and
re-encoded, so the browser only ever receives a plain JPEG/PNG of bounded size, stripped of metadata
(EXIF may carry capture times, device serials or GPS positions). The unwrapped iris is the "rubber
sheet" the iris extractor encodes (``engine.iris``: segmentation, then normalisation), shown so the
adjudicator can compare texture bands directly; masked points (eyelids, lashes, reflections) are drawn
in a flat colour.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from engine.errors import NasnameError
from engine.imageio import decode_gray, decode_rgb

__all__ = ["MAX_SIDE", "display_jpeg", "unwrapped_png"]

MAX_SIDE = 640
_MASKED = (40, 90, 160)  # blue-grey: clearly "no data", never mistaken for iris texture


def display_jpeg(raw: bytes) -> bytes | None:
    """The image as a JPEG no larger than ``MAX_SIDE`` px a side; None when it cannot be decoded."""
    try:
        im = Image.fromarray(decode_rgb(raw))
    except NasnameError:
        return None
    im.thumbnail((MAX_SIDE, MAX_SIDE))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def unwrapped_png(raw: bytes) -> bytes | None:
    """The normalised iris strip (radial rows x angular columns, pupil edge on top) as a PNG, rows
    doubled for legibility; None when no iris can be segmented in the image."""
    from engine.iris.normalization import normalize
    from engine.iris.segmentation import segment

    try:
        norm = normalize(segment(decode_gray(raw)))
    except (NasnameError, ValueError, ArithmeticError):
        return None
    grey = np.clip((norm.image + 2.5) * (255.0 / 5.0), 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[~norm.mask] = _MASKED
    rgb = np.repeat(rgb, 2, axis=0)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()
