"""Iris extraction speed (pytest-benchmark). Run:

    .venv/bin/pytest benchmarks/bench_iris_extract.py --benchmark-only -s

Whole pipeline on one encoded 320x280 image (decode, segment, normalise, ONNX encode, quality),
single-threaded encoder session; target p50 <= 30 ms. The median split by stage is printed and
stored in ``extra_info``. Two inputs: a CASIA-IrisV1 JPEG from ../shared/data (skipped when absent)
and a synthetic eye (always available).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.iris.extractor import IrisExtractor
from engine.iris.synthetic import SyntheticEyes

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "iris"
IMAGES = {"casia1": DATA / "casia1" / "001" / "001_1_1.jpg", "mmu2": DATA / "mmu2" / "001" / "010101.png"}


def _image(kind: str) -> bytes:
    if kind == "synthetic":
        buf = io.BytesIO()
        Image.fromarray(SyntheticEyes().capture(1, 0)).save(buf, format="PNG")
        return buf.getvalue()
    path = IMAGES[kind]
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["casia1", "mmu2", "synthetic"])
def test_iris_extract(benchmark, kind: str) -> None:  # type: ignore[no-untyped-def]
    extractor = IrisExtractor.default()
    data = _image(kind)
    stages: list[dict[str, float]] = []

    def run() -> None:
        stages.append(extractor.extract(data).details["stage_ms"])

    benchmark.pedantic(run, rounds=60, iterations=1, warmup_rounds=5)
    median = {k: float(np.median([s[k] for s in stages])) for k in stages[0]}
    benchmark.extra_info["stage_ms_median"] = median
    print(f"\n{kind}: median stage ms {median}")
