"""A small real gallery for the web console's tests: synthetic templates (no models needed) with kept
images (a drawn face, synthetic NIR eyes that the iris pipeline can unwrap), two open cases, and one
console account per role."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.config import EngineConfig
from engine.engine import Engine
from engine.extractor import Extractor
from engine.iris.synthetic import render
from engine.records import RecordStatus
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template
from server.auth import Role

FACE_MODEL = ModelRef("synthetic-face", "1")
IRIS_MODEL = ModelRef("synthetic-iris", "1")
PASSWORD = "correct horse battery staple"


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def face_image(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (240, 300), tuple(int(x) for x in rng.integers(120, 220, 3)))
    d = ImageDraw.Draw(im)
    d.ellipse((50, 40, 190, 240), fill=(224, 188, 160), outline=(60, 40, 30), width=3)
    d.ellipse((85, 110, 110, 125), fill=(40, 40, 40))
    d.ellipse((130, 110, 155, 125), fill=(40, 40, 40))
    d.arc((90, 160, 150, 200), 20, 160, fill=(120, 40, 40), width=4)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def templates(seed: int) -> dict[Modality, Template]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(128).astype(np.float32)
    out: dict[Modality, Template] = {Modality.FACE: FaceTemplate(v / np.linalg.norm(v), FACE_MODEL)}
    for m in (Modality.IRIS_LEFT, Modality.IRIS_RIGHT):
        out[m] = IrisTemplate(rng.integers(0, 256, 256, dtype=np.uint8),
                              np.full(256, 255, dtype=np.uint8), 64, IRIS_MODEL)
    return out


def images(seed: int) -> dict[Modality, bytes]:
    return {Modality.FACE: face_image(seed), Modality.IRIS_LEFT: _png(render(seed)),
            Modality.IRIS_RIGHT: _png(render(seed + 1000))}


def candidate(ref_id: str, fused: float) -> dict[str, object]:
    return {"ref_id": ref_id, "fused": fused,
            "scores": {"face": 0.82, "iris_left": 0.71, "iris_right": 0.69},
            "llrs": {"face": fused / 2, "iris_left": fused / 4, "iris_right": fused / 4}}


def _no_extractor(kind: str) -> Extractor:
    raise AssertionError(f"the console never extracts ({kind})")


def open_engine(data_dir: Path) -> Engine:
    """Images kept; extractors never loaded (the console only reads)."""
    cfg = EngineConfig(data_dir=data_dir, keep_images=True, snapshot_every=0)
    return Engine.open(cfg, extractors=_no_extractor)


def seed_gallery(engine: Engine) -> None:
    """R-1, R-3 active; R-2 (camp-a) pending against R-1; R-4 (camp-b) pending against R-3 and R-1."""
    g = engine.gallery
    g.insert(templates(1), ref_id="R-1", partition="camp-a", images=images(1))
    g.insert(templates(3), ref_id="R-3", partition="camp-b", images=images(3))
    g.insert(templates(2), ref_id="R-2", partition="camp-a", images=images(1),
             status=RecordStatus.PENDING, candidates=[candidate("R-1", 14.5)])
    g.insert(templates(4), ref_id="R-4", partition="camp-b", images=images(3),
             status=RecordStatus.PENDING, candidates=[candidate("R-3", 21.0), candidate("R-1", 6.0)])


def add_users(engine: Engine) -> dict[Role, str]:
    """One account per role, named after it; returns role -> username."""
    for role in Role:
        engine.gallery.store.create_user(role.value, role.value, PASSWORD, actor="test")
    return {role: role.value for role in Role}


def add_pending(engine: Engine, n: int, *, partition: str = "camp-q", prefix: str = "Q") -> list[str]:
    """``n`` more open cases (templates only) in ``partition``, queued in order ``<prefix>-000``,
    ``<prefix>-001``, ...; the candidate's fused score rises with the number, so "highest score first"
    is the reverse of "oldest first". Returns the reference ids in queue (age) order."""
    refs = []
    for i in range(n):
        ref = f"{prefix}-{i:03d}"
        engine.gallery.insert(templates(100 + i), ref_id=ref, partition=partition,
                              status=RecordStatus.PENDING, candidates=[candidate("R-1", 1.0 + i / 10)])
        refs.append(ref)
    return refs
