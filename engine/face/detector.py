"""dlib's mmod CNN face detector run by onnxruntime over an image pyramid, with NMS.

The converted graph maps a normalised NCHW image to a score map; score cell (r, c) stands for an
80x80 window centred on input pixel (8c + 14, 8r + 14) (three 5x5 stride-2 convolutions without
padding). dlib runs the net once on a tiled pyramid (``pyramid_down<6>``, 5/6 per level); running
it per level, as here, gives boxes within ~3 px of dlib's with the same scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from engine.errors import ConfigurationError
from engine.face.config import DetectorConfig
from engine.face.runtime import session
from engine.models.manifest import ModelManifest

__all__ = ["Detection", "FaceDetector", "box_iou", "nms"]

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Detection:
    """A face box in original-image pixels, inclusive corners (dlib ``rectangle``), and its score.
    ``landmarks``: ((x, y), ...) when the detector finds points too (YuNet: 5 points in ArcFace order),
    else empty (dlib's pipeline predicts them afterwards)."""

    left: int
    top: int
    right: int
    bottom: int
    score: float
    landmarks: tuple[tuple[float, float], ...] = field(default=(), compare=False)

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0


def box_iou(a: Detection, b: Detection) -> float:
    w = min(a.right, b.right) - max(a.left, b.left) + 1
    h = min(a.bottom, b.bottom) - max(a.top, b.top) + 1
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / float(a.area + b.area - inter)


def nms(dets: list[Detection], iou: float) -> list[Detection]:
    """dlib's greedy NMS: best score first; drop a box whose IoU with a kept one exceeds ``iou``."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(box_iou(d, k) <= iou for k in kept):
            kept.append(d)
    return kept


class FaceDetector:
    """``detect(rgb)``: faces in an ``(H, W, 3)`` uint8 RGB image, best score first."""

    def __init__(self, model_path: Path, manifest: ModelManifest, config: DetectorConfig | None = None,
                 threads: int = 1) -> None:
        if manifest.kind != "face_detector":
            raise ConfigurationError(f"model {manifest.name} is a {manifest.kind}, not a face_detector")
        self.config = config or DetectorConfig()
        self.session: ort.InferenceSession = session(model_path, threads)
        out = manifest.output
        self.stride = int(out.get("stride", 8))
        self.offset = int(out.get("offset", 14))
        self.window = tuple(int(v) for v in out.get("window", (80, 80)))
        self.mean = np.asarray(manifest.input["mean"], np.float32).reshape(1, 3, 1, 1)
        self.scale = np.float32(manifest.input["scale"])
        self.nms_iou = float(self.config.nms_iou if self.config.nms_iou is not None
                             else manifest.extra.get("nms_iou", 0.3382761351109955))
        self.input_name = self.session.get_inputs()[0].name

    def _level_scores(self, img: U8) -> npt.NDArray[np.float32]:
        x = img.transpose(2, 0, 1)[None].astype(np.float32)
        x = (x - self.mean) * self.scale
        out = self.session.run(None, {self.input_name: x})[0]
        return np.asarray(out[0, 0], dtype=np.float32)

    def detect(self, rgb: U8, upsample: float = 1.0, min_scale: float = 0.0) -> list[Detection]:
        """Run the pyramid starting at ``upsample`` x the image size (> 1 finds smaller faces), down
        to levels smaller than ``min_level_side`` or scaled below ``min_scale``."""
        cfg = self.config
        h, w = rgb.shape[:2]
        raw: list[Detection] = []
        s = float(upsample)
        half_w, half_h = self.window[0] // 2, self.window[1] // 2
        while True:
            lw, lh = round(w * s), round(h * s)
            if min(lw, lh) < cfg.min_level_side or s < min_scale:
                break
            interp = cv2.INTER_LINEAR if s >= 1.0 else cv2.INTER_AREA
            level = rgb if (lw, lh) == (w, h) else cv2.resize(rgb, (lw, lh), interpolation=interp)
            scores = self._level_scores(np.ascontiguousarray(level))
            rows, cols = np.nonzero(scores > cfg.score_threshold)
            sx, sy = w / lw, h / lh
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                cx, cy = self.stride * c + self.offset, self.stride * r + self.offset
                left, top = cx - half_w, cy - half_h
                right, bottom = left + self.window[0] - 1, top + self.window[1] - 1
                raw.append(Detection(round(left * sx), round(top * sy), round((right + 1) * sx) - 1,
                                     round((bottom + 1) * sy) - 1, float(scores[r, c])))
            s *= cfg.pyramid_scale
        return nms(raw, self.nms_iou)
