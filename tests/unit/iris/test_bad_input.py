"""Bad input on the iris path: precise errors, no crash, bombs refused before decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.errors import AcquisitionFailed, ImageTooLarge, InvalidImage
from engine.iris.extractor import IrisExtractor
from engine.iris.synthetic import SyntheticEyes
from engine.types import QualityReason


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_empty_bytes(iris_extractor: IrisExtractor) -> None:
    with pytest.raises(InvalidImage) as e:
        iris_extractor.extract(b"")
    assert e.value.reason == "EMPTY_IMAGE"


def test_not_an_image(iris_extractor: IrisExtractor) -> None:
    with pytest.raises(InvalidImage):
        iris_extractor.extract(b"%PDF-1.4 this is not an eye")


def test_truncated_jpeg(iris_extractor: IrisExtractor, eyes: SyntheticEyes) -> None:
    data = _jpeg(eyes.capture(1, 0))
    with pytest.raises(InvalidImage) as e:
        iris_extractor.extract(data[: len(data) // 2])
    assert e.value.reason == "CORRUPT_IMAGE"


def test_decompression_bomb_refused_before_decode(iris_extractor: IrisExtractor) -> None:
    # a valid PNG header claiming 30000 x 30000 pixels, with almost no data behind it
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(
        b"IEND", b"")
    with pytest.raises(ImageTooLarge):
        iris_extractor.extract(bomb)


def test_sixteen_bit_png_is_accepted(iris_extractor: IrisExtractor, eyes: SyntheticEyes) -> None:
    img = eyes.capture(2, 0)
    wide = img.astype(np.uint16) * 257
    ex16 = iris_extractor.extract(_png(wide))
    ex8 = iris_extractor.extract(_png(img))
    assert np.array_equal(np.unpackbits(ex16.template.code), np.unpackbits(ex8.template.code))


def test_exif_rotated_jpeg_is_made_upright(iris_extractor: IrisExtractor, eyes: SyntheticEyes) -> None:
    img = eyes.capture(3, 0)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotated 180 degrees
    Image.fromarray(img[::-1, ::-1].copy()).save(buf, format="JPEG", quality=95, exif=exif)
    upright = iris_extractor.extract(_jpeg(img)).template
    rotated = iris_extractor.extract(buf.getvalue()).template
    same = np.mean(np.unpackbits(upright.code) == np.unpackbits(rotated.code))
    assert same > 0.8


def test_rgb_array_and_bytes_agree(iris_extractor: IrisExtractor, eyes: SyntheticEyes) -> None:
    img = eyes.capture(4, 0)
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    a = iris_extractor.extract(rgb).template
    b = iris_extractor.extract(_png(img)).template
    assert np.array_equal(a.code, b.code) and np.array_equal(a.mask, b.mask)


@pytest.mark.parametrize("bad", [np.zeros((280, 320), np.float32), np.zeros((280, 320, 2), np.uint8),
                                 np.zeros((8, 8), np.uint8), "not bytes"])
def test_bad_arrays(iris_extractor: IrisExtractor, bad: object) -> None:
    with pytest.raises(InvalidImage):
        iris_extractor.extract(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("fill", [0, 128, 255])
def test_blank_image_has_no_iris(iris_extractor: IrisExtractor, fill: int) -> None:
    with pytest.raises(AcquisitionFailed) as e:
        iris_extractor.extract(np.full((280, 320), fill, np.uint8))
    assert QualityReason.NO_IRIS.value in e.value.reasons


def test_face_like_clutter_has_no_iris(iris_extractor: IrisExtractor) -> None:
    rng = np.random.default_rng(7)
    noise = (rng.random((280, 320)) * 255).astype(np.uint8)
    try:
        q = iris_extractor.extract(noise).quality
    except AcquisitionFailed as e:
        assert QualityReason.NO_IRIS.value in e.reasons
    else:
        assert not q.ok
