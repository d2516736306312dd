"""Regenerate the golden values that pin the converted dlib face models (models/golden/dlib_face.json).

    .venv/bin/python models/make_golden_face.py

Inputs are synthetic and rebuilt from seeds by ``golden_inputs()`` (no images are stored): three
150x150 chips for the recognizer, a 96x128 image for the detector's score map, and a 200x200 textured
image with a fixed box for the landmarks and the dlib chip. The values pin *our* conversion against
regressions (parser, ONNX builder, vectorised predictor, chip sampler); faithfulness to dlib itself
is shown by the LFW figures (models/README.md).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GOLDEN = ROOT / "models" / "golden" / "dlib_face.json"
LANDMARK_BOX = (50, 50, 149, 149)

U8 = npt.NDArray[np.uint8]


def golden_inputs() -> dict[str, Any]:
    rng = np.random.default_rng(20240611)
    noise = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:150, 0:150]
    gradient = np.dstack([xx * 255 // 149, yy * 255 // 149, (xx + yy) * 255 // 298]).astype(np.uint8)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (150, 150, 3), dtype=np.uint8), (0, 0), 4)
    det = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (0, 0), 2)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8), (0, 0), 3)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return {"chips": np.stack([noise, gradient, smooth]), "detector_image": det, "landmark_image": tex}


def compute(model_dir: Path | None = None) -> dict[str, Any]:
    from engine.face.alignment import dlib_chip
    from engine.face.detector import FaceDetector
    from engine.face.embedding import FaceEmbedder
    from engine.face.landmarks import ShapePredictor
    from engine.models.registry import ensure_model

    inp = golden_inputs()
    em, ep = ensure_model("dlib_resnet_v1", model_dir)
    dm, dp = ensure_model("dlib_mmod", model_dir)
    lm, lp = ensure_model("dlib_sp5", model_dir)
    emb = FaceEmbedder(ep, em, threads=1).embed(inp["chips"])
    det = FaceDetector(dp, dm, threads=1)
    scores = det._level_scores(inp["detector_image"])
    pts = ShapePredictor(lp, lm).predict(inp["landmark_image"], [LANDMARK_BOX])[0]
    chip = dlib_chip(inp["landmark_image"], pts)
    return {
        "recognizer": {"model": str(em.ref), "outputs": emb.astype(float).tolist()},
        "detector": {"model": str(dm.ref), "shape": list(scores.shape),
                     "scores": scores.astype(float).ravel().tolist()},
        "landmarks": {"box": list(LANDMARK_BOX), "points": pts.tolist()},
        "chip_sha256": hashlib.sha256(chip.tobytes()).hexdigest(),
    }


def main() -> int:
    doc = compute()
    doc["command"] = ".venv/bin/python models/make_golden_face.py"

    def rounded(o: Any) -> Any:
        if isinstance(o, float):
            return float(f"{o:.8g}")
        if isinstance(o, list):
            return [rounded(v) for v in o]
        if isinstance(o, dict):
            return {k: rounded(v) for k, v in o.items()}
        return o

    GOLDEN.write_text(json.dumps(rounded(doc), separators=(",", ":")) + "\n")
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
