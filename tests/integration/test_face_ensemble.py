"""Fused face models (``engine.face.ensemble``) with the real models on LFW photos (../shared/data).

``sface+dlib_resnet_v1`` needs only the free models (converted on first use); ``sface+mobilefacenet``
skips unless MobileFaceNet is installed with its licence accepted (``nasname models mobilefacenet``).
The accuracy of the fusions comes from ``nasname evaluate`` (docs/QUALITY.md, "Fusing two face models").
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from engine.errors import ConfigurationError
from engine.extractors import require_installed
from engine.face.config import FaceConfig
from engine.face.detector import Detection
from engine.face.ensemble import FaceEnsembleExtractor, ensemble_parts
from engine.face.extractor import FaceExtractor
from engine.types import FaceTemplate

F32 = npt.NDArray[np.float32]


@pytest.fixture(scope="module", params=["sface+dlib_resnet_v1", "sface+mobilefacenet"])
def ensemble(request: pytest.FixtureRequest) -> FaceEnsembleExtractor:
    name = str(request.param)
    try:
        require_installed(name)
    except ConfigurationError as exc:
        pytest.skip(f"{name}: a component is not installed ({exc})")
    return FaceEnsembleExtractor.default(name, FaceConfig(threads=2))


def _photo(shared_data: Path, person: str, n: int) -> bytes:
    path = shared_data / "face" / "lfw" / person / f"{person}_{n:04d}.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path.read_bytes()


def _vector(fx: FaceEnsembleExtractor | FaceExtractor, image: bytes) -> F32:
    t = fx.extract(image).template
    assert isinstance(t, FaceTemplate)
    return t.vector


def _halves(fx: FaceEnsembleExtractor, v: F32) -> tuple[F32, F32]:
    """The two models' unit embeddings inside a fused template."""
    assert isinstance(fx.primary, FaceExtractor)
    d = fx.primary.embedder.dim
    return v[:d] / np.sqrt(fx.weight), v[d:] / np.sqrt(1.0 - fx.weight)


def test_genuine_pair_scores_above_impostor_pair(ensemble: FaceEnsembleExtractor, shared_data: Path) -> None:
    a = _vector(ensemble, _photo(shared_data, "Aaron_Sorkin", 1))
    b = _vector(ensemble, _photo(shared_data, "Aaron_Sorkin", 2))
    c = _vector(ensemble, _photo(shared_data, "Abdullah_Gul", 1))
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
    genuine, impostor = float(a @ b), float(a @ c)
    assert genuine > impostor + 0.2, (genuine, impostor)
    # the fused score is the weighted sum of the two models' own cosines
    (a1, a2), (b1, b2) = _halves(ensemble, a), _halves(ensemble, b)
    w = ensemble_parts(f"sface+{ensemble.secondary_name}")[2]
    assert abs(genuine - (w * float(a1 @ b1) + (1 - w) * float(a2 @ b2))) < 1e-5


def test_two_faces_give_halves_of_the_same_face(ensemble: FaceEnsembleExtractor, shared_data: Path) -> None:
    """Two people side by side: whichever face the first model takes, the second embeds that one."""
    people = [("Aaron_Sorkin", 1), ("Abdullah_Gul", 1)]
    crops = [Image.open(io.BytesIO(_photo(shared_data, p, n))).convert("RGB").crop((50, 50, 200, 200))
             .resize((200, 200)) for p, n in people]
    canvas = Image.new("RGB", (520, 300), (120, 120, 120))
    canvas.paste(crops[0], (40, 50))
    canvas.paste(crops[1], (280, 50))
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=95)
    both = buf.getvalue()
    singles = []
    for crop in crops:
        b = io.BytesIO()
        crop.save(b, format="JPEG", quality=95)
        singles.append(_halves(ensemble, _vector(ensemble, b.getvalue())))
    out = ensemble.extract(both)
    assert out.details["faces_found"] == 2
    first, second = _halves(ensemble, out.template.vector)  # type: ignore[union-attr]
    by_first = [float(first @ s[0]) for s in singles]
    by_second = [float(second @ s[1]) for s in singles]
    chosen = int(np.argmax(by_first))
    assert int(np.argmax(by_second)) == chosen, (by_first, by_second)
    assert by_second[chosen] > 0.99 and by_second[1 - chosen] < 0.9, by_second  # dlib: impostors ~0.8
    # hinted at the other face, the second pipeline embeds that one
    assert isinstance(ensemble.primary, FaceExtractor) and isinstance(ensemble.secondary, FaceExtractor)
    other = next(d for d in ensemble.primary.analyse(both).detections
                 if abs(d.left - out.quality.measures["face_box_x"]) > 100)
    v = _vector_near(ensemble.secondary, both, other)
    assert float(v @ singles[1 - chosen][1]) > 0.99


def _vector_near(fx: FaceExtractor, image: bytes, near: Detection) -> F32:
    t = fx.extract(image, near=near).template
    assert isinstance(t, FaceTemplate)
    return t.vector


def test_switch_face_to_a_fusion_and_search_with_it(shared_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`nasname models switch-face --to sface+dlib_resnet_v1` re-extracts a SFace gallery from its kept
    images; an engine configured with the fusion then opens it and finds each person (its calibration
    is the committed one)."""
    from engine.config import EngineConfig
    from engine.engine import Engine
    from engine.models.cli import main as models_main
    from engine.records import Sample
    from engine.types import Modality

    monkeypatch.delenv("NASNAME_CONFIG", raising=False)
    monkeypatch.delenv("NASNAME_FACE_MODEL", raising=False)
    people = [("Aaron_Sorkin", 1), ("Abdullah_Gul", 1), ("Adam_Sandler", 1)]
    images = {f"{p}_{n}": _photo(shared_data, p, n) for p, n in people}
    config = EngineConfig(data_dir=tmp_path / "g", keep_images=True, modalities=("face",))
    engine = Engine.open(config)
    for name, data in images.items():
        engine.insert(name, [Sample(Modality.FACE, image=data)])
    engine.close()
    switch = ["switch-face", "--data-dir", str(config.data_dir), "--to", "sface+dlib_resnet_v1"]
    assert models_main(switch) == 0
    fused = EngineConfig(data_dir=config.data_dir, keep_images=True, modalities=("face",),
                         face_model="sface+dlib_resnet_v1")
    engine = Engine.open(fused)
    try:
        model = engine.gallery.models()[Modality.FACE]
        assert model.model_id == "sface_2021dec_int8bq+dlib_resnet_v1" and model.version.endswith(",w0.30")
        for name, data in images.items():
            got = engine.identify([Sample(Modality.FACE, image=data)], max_results=1).candidates
            assert [c.reference_id for c in got] == [name]
    finally:
        engine.close()
