"""Safe image decoding for untrusted bytes from registration stations.

Order matters: the size of the encoded bytes is checked, then the header is parsed (Pillow reads only
the header on ``open``) and its dimensions are checked against the limit *before* any pixel buffer is
allocated, so a 30000x30000 PNG of a few kilobytes (a decompression bomb) is refused cheaply. Only then
are the pixels decoded, fully (a truncated file is an error, not a half-grey picture), EXIF orientation
applied, and the result converted to 8-bit RGB or grey whatever the source (palette, RGBA, 16-bit,
CMYK, greyscale).

The limits are what a capture device produces: a 24 Mpx camera (6000x4000) at most, so a 12000x3333
PNG of 39 KB (which cost 5-9 s of CPU to decode and search for a face) is refused from its header.
Images above ``work_pixels`` are reduced by an integer factor as they are decoded (JPEG: by the
decoder's DCT scaling, so the full-size pixels never exist), which bounds the work of detection; a face
filling a fraction of a 4 Mpx frame still has far more pixels than the aligned chip needs.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import ImageTooLarge, InvalidImage

__all__ = ["ImageLimits", "decode_gray", "decode_rgb", "probe"]

# Formats a capture device can reasonably send. Anything else (SVG, PDF, EPS with Ghostscript...) is
# refused even if Pillow could read it: fewer decoders, fewer attack surfaces.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "PPM", "TIFF", "WEBP", "GIF", "JPEG2000"})

# Pillow's own bomb guard warns at 89 Mpx and raises at twice that; ours is stricter and configurable,
# so silence Pillow's and rely on the explicit check below.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageLimits:
    """Refusal limits (``max_pixels`` guards memory and CPU: decoded RGB is 3 bytes a pixel) and the
    working size: larger images are reduced to at most ``work_pixels`` as they are decoded. Three
    images of ``max_bytes`` make the server's largest legitimate request (server.config)."""

    max_bytes: int = 10 * 1024 * 1024
    max_side: int = 8000
    max_pixels: int = 25_000_000
    min_side: int = 16
    work_pixels: int = 4_000_000


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    mode: str


def _open(data: bytes, limits: ImageLimits) -> tuple[Image.Image, ImageInfo]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidImage("image must be bytes")
    if len(data) == 0:
        raise InvalidImage("image is empty (0 bytes)", reason="EMPTY_IMAGE")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"image is {len(data)} bytes; the limit is {limits.max_bytes}",
            details={"bytes": len(data), "max_bytes": limits.max_bytes},
        )
    try:
        img = Image.open(io.BytesIO(bytes(data)))
    except UnidentifiedImageError as exc:
        raise InvalidImage("bytes are not a recognised image format", reason="UNSUPPORTED_FORMAT") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"image header is corrupt: {exc}") from exc
    fmt = img.format or "?"
    if fmt not in ALLOWED_FORMATS:
        raise InvalidImage(f"image format {fmt} is not accepted", reason="UNSUPPORTED_FORMAT",
                           details={"format": fmt})
    w, h = img.size
    info = ImageInfo(fmt, w, h, img.mode)
    if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {w}x{h}; the limit is {limits.max_side} px a side and {limits.max_pixels} px",
            details={"width": w, "height": h},
        )
    if w < limits.min_side or h < limits.min_side:
        raise InvalidImage(f"image is {w}x{h}, smaller than {limits.min_side} px a side",
                           reason="IMAGE_TOO_SMALL", details={"width": w, "height": h})
    return img, info


def probe(data: bytes, limits: ImageLimits | None = None) -> ImageInfo:
    """Format and dimensions from the header only (no pixel decode). Raises like ``decode_*``."""
    return _open(data, limits or ImageLimits())[1]


def _reduction(width: int, height: int, work_pixels: int) -> int:
    """The smallest integer factor that brings ``width x height`` to at most ``work_pixels``."""
    factor = 1
    while (width // factor) * (height // factor) > work_pixels:
        factor += 1
    return factor


def _load(data: bytes, limits: ImageLimits) -> Image.Image:
    img, info = _open(data, limits)
    factor = _reduction(info.width, info.height, limits.work_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Pillow warns (not raises) on some corrupt EXIF / chunks
            if factor > 1 and img.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale directly
                img.draft(img.mode, (info.width // factor, info.height // factor))
            img.load()
            factor = _reduction(img.width, img.height, limits.work_pixels)
            if factor > 1:
                img = img.reduce(factor)
            img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, EOFError, Warning) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}", reason="CORRUPT_IMAGE") from exc
    return img


def _to_8bit(img: Image.Image) -> Image.Image:
    # 16/32-bit greyscale ("I;16", "I", "F"): scale to 8 bits by the actual range of the type.
    if img.mode in {"I;16", "I;16B", "I;16L", "I;16N"}:
        arr = np.asarray(img, dtype=np.uint16)
        return Image.fromarray((arr >> 8).astype(np.uint8), mode="L")
    if img.mode in {"I", "F"}:
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    return img


def _flatten_alpha(img: Image.Image) -> Image.Image:
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img


def decode_rgb(data: bytes, limits: ImageLimits | None = None) -> npt.NDArray[np.uint8]:
    """Decode to an ``(H, W, 3)`` uint8 RGB array, EXIF-upright. Raises ``InvalidImage``/``ImageTooLarge``."""
    img = _flatten_alpha(_to_8bit(_load(data, limits or ImageLimits())))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def decode_gray(data: bytes, limits: ImageLimits | None = None) -> npt.NDArray[np.uint8]:
    """Decode to an ``(H, W)`` uint8 grey array (ITU-R 601 luma), EXIF-upright."""
    img = _flatten_alpha(_to_8bit(_load(data, limits or ImageLimits())))
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8).copy()
