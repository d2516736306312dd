"""Switching a real gallery's face model: dlib -> the default YuNet + SFace pipeline, re-extracted
from the kept LFW images (5 fixed images of ../shared/data; skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import ModelMismatch
from engine.face import FaceConfig, FaceExtractor
from engine.records import Sample
from engine.types import FaceTemplate, Modality, ModelRef
from tests.unit.models.test_face_switch import _switch

PEOPLE = ("Aaron_Sorkin_0001", "Abbas_Kiarostami_0001", "Adam_Sandler_0001", "Al_Pacino_0001",
          "Alan_Ball_0001")


def _image(shared_data: Path, name: str) -> bytes:
    return (shared_data / "face" / "lfw" / name.rsplit("_", 1)[0] / f"{name}.jpg").read_bytes()


class Crash(Exception):
    pass


def test_switch_dlib_gallery_to_a_new_model_from_kept_images(shared_data: Path, tmp_path: Path) -> None:
    images = {name: _image(shared_data, name) for name in PEOPLE}
    old = FaceExtractor.default(FaceConfig(threads=1), embedding="dlib_resnet_v1")
    new = FaceExtractor.default(FaceConfig(threads=1), embedding="sface")
    config = EngineConfig(data_dir=tmp_path / "g", keep_images=True, modalities=("face",))
    engine = Engine.open(config, extractors=lambda kind: old)
    for name, data in images.items():
        engine.insert(name, [Sample(Modality.FACE, image=data)])
    engine.close()

    def crash_once(stage: str, done: int) -> None:
        if done == 3 and not crashed:
            crashed.append(done)
            raise Crash

    crashed: list[int] = []
    with pytest.raises(Crash):
        _switch(config, "sface", new, hook=crash_once, batch=2)
    assert crashed == [3]
    summary = _switch(config, "sface", new, hook=crash_once, batch=2)
    assert summary.reextracted == len(PEOPLE) and not summary.dropped
    assert (summary.from_model, summary.to_model) == (str(old.model), "sface_2021dec_int8bq@1+mphoto")

    engine = Engine.open(config, extractors=lambda kind: new)
    try:
        assert engine.gallery.models() == {Modality.FACE: ModelRef("sface_2021dec_int8bq", "1+mphoto")}
        for name, data in images.items():
            face = engine.gallery.get(name).templates[Modality.FACE]
            assert isinstance(face, FaceTemplate) and face.model == new.model and face.vector.size == 128
            fresh = new.extract(data).template
            assert isinstance(fresh, FaceTemplate) and float(fresh.vector @ face.vector) > 0.999
        for name in ("Adam_Sandler_0001", "Alan_Ball_0001"):
            got = engine.identify([Sample(Modality.FACE, image=images[name])], max_results=1).candidates
            assert [c.reference_id for c in got] == [name]
            assert got[0].scores[Modality.FACE] == pytest.approx(1.0, abs=1e-4)
        # the old model's templates can no longer enter or be compared
        dlib_probe = old.extract(images["Al_Pacino_0001"]).template
        with pytest.raises(ModelMismatch):
            engine.identify([Sample(Modality.FACE, template=dlib_probe)])
        audited = [e for e in engine.gallery.store.audit_entries() if e["action"] == "switch_face_model"]
        assert len(audited) == 1 and audited[0]["details"]["to"] == "sface_2021dec_int8bq@1+mphoto"
    finally:
        engine.close()
