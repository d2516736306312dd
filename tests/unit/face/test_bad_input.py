"""Untrusted bytes on the face path: every bad input is a precise error, never a library trace."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.errors import AcquisitionFailed, ImageTooLarge, InvalidImage
from engine.face import FaceExtractor
from engine.types import QualityReason


def _encode(arr: np.ndarray, fmt: str, mode: str | None = None, **kw: object) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_bomb(side: int = 30000) -> bytes:
    """A valid PNG header claiming side x side RGB pixels with a ~1 kB zlib body (never decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * (3 * side + 1) * 8, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _reason(fx: FaceExtractor, data: bytes | np.ndarray) -> str:
    with pytest.raises((InvalidImage, ImageTooLarge)) as e:
        fx.extract(data)
    return e.value.reason


def test_empty_garbage_truncated_and_unsupported(extractor: FaceExtractor) -> None:
    assert _reason(extractor, b"") == "EMPTY_IMAGE"
    assert _reason(extractor, b"this is not an image at all, just text" * 10) == "UNSUPPORTED_FORMAT"
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    jpeg, png = _encode(arr, "JPEG"), _encode(arr, "PNG")
    assert _reason(extractor, jpeg[: len(jpeg) // 2]) == "CORRUPT_IMAGE"
    assert _reason(extractor, png[: len(png) // 2]) == "CORRUPT_IMAGE"
    ico = _encode(arr[:64, :64], "ICO")  # Pillow reads it, nasname does not accept it
    assert _reason(extractor, ico) == "UNSUPPORTED_FORMAT"
    assert _reason(extractor, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n") == "UNSUPPORTED_FORMAT"
    assert _reason(extractor, np.zeros((10, 10, 3), np.uint8)) == "IMAGE_TOO_SMALL"
    assert _reason(extractor, np.zeros((50, 50, 3), np.float32)) == "UNSUPPORTED_FORMAT"  # type: ignore[arg-type]


def test_png_bomb_is_refused_from_the_header(extractor: FaceExtractor) -> None:
    bomb = _png_bomb()
    assert len(bomb) < 10_000
    tracemalloc.start()
    with pytest.raises(ImageTooLarge) as e:
        extractor.extract(bomb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert e.value.details["width"] == 30000 and e.value.details["height"] == 30000
    assert peak < 50 * 1024 * 1024  # 30000^2 RGB would be 2.7 GB


@pytest.mark.parametrize("variant", ["grey", "rgba", "grey16", "exif_rotated", "palette"])
def test_unusual_but_valid_images_decode_and_reach_detection(extractor: FaceExtractor, variant: str) -> None:
    """A blank scene in each form decodes cleanly and ends as a clear 'no face' (FTA), not a crash."""
    base = np.full((120, 160, 3), 90, np.uint8)
    if variant == "grey":
        data = _encode(base[:, :, 0], "PNG")
    elif variant == "rgba":
        data = _encode(np.dstack([base, np.full((120, 160), 128, np.uint8)]), "PNG")
    elif variant == "grey16":
        data = _encode(np.full((120, 160), 30000, np.uint16), "PNG")
    elif variant == "palette":
        data = _encode(base, "GIF")
    else:
        exif = Image.Exif()
        exif[0x0112] = 6
        data = _encode(base, "JPEG", exif=exif.tobytes())
    with pytest.raises(AcquisitionFailed) as e:
        extractor.extract(data)
    assert e.value.reasons == (QualityReason.NO_FACE.value,)
    assert e.value.details["faces_found"] == 0
