"""Image inputs through the service: a real Engine with the real face extractor (face modality only).

Bad inputs are synthetic bytes; the two real-image tests use LFW photos through the ``shared_data``
fixture (skipped with the reason when ../shared/data is absent).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from engine.config import EngineConfig
from engine.engine import Engine
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.auth import Role
from server.client import error_info, error_reason, image_sample
from tests.integration.test_service_support import Service, start_service

SC = grpc.StatusCode
PERSON = "Abdullah_Gul"  # LFW: 13 photos of one person
OTHER = "Abel_Pacheco"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp("img") / "data"
    cfg = EngineConfig(data_dir=data_dir, modalities=("face",), snapshot_every=0)
    s = start_service(Engine.open(cfg))
    yield s
    s.stop()


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def fails(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        call()  # type: ignore[operator]
    return exc.value


@pytest.mark.parametrize(("image", "reason"), [
    (b"", "EMPTY_IMAGE"),
    (b"this is not an image at all", "UNSUPPORTED_FORMAT"),
    (_jpeg(np.full((480, 640, 3), 128, np.uint8))[:600], None),  # truncated JPEG
    (_png_claiming(40_000, 40_000), "IMAGE_TOO_LARGE"),
])
def test_bad_images_are_invalid_argument(service: Service, image: bytes, reason: str | None) -> None:
    err = fails(lambda: service.client(Role.STATION).identify([image_sample("face", image)]))
    assert err.code() == SC.INVALID_ARGUMENT
    info = error_info(err)
    assert info is not None and info.reason
    if reason is not None:
        assert info.reason == reason


def test_no_face_found(service: Service) -> None:
    blank = _jpeg(np.full((480, 640, 3), 128, np.uint8))
    err = fails(lambda: service.client(Role.STATION).enroll([image_sample("face", blank)]))
    assert err.code() == SC.INVALID_ARGUMENT
    assert error_reason(err) in {"NO_BIOMETRIC_FOUND", "QUALITY_CHECK_FAILED"}
    info = error_info(err)
    assert info is not None and "NO_FACE" in info.metadata.get("quality_reasons", "")


def test_modality_not_served(service: Service) -> None:
    err = fails(lambda: service.client(Role.STATION).identify([image_sample("iris_left", b"\x89PNG")]))
    assert err.code() == SC.INVALID_ARGUMENT and error_reason(err)


def test_enroll_and_identify_real_photos(service: Service, shared_data: Path) -> None:
    photos = sorted((shared_data / "face" / "lfw" / PERSON).glob("*.jpg"))
    station = service.client(Role.STATION)
    first = station.enroll([image_sample("face", photos[0].read_bytes())], reference_id="lfw-1")
    assert first.outcome == pb.ENROLL_OUTCOME_ENROLLED
    [sample] = first.samples
    assert sample.model.model_id and sample.HasField("quality") and 0.0 <= sample.quality.score <= 1.0
    found = station.identify([image_sample("face", photos[1].read_bytes())])
    assert [c.reference_id for c in found.candidates] == ["lfw-1"]
    assert found.candidates[0].scores[0].similarity > 0.5
    # verify's decision depends on the face calibration shipped with the model; the ordering does not
    same = station.verify("lfw-1", [image_sample("face", photos[2].read_bytes())])
    other = sorted((shared_data / "face" / "lfw" / OTHER).glob("*.jpg"))[0]
    different = station.verify("lfw-1", [image_sample("face", other.read_bytes())])
    assert same.fused > different.fused and not different.match
    assert same.scores[0].similarity > different.scores[0].similarity


def test_three_frames_one_without_a_face(service: Service, shared_data: Path) -> None:
    """A station's three frames in one call: the frame without a face is dropped and said so; the two
    photos are fused into one template (``face_frames`` default "fuse"), both marked used; every frame
    gets its own result, in request order."""
    # not PERSON: enrolled by the other test of this module, this one would be held as a duplicate
    photos = sorted((shared_data / "face" / "lfw" / "Andre_Agassi").glob("*.jpg"))
    blank = _jpeg(np.full((480, 640, 3), 128, np.uint8))
    frames = [image_sample("face", photos[3].read_bytes()), image_sample("face", blank),
              image_sample("face", photos[4].read_bytes())]
    station = service.client(Role.STATION)
    enrolled = station.enroll(frames, reference_id="lfw-3frames")
    assert enrolled.outcome == pb.ENROLL_OUTCOME_ENROLLED
    used, refused_ = pb.SAMPLE_USE_USED, pb.SAMPLE_USE_REFUSED
    assert [s.use for s in enrolled.samples] == [used, refused_, used]
    refused = enrolled.samples[1]
    assert refused.error_reason == "NO_BIOMETRIC_FOUND" and "NO_FACE" in refused.quality.reasons
    assert refused.quality.instructions and not refused.quality.ok
    probe = [image_sample("face", photos[5].read_bytes()), image_sample("face", photos[6].read_bytes())]
    found = station.identify(probe, reference_ids=["lfw-3frames"])
    assert [c.reference_id for c in found.candidates] == ["lfw-3frames"] and len(found.samples) == 2
    assert station.verify("lfw-3frames", [*probe, image_sample("face", blank)]).match
    # no usable frame at all: the call fails as a single refused photo does, and stores nothing
    err = fails(lambda: station.enroll([image_sample("face", blank)] * 3, reference_id="lfw-none"))
    assert err.code() == SC.INVALID_ARGUMENT and error_reason(err) == "NO_BIOMETRIC_FOUND"
    assert fails(lambda: service.client(Role.ADMIN).get_record("lfw-none")).code() == SC.NOT_FOUND
