"""Face quality with reasons a clerk can act on (retake closer, add light, hold still, face the camera).

Measured on the aligned chip (so the numbers do not depend on the photo's resolution) and on the
landmarks. Each check yields a sub-score in [0, 1] (1 = comfortably good, 0 = at or past its limit);
``score`` is their product; ``ok`` is false when any refusing reason is present; the rules in
``QualityThresholds.warn_only`` only warn (calibrated: docs/QUALITY.md).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from engine.face.config import QualityThresholds
from engine.face.detector import Detection
from engine.types import Quality, QualityReason

__all__ = ["assess_quality", "chip_measures", "pose_measures"]


# Nose drop below the eye line / eye distance on each layout's mean face: dlib's nose base (its
# template) and the ArcFace template's nose tip. ``pitch_ratio`` is reported in dlib's frame
# (measured x 0.7735 / neutral) so one threshold range serves both pipelines.
NEUTRAL_PITCH = {"dlib5": 0.7735, "yunet5": 0.5716}


def pose_measures(landmarks: npt.ArrayLike, layout: str = "dlib5") -> dict[str, float]:
    """Roll (deg), yaw ratio (nose offset from the eye midpoint along the eye line / eye distance) and
    pitch ratio (nose drop below the eye line / eye distance, in dlib's frame: 0.77 on the mean face)
    from 5 points: dlib's (eye corners, nose base) or ArcFace-order ones (``yunet5``: eye centres,
    nose tip, mouth corners, from YuNet); ``eye_distance_px`` between the eye centres."""
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if layout == "yunet5":
        left, right, nose = p[0], p[1], p[2]
    else:
        left, right, nose = (p[2] + p[3]) / 2.0, (p[0] + p[1]) / 2.0, p[4]
    axis = right - left
    iod = float(np.hypot(*axis))
    if iod < 1e-6:
        return {"eye_distance_px": 0.0, "roll_deg": 0.0, "yaw_ratio": 1.0, "pitch_ratio": 0.0}
    ux = axis / iod
    uy = np.array([-ux[1], ux[0]])
    rel = nose - (left + right) / 2.0
    return {
        "eye_distance_px": iod,
        "roll_deg": math.degrees(math.atan2(axis[1], axis[0])),
        "yaw_ratio": float(rel @ ux) / iod,
        "pitch_ratio": float(rel @ uy) / iod * NEUTRAL_PITCH["dlib5"] / NEUTRAL_PITCH[layout],
    }


def chip_measures(chip: npt.NDArray[np.uint8]) -> dict[str, float]:
    """Brightness (mean grey), contrast (grey std) and sharpness of the central half of the chip (the
    inner face, little background or hair). Sharpness = variance of the Laplacian / variance of the
    grey levels, so it does not depend on contrast: LFW faces measure 0.24-1.3; the same photos
    blurred with a Gaussian of sigma 2 px measure 0.07-0.23."""
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY) if chip.ndim == 3 else chip
    h, w = grey.shape
    core = grey[h // 4 : h - h // 4, w // 4 : w - w // 4]
    lap = cv2.Laplacian(core, cv2.CV_64F, ksize=3)
    return {"brightness": float(core.mean()), "contrast": float(core.std()),
            "sharpness": float(lap.var() / (core.var() + 1.0))}


def _ramp(value: float, limit: float, good: float) -> float:
    """0 at ``limit``, 1 at ``good`` (either direction), linear between."""
    if good == limit:
        return 1.0 if value >= limit else 0.0
    return float(min(1.0, max(0.0, (value - limit) / (good - limit))))


def assess_quality(det: Detection, landmarks: npt.ArrayLike, chip: npt.NDArray[np.uint8], faces_found: int,
                   t: QualityThresholds, layout: str = "dlib5") -> Quality:
    m = {**pose_measures(landmarks, layout), **chip_measures(chip)}
    m["face_px"] = float(min(det.width, det.height))
    m["detector_score"] = det.score
    m["faces_found"] = float(faces_found)
    reasons: list[QualityReason] = []
    blocking: list[QualityReason] = []

    def check(bad: bool, reason: QualityReason) -> None:
        if bad:
            reasons.append(reason)
            if reason.value not in t.warn_only:
                blocking.append(reason)

    check(m["face_px"] < t.min_face_px or m["eye_distance_px"] < t.min_eye_distance_px,
          QualityReason.FACE_TOO_SMALL)
    check(m["sharpness"] < t.min_sharpness, QualityReason.BLURRED)
    check(m["brightness"] < t.min_brightness, QualityReason.TOO_DARK)
    check(m["brightness"] > t.max_brightness, QualityReason.TOO_BRIGHT)
    check(m["contrast"] < t.min_contrast, QualityReason.LOW_CONTRAST)
    lo, hi = t.pitch_ratio_range
    check(abs(m["roll_deg"]) > t.max_roll_deg or abs(m["yaw_ratio"]) > t.max_yaw_ratio
          or not lo <= m["pitch_ratio"] <= hi, QualityReason.EXTREME_POSE)
    check(det.score < t.min_detector_score, QualityReason.LOW_DETECTOR_CONFIDENCE)
    check(faces_found > 1, QualityReason.MULTIPLE_FACES)
    mid = (lo + hi) / 2.0
    parts = [
        _ramp(m["face_px"], t.min_face_px, 2 * t.min_face_px),
        _ramp(m["sharpness"], t.min_sharpness, 3 * t.min_sharpness),
        min(_ramp(m["brightness"], t.min_brightness, t.min_brightness + 30),
            _ramp(m["brightness"], t.max_brightness, t.max_brightness - 30)),
        _ramp(m["contrast"], t.min_contrast, 2 * t.min_contrast),
        _ramp(-abs(m["roll_deg"]), -t.max_roll_deg, 0.0),
        _ramp(-abs(m["yaw_ratio"]), -t.max_yaw_ratio, 0.0),
        _ramp(-abs(m["pitch_ratio"] - mid), -(hi - lo) / 2.0, 0.0) ** 0.5,
        _ramp(det.score, t.min_detector_score, t.min_detector_score + 0.5),
    ]
    score = float(np.prod(parts))
    return Quality(score=round(score, 4), ok=not blocking, reasons=tuple(reasons),
                   measures={k: round(v, 4) for k, v in m.items()}, rejected=tuple(blocking))
