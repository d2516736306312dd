"""Face pipeline speed (pytest-benchmark). Run:

    .venv/bin/pytest benchmarks/bench_face.py --benchmark-only -s

* embedding alone: one aligned chip (SFace 112x112, dlib 150x150) -> 128-d, single-threaded session;
* whole pipeline on a 640x480 photo with one face (decode, detect, landmarks, align, quality, embed),
  sessions with 2 threads (target p50 <= 60 ms); the median split by stage is printed and stored in
  ``extra_info``. Each runs for the default pipeline (YuNet + SFace) and, side by side, for dlib's;
  the whole pipeline also for the opt-in fusions of two models (``engine.face.ensemble``; the one
  with MobileFaceNet skipped when it is not installed).
  The photo is built from an LFW image (../shared/data) placed on a 640x480 canvas and JPEG-encoded;
  skipped when the data is absent.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import ConfigurationError
from engine.extractors import require_installed
from engine.face import FaceConfig, FaceExtractor
from engine.face.ensemble import FaceEnsembleExtractor

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
FACE = DATA / "face" / "lfw" / "Aaron_Sorkin" / "Aaron_Sorkin_0001.jpg"


def _photo() -> bytes:
    if not FACE.is_file():
        pytest.skip(f"{FACE} not found")
    face = Image.open(FACE).convert("RGB").resize((330, 330))
    canvas = Image.new("RGB", (640, 480), (128, 120, 110))
    canvas.paste(face, (155, 75))
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


MODELS = ["sface", "dlib_resnet_v1"]
FUSIONS = ["sface+dlib_resnet_v1", "sface+mobilefacenet"]


def _pipeline(model: str, config: FaceConfig) -> FaceExtractor | FaceEnsembleExtractor:
    if "+" not in model:
        return FaceExtractor.default(config, embedding=model)
    try:
        require_installed(model)
    except ConfigurationError as exc:
        pytest.skip(f"{model}: {exc}")
    return FaceEnsembleExtractor.default(model, config)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("views", [1, 2], ids=["one-chip", "two-views(default)"])
def test_embedding_single_thread(benchmark, views: int, model: str) -> None:  # type: ignore[no-untyped-def]
    """``one-chip``: the issue's 'embedding alone' figure; ``two-views``: what the default pipeline
    embeds per face (the chip and the chip of the mirrored photo), in one batch."""
    fx = FaceExtractor.default(FaceConfig(threads=1), embedding=model)
    rng = np.random.default_rng(0)
    size = fx.embedder.width
    chips = rng.integers(0, 256, (views, size, size, 3), dtype=np.uint8)
    out = benchmark(fx.embed_views, chips)
    assert out.shape == (128,)


@pytest.mark.parametrize("model", [*MODELS, *FUSIONS])
def test_whole_pipeline_640x480(benchmark, model: str) -> None:  # type: ignore[no-untyped-def]
    fx = _pipeline(model, FaceConfig(threads=2))
    photo = _photo()
    stages: list[dict[str, float]] = []

    def run() -> None:
        stages.append(fx.extract(photo).details["stage_ms"])

    benchmark.pedantic(run, rounds=30, warmup_rounds=3)
    med = {k: round(float(np.median([s[k] for s in stages])), 2) for k in stages[0]}
    benchmark.extra_info["stage_ms_median"] = med
    print(f"\nstage medians (ms): {med}, total {sum(med.values()):.1f}")
    assert fx.extract(photo).details["faces_found"] == 1
