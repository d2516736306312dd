from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageTooLarge, InvalidImage
from engine.imageio import ImageLimits, decode_gray, decode_rgb, probe


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_bomb(side: int) -> bytes:
    """A valid PNG header claiming side x side grey pixels, with a tiny compressed body (~kilobytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 64, 9)  # only the first rows: decoding would need more
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_rgb_and_gray_round_trip() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = decode_rgb(_encode(Image.fromarray(arr), "PNG"))
    assert out.shape == (40, 60, 3) and np.array_equal(out, arr)
    gray = decode_gray(_encode(Image.fromarray(arr), "PNG"))
    assert gray.shape == (40, 60) and gray.dtype == np.uint8


def test_grey_rgba_and_16bit_become_8bit_rgb() -> None:
    grey = Image.fromarray(np.full((30, 30), 100, np.uint8))
    assert decode_rgb(_encode(grey, "PNG"))[0, 0].tolist() == [100, 100, 100]
    rgba = Image.fromarray(np.dstack([np.full((30, 30, 3), 50, np.uint8), np.full((30, 30), 255, np.uint8)]))
    assert decode_rgb(_encode(rgba, "PNG"))[5, 5].tolist() == [50, 50, 50]
    deep = Image.fromarray(np.full((30, 30), 40000, np.uint16))
    assert decode_gray(_encode(deep, "PNG"))[0, 0] == 40000 >> 8


def test_exif_orientation_is_applied() -> None:
    arr = np.zeros((20, 40, 3), np.uint8)  # wide image, rotated by EXIF 6 -> tall
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_rgb(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.shape[:2] == (40, 20)


def test_empty_and_garbage_are_precise_errors() -> None:
    with pytest.raises(InvalidImage) as e:
        decode_rgb(b"")
    assert e.value.reason == "EMPTY_IMAGE"
    with pytest.raises(InvalidImage) as e:
        decode_rgb(b"this is not an image at all" * 10)
    assert e.value.reason == "UNSUPPORTED_FORMAT"


def test_truncated_jpeg_and_png_are_refused() -> None:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG"):
        data = _encode(img, fmt)
        with pytest.raises(InvalidImage):
            decode_rgb(data[: len(data) // 2])


def test_decompression_bomb_refused_from_header() -> None:
    bomb = _png_bomb(30000)
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge) as e:
        probe(bomb)
    assert e.value.details["width"] == 30000
    with pytest.raises(ImageTooLarge):
        decode_gray(bomb)


def test_byte_limit_and_tiny_images() -> None:
    data = _encode(Image.fromarray(np.zeros((64, 64), np.uint8)), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_gray(data, ImageLimits(max_bytes=10))
    with pytest.raises(InvalidImage) as e:
        decode_gray(_encode(Image.fromarray(np.zeros((4, 4), np.uint8)), "PNG"))
    assert e.value.reason == "IMAGE_TOO_SMALL"


def test_unsupported_format_refused() -> None:
    data = _encode(Image.fromarray(np.zeros((32, 32), np.uint8)), "ICO")
    with pytest.raises(InvalidImage) as e:
        decode_gray(data)
    assert e.value.reason == "UNSUPPORTED_FORMAT"


def test_a_wide_image_beyond_any_capture_device_is_refused_from_its_header() -> None:
    # issue 18: a 39 KB PNG of 12000x3333 was decoded and searched for a face for 5-9 s of CPU
    wide = _encode(Image.new("L", (12000, 3333)), "PNG")
    assert len(wide) < 100_000
    with pytest.raises(ImageTooLarge) as e:
        decode_rgb(wide)
    assert (e.value.details["width"], e.value.details["height"]) == (12000, 3333)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_are_reduced_to_the_working_size(fmt: str) -> None:
    y, x = np.mgrid[0:2000, 0:3000]
    arr = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)
    out = decode_rgb(_encode(Image.fromarray(arr), fmt))
    h, w, _ = out.shape
    assert h * w <= ImageLimits().work_pixels and (w, h) == (1500, 1000)  # aspect kept, factor 2
    small = decode_rgb(_encode(Image.fromarray(arr[:1000, :1500]), fmt))
    assert small.shape == (1000, 1500, 3)  # within the working size: untouched
