"""Face model selection and ``FaceSwitchJob`` on synthetic samples (a fake extractor maps image bytes
to a fixed random template, so no ONNX model runs here; tests/integration/test_face_switch.py runs
the real pipeline with a tiny ArcFace model on LFW images)."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.datadir import DataDir
from engine.engine import Engine, _default_loader
from engine.errors import ConfigurationError, Conflict, ModelMismatch
from engine.extractor import Extraction
from engine.extractors import check_face_model, load_extractor, require_installed
from engine.models import cli
from engine.models.face_switch import FaceSwitchJob, SwitchSummary
from engine.records import Sample
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Quality

OLD = ModelRef("fake_old", "1")
NEW = ModelRef("fake_new", "2")


class FakeFace:
    """Image bytes -> a fixed random unit vector (seeded by the bytes and the model), counting calls."""

    kind = "face"

    def __init__(self, model: ModelRef, dim: int) -> None:
        self.model = model
        self.dim = dim
        self.calls = 0

    def extract(self, image: bytes | np.ndarray) -> Extraction:
        self.calls += 1
        seed = int.from_bytes(hashlib.sha256(bytes(image) + str(self.model).encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)
        return Extraction(FaceTemplate(v / np.linalg.norm(v), self.model), Quality(0.9, True))


def _iris(i: int) -> IrisTemplate:
    rng = np.random.default_rng(i)
    return IrisTemplate(rng.integers(0, 256, 64, dtype=np.uint8), np.full(64, 255, np.uint8), 8,
                        ModelRef("iris_test", "1"))


def _gallery(tmp_path: Path, n: int, *, keep_images: bool = True) -> EngineConfig:
    config = EngineConfig(data_dir=tmp_path / "g", keep_images=keep_images, modalities=("face", "iris_left"))
    old = FakeFace(OLD, 16)
    iris_model = FakeFace(ModelRef("iris_test", "1"), 16)  # only its model is asked for (known models)
    engine = Engine.open(config, extractors=lambda kind: old if kind == "face" else iris_model)
    try:
        for i in range(n):
            samples = [Sample(Modality.FACE, image=f"face-{i}".encode())]
            if i % 3 == 0:
                samples.append(Sample(Modality.IRIS_LEFT, template=_iris(i)))
            engine.insert(f"R{i}", samples)
        engine.insert("IRIS-ONLY", [Sample(Modality.IRIS_LEFT, template=_iris(99))])
    finally:
        engine.close()
    return config


def test_face_model_setting_is_validated_and_read_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert EngineConfig().face_model == "sface"  # YuNet + SFace is the default pipeline
    with pytest.raises(ConfigurationError, match="face_model"):
        EngineConfig(face_model="Mobile Face Net")
    monkeypatch.delenv("NASNAME_CONFIG", raising=False)
    monkeypatch.setenv("NASNAME_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NASNAME_FACE_MODEL", "mobilefacenet")
    assert EngineConfig.load().face_model == "mobilefacenet"


def test_opt_in_model_must_be_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASNAME_MODEL_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match="nasname models mobilefacenet --accept-licence") as err:
        load_extractor("face", "mobilefacenet")
    assert err.value.reason == "MODEL_NOT_INSTALLED"
    with pytest.raises(ConfigurationError, match="not a face embedding"):
        require_installed("dlib_mmod")
    with pytest.raises(ConfigurationError, match="no selectable model"):
        load_extractor("iris", "mobilefacenet")


class FakeFaceFactory:
    """Stands in for ``FaceExtractor`` in ``engine.extractors.KINDS``: records the embedding asked for."""

    asked: ClassVar[list[str]] = []

    @classmethod
    def default(cls, *, embedding: str) -> FakeFace:
        cls.asked.append(embedding)
        return FakeFace(ModelRef(embedding, "1"), 4)


def test_load_extractor_passes_the_model_name_and_caches_per_kind_and_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import extractors

    monkeypatch.setitem(extractors.KINDS, "face", (__name__, "FakeFaceFactory"))
    monkeypatch.setattr(extractors, "_cache", {})
    FakeFaceFactory.asked = []
    first = load_extractor("face")
    assert load_extractor("face", "sface") is first
    assert first.model == ModelRef("sface", "1")
    assert FakeFaceFactory.asked == ["sface"]
    assert _default_loader("face", "sface") is first  # what Engine uses with config.face_model
    dlib = load_extractor("face", "dlib_resnet_v1")  # still selectable, a separate extractor
    assert dlib is not first and dlib.model == ModelRef("dlib_resnet_v1", "1")
    assert FakeFaceFactory.asked == ["sface", "dlib_resnet_v1"]
    with pytest.raises(ConfigurationError, match="unknown model"):
        load_extractor("face", "no_such_model")


def test_engine_refuses_a_gallery_of_another_face_model(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    plain_dlib = ModelRef("dlib_resnet_v1", "1")  # dlib's model without mirror averaging: another space
    config = EngineConfig(data_dir=tmp_path / "g", modalities=("face",))
    engine = Engine.open(config, extractors=lambda kind: FakeFace(plain_dlib, 128))
    engine.insert("R0", [Sample(Modality.FACE, image=b"face-0")])
    engine.close()
    with pytest.raises(ModelMismatch) as err:
        Engine.open(config)  # default extractors: face_model sface makes sface_2021dec_int8bq@1+mphoto
    text = str(err.value)
    assert "templates of dlib_resnet_v1@1," in text and "sface_2021dec_int8bq@1+mphoto" in text
    assert f"nasname models switch-face --data-dir {config.data_dir} --to sface" in text
    assert err.value.reason == "FACE_MODEL_MISMATCH"
    dlib_config = dataclasses.replace(config, face_model="dlib_resnet_v1")
    with pytest.raises(ModelMismatch, match="dlib_resnet_v1@1\\+mphoto"):  # dlib's default views differ too
        Engine.open(dlib_config)
    Engine.open(_gallery(tmp_path / "foreign", 1)).close()  # precomputed templates of an unknown model
    check_face_model("dlib_resnet_v1", {Modality.IRIS_LEFT: ModelRef("iris_test", "1")}, tmp_path)  # no face
    monkeypatch.setenv("NASNAME_MODEL_DIR", str(tmp_path / "empty"))
    with pytest.raises(ConfigurationError, match="not installed"):  # opt-in and absent: refused at open
        Engine.open(EngineConfig(data_dir=tmp_path / "new", face_model="mobilefacenet"))
    Engine.open(config, extractors=lambda kind: FakeFace(plain_dlib, 128)).close()  # directory released


def test_switch_refused_without_kept_images_unless_dropping(tmp_path: Path) -> None:
    config = _gallery(tmp_path, 4, keep_images=False)
    before = (config.data_dir / "nasname.db").read_bytes()
    with pytest.raises(Conflict, match="4 of 4 records") as err:
        _switch(config, "fake_new", FakeFace(NEW, 8))
    assert err.value.reason == "IMAGES_NOT_KEPT" and err.value.details["missing"] == 4
    assert (config.data_dir / "nasname.db").read_bytes() == before
    summary = _switch(config, "fake_new", FakeFace(NEW, 8), drop_missing=True)
    assert summary.reextracted == 0 and sorted(summary.dropped) == ["R0", "R1", "R2", "R3"]
    engine = Engine.open(config, extractors=lambda kind: FakeFace(NEW, 8))
    try:
        assert engine.gallery.models()[Modality.FACE] == NEW
        assert engine.stats().by_modality == {"iris_left": 3}
        actions = [e["action"] for e in engine.gallery.store.audit_entries()]
        assert actions.count("drop_face_template") == 4 and actions[-1] == "switch_face_model"
    finally:
        engine.close()


def _switch(config: EngineConfig, *args: Any, **kwargs: Any) -> SwitchSummary:
    """Run a face switch as ``nasname models switch-face`` does: on the data directory, opened alone."""
    with DataDir.from_config(config) as datadir:
        return FaceSwitchJob(datadir, *args, **kwargs).run()


class Kill(Exception):
    pass


def test_switch_resumes_after_a_kill_and_swaps_atomically(tmp_path: Path) -> None:
    n = 9
    config = _gallery(tmp_path, n)
    new = FakeFace(NEW, 8)
    seen: list[int] = []

    def crash_at_5(stage: str, done: int) -> None:
        seen.append(done)
        if done == 5 and len(seen) < 7:
            raise Kill

    with pytest.raises(Kill):
        _switch(config, "fake_new", new, hook=crash_at_5, batch=2)
    # the live gallery is untouched and still serves the old model
    old = FakeFace(OLD, 16)
    iris_model = FakeFace(ModelRef("iris_test", "1"), 16)  # only its model is asked for (known models)
    engine = Engine.open(config, extractors=lambda kind: old if kind == "face" else iris_model)
    assert engine.gallery.models()[Modality.FACE] == OLD
    assert engine.identify([Sample(Modality.FACE, image=b"face-2")]).candidates[0].reference_id == "R2"
    engine.close()
    with pytest.raises(Conflict, match="under way"):
        _switch(config, "other", FakeFace(ModelRef("other", "1"), 8))

    summary = _switch(config, "fake_new", new, hook=crash_at_5, batch=2)
    assert seen == [0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8]  # resumed at the last committed batch (4 done)
    assert new.calls == 5 + (n - 4)  # records 0-3 are never extracted again
    assert summary.reextracted == n and not summary.dropped
    assert summary.from_model == "fake_old@1" and summary.to_model == "fake_new@2"
    assert Path(summary.backup).is_file() and not (config.data_dir / "jobs" / "face-switch" / "work").exists()
    with sqlite3.connect(summary.backup) as conn:  # the backup is the previous gallery, intact
        assert conn.execute("SELECT COUNT(*) FROM templates WHERE model_id = 'fake_old'").fetchone()[0] == n

    engine = Engine.open(config, extractors=lambda kind: new)
    try:
        store = engine.gallery.store
        assert engine.gallery.models()[Modality.FACE] == NEW
        for i in range(n):
            rec = store.get(f"R{i}")
            face = rec.templates[Modality.FACE]
            assert isinstance(face, FaceTemplate) and face.model == NEW and face.vector.size == 8
            if i % 3 == 0:  # iris templates copied as they were
                iris = rec.templates[Modality.IRIS_LEFT]
                assert isinstance(iris, IrisTemplate) and np.array_equal(iris.code, _iris(i).code)
        assert Modality.FACE not in store.get("IRIS-ONLY").templates
        hit = engine.identify([Sample(Modality.FACE, image=b"face-7")]).candidates
        assert hit and hit[0].reference_id == "R7"
        with pytest.raises(ModelMismatch):
            engine.insert("OLD", [Sample(Modality.FACE, template=FakeFace(OLD, 16).extract(b"x").template)])
        switch = [e for e in store.audit_entries() if e["action"] == "switch_face_model"]
        assert len(switch) == 1 and switch[0]["details"]["reextracted"] == n
        assert store.verify_audit().first_bad_seq is None
    finally:
        engine.close()
    with pytest.raises(Conflict, match="already of fake_new@2"):
        _switch(config, "fake_new", new)


def test_cli_switch_face_reports_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = _gallery(tmp_path, 2, keep_images=False)
    monkeypatch.setenv("NASNAME_MODEL_DIR", str(tmp_path / "models"))
    code = cli.main(["switch-face", "--data-dir", str(config.data_dir), "--to", "mobilefacenet"])
    assert code == 1 and "nasname models mobilefacenet --accept-licence" in capsys.readouterr().out


def test_switch_cancel_stops_between_batches_and_resume_finishes_with_progress(tmp_path: Path) -> None:
    from engine.jobs import JobCancelled

    config = _gallery(tmp_path, 8)
    new = FakeFace(NEW, 8)
    with DataDir.from_config(config) as datadir:
        job = FaceSwitchJob(datadir, "fake_new", new, batch=2)
        seen: list[tuple[int, int, float | None]] = []

        def cancel_after_two_batches(p: Any) -> None:
            seen.append((p.done, p.total, p.eta_s))
            if p.done == 4:
                job.cancel()

        with pytest.raises(JobCancelled, match="after 4 of 8"):
            job.run(on_progress=cancel_after_two_batches)
        p = job.progress()
        assert (p.state, p.stage, p.done, p.total) == ("cancelled", "extract", 4, 8)
        assert seen[0][:2] == (2, 8) and all(eta is not None and eta >= 0 for _, _, eta in seen)
        summary = job.resume()
        assert summary.reextracted == 8 and new.calls == 8  # the first 4 were not extracted again
        assert job.progress().state == "done" and job.progress().eta_s == 0.0
