"""Which models a station's templates may be of, over the wire (issue 18 item 6).

A station once locked an unused modality to a made-up model: an Insert of an IRIS_RIGHT template of
``bogus@0`` succeeded, and from then on every real iris capture was refused with MODEL_MISMATCH, even
after that record was deleted and the server restarted. Now a template must be of a model the server
knows (its extractor's model from the registry and manifests, or one it was given calibrations for),
and a modality's model is released when its last template goes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.extractors import template_model
from engine.fusion import Fusion
from engine.types import IrisTemplate, Modality, ModelRef
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.auth import Role
from server.client import error_info, error_reason, image_sample, template_sample
from tests.integration.test_service_support import MODEL, Service, face, make_fusion, start_service, unit

SC = grpc.StatusCode
CALIBRATED_IRIS = ModelRef("site-iris", "3")  # known to this engine through the calibrations it is given


def iris(model: ModelRef, seed: int) -> list[pb.Sample]:
    rng = np.random.default_rng(seed)
    return [template_sample("iris_right", IrisTemplate(rng.integers(0, 256, 256, dtype=np.uint8),
                                                       np.full(256, 255, np.uint8), 256, model))]


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def serve(data_dir: Path, cal_dir: Path) -> Service:
    make_fusion(cal_dir)
    fusion = Fusion.for_models({Modality.FACE: MODEL, Modality.IRIS_RIGHT: CALIBRATED_IRIS}, cal_dir)
    cfg = EngineConfig(data_dir=data_dir, modalities=("face", "iris_left", "iris_right"), snapshot_every=0)
    return start_service(Engine.open(cfg, fusion=fusion))


@pytest.fixture()
def service(data_dir: Path, tmp_path: Path) -> Iterator[Service]:
    s = serve(data_dir, tmp_path / "cal")
    yield s
    s.stop()


def models(s: Service) -> dict[str, str]:
    return dict(s.client(Role.ADMIN).stats().models)


def test_template_of_an_unknown_model_is_refused_and_fixes_nothing(service: Service) -> None:
    station = service.client(Role.STATION)
    with pytest.raises(grpc.RpcError) as err:
        station.insert(iris(ModelRef("bogus", "0"), 1), reference_id="B-1")
    assert err.value.code() == SC.INVALID_ARGUMENT and error_reason(err.value) == "UNKNOWN_MODEL"
    message = err.value.details() or ""
    gabor = str(template_model("iris"))
    assert "bogus@0" in message and "does not know" in message and gabor in message
    info = error_info(err.value)
    assert info is not None and info.metadata["template_model"] == "bogus@0"
    assert "iris_right" not in models(service)
    with pytest.raises(grpc.RpcError) as err:  # enroll too, and for any modality
        station.enroll(face(unit(np.random.default_rng(2)), ModelRef("bogus", "0")))
    assert err.value.code() == SC.INVALID_ARGUMENT and error_reason(err.value) == "UNKNOWN_MODEL"
    # the server's own iris model and a calibrated one are accepted
    station.insert(iris(template_model("iris"), 3), reference_id="I-1")
    assert models(service)["iris_right"] == gabor


def test_model_is_released_when_its_last_template_goes_also_after_restart(
        service: Service, data_dir: Path, tmp_path: Path) -> None:
    station, admin = service.client(Role.STATION), service.client(Role.ADMIN)
    station.insert(iris(CALIBRATED_IRIS, 1), reference_id="S-1")
    station.insert(iris(CALIBRATED_IRIS, 2), reference_id="S-2")
    with pytest.raises(grpc.RpcError) as err:
        station.insert(iris(template_model("iris"), 3), reference_id="G-1")
    assert err.value.code() == SC.FAILED_PRECONDITION and error_reason(err.value) == "MODEL_MISMATCH"
    admin.delete("S-1")
    assert models(service)["iris_right"] == str(CALIBRATED_IRIS)  # S-2 still holds one
    admin.delete("S-2")
    assert "iris_right" not in models(service)
    service.stop()
    restarted = serve(data_dir, tmp_path / "cal2")
    try:
        assert "iris_right" not in models(restarted)
        restarted.client(Role.STATION).insert(iris(template_model("iris"), 3), reference_id="G-1")
        assert models(restarted)["iris_right"] == str(template_model("iris"))
    finally:
        restarted.stop()


@pytest.mark.shared_data
def test_real_iris_image_is_accepted_after_the_release(service: Service, shared_data: Path) -> None:
    station, admin = service.client(Role.STATION), service.client(Role.ADMIN)
    station.insert(iris(CALIBRATED_IRIS, 1), reference_id="S-1")
    photo = (shared_data / "iris" / "casia1" / "001" / "001_1_1.jpg").read_bytes()
    with pytest.raises(grpc.RpcError) as err:
        station.insert([image_sample("iris_right", photo)], reference_id="E-1")
    assert error_reason(err.value) == "MODEL_MISMATCH"
    admin.delete("S-1")
    station.insert([image_sample("iris_right", photo)], reference_id="E-1")
    assert models(service)["iris_right"] == str(template_model("iris"))
