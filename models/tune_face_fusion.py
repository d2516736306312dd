"""Tune the weight of a fused face model (``engine/face/ensemble.py``) from two evaluate runs.

    nasname evaluate --manifest ../shared/data/face_lfw.csv --face-model sface --out /tmp/ev_sface
    nasname evaluate --manifest ../shared/data/face_lfw.csv --face-model dlib_resnet_v1 --out /tmp/ev_dlib
    .venv/bin/python models/tune_face_fusion.py /tmp/ev_sface /tmp/ev_dlib --weights 0.2,0.3,0.4

Input: the ``scores.npz`` of two ``nasname evaluate`` runs over the same manifest (same samples, same
order), one per face model. A fused template ``concat(sqrt(w) e1, sqrt(1 - w) e2)`` scores exactly
``w cos1 + (1 - w) cos2``, so each weight's figures follow from the two cosine matrices without a
third extraction; a sample counts as failed when either model failed on it (the fused model needs
both halves). For comparison it also prints each model alone and the sum of the two models'
calibrated LLRs (``engine.fusion``, each model's shipped calibration), the fusion rule the engine
uses between modalities. Figures: FNIR at FPIR 1e-2 / 3e-3 / 1e-3, rank-1 and EER, by the same
analysis as ``nasname evaluate`` (``engine.evaluation.analysis``). The weight chosen goes into
``engine.face.ensemble.ENSEMBLE_WEIGHTS``; the product's figures then come from ``nasname evaluate
--face-model A+B``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.calibration import load_distributions  # noqa: E402
from engine.evaluation.analysis import KindScores, analyse  # noqa: E402
from engine.fusion import ModalityCalibration  # noqa: E402
from engine.types import ModelRef  # noqa: E402


def _run(folder: Path) -> tuple[ModelRef, list[str], npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    doc = json.loads((folder / "metrics.json").read_text())
    model_id, version = doc["models"]["face"]["ref"].split("@", 1)
    with np.load(folder / "scores.npz") as z:
        return (ModelRef(model_id, version), [str(s) for s in z["face_subjects"]], z["face_ok"],
                z["face_scores"].astype(np.float64))


def _line(name: str, subjects: list[str], ok: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64]) -> str:
    f = analyse(KindScores("face", subjects, ok, scores.astype(np.float32))).figures
    fnir = " / ".join(f"{100 * p['fnir']:.2f}%" for p in f["fnir_at_fpir"])
    return (f"{name:34s} FNIR@FPIR 1e-2/3e-3/1e-3 {fnir}  rank-1 {100 * f['rank1_hit_rate']['rate']:.2f}%  "
            f"EER {100 * f['eer']['eer']:.3f}%  failed {int((~ok).sum())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("first", type=Path, help="evaluate output folder of the first model (weight w)")
    ap.add_argument("second", type=Path, help="evaluate output folder of the second model (1 - w)")
    ap.add_argument("--weights", default="0.2,0.3,0.4,0.5,0.6,0.7,0.8",
                    help="comma-separated weights of the first model to try")
    args = ap.parse_args()
    m1, subjects, ok1, s1 = _run(args.first)
    m2, subjects2, ok2, s2 = _run(args.second)
    if subjects != subjects2:
        ap.error("the two runs are not over the same samples in the same order")
    both = ok1 & ok2
    print(_line(f"{m1.model_id} alone", subjects, ok1, s1))
    print(_line(f"{m2.model_id} alone", subjects, ok2, s2))
    for w in (float(x) for x in args.weights.split(",")):
        print(_line(f"w = {w:g}", subjects, both, w * s1 + (1 - w) * s2))
    dists = [load_distributions(m) for m in (m1, m2)]
    if all(d is not None for d in dists):
        c1, c2 = (ModalityCalibration.from_distributions(d) for d in dists if d is not None)
        print(_line("sum of calibrated LLRs", subjects, both, c1.llr_of(s1) + c2.llr_of(s2)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
