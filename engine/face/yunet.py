"""YuNet (OpenCV Zoo, 2023mar) run by onnxruntime: faces with 5 landmarks in one pass.

The converted graph (``engine.models.opencv_zoo``) takes a raw BGR 0-255 NCHW image whose sides are
multiples of 32 and gives, per stride s in (8, 16, 32) and per cell (r, c) of the H/s x W/s grid,
class and objectness probabilities, a box (dx, dy, log w, log h) and 5 points (dx, dy) in cell
units. Decoding is OpenCV's ``FaceDetectorYN``: score = sqrt(cls * obj) (each clipped to [0, 1]),
centre = (c + dx, r + dy) * s, size = exp(log size) * s, point = (c + dx, r + dy) * s; then greedy
NMS. Points come in ArcFace order: image-left eye, image-right eye, nose tip, image-left and
image-right mouth corners.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError
from engine.face.config import YuNetConfig
from engine.face.detector import Detection
from engine.face.runtime import session
from engine.models.manifest import ModelManifest

__all__ = ["YuNetDetector"]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


class YuNetDetector:
    """``detect(rgb)``: faces in an ``(H, W, 3)`` uint8 RGB image, best score first, each with its
    5 landmarks (``Detection.landmarks``)."""

    landmark_layout = "yunet5"

    def __init__(self, model_path: Path, manifest: ModelManifest, config: YuNetConfig | None = None,
                 threads: int = 1) -> None:
        if manifest.kind != "face_detector" or manifest.output.get("decoder") != "yunet":
            raise ConfigurationError(f"model {manifest.name} is not a YuNet face detector")
        self.config = config or YuNetConfig()
        self.strides = tuple(int(s) for s in manifest.output.get("strides", (8, 16, 32)))
        self.multiple = int(manifest.input.get("multiple", 32))
        self.session = session(model_path, threads)
        self.input_name = str(manifest.input.get("name") or self.session.get_inputs()[0].name)
        self.manifest = manifest

    def detect(self, rgb: U8) -> list[Detection]:
        return self.detect_passes(rgb)[0]

    def detect_passes(self, rgb: U8) -> tuple[list[Detection], bool]:
        """(faces, whether the upsampled pass found them): the image at its working size first, then,
        when nothing is found, at ``upsample_side`` for small faces."""
        cfg = self.config
        long_side = max(rgb.shape[:2])
        scale = min(cfg.max_side / long_side, max(1.0, cfg.min_side / long_side))
        found = self._detect_at(rgb, scale)
        if not found and cfg.upsample_side / long_side > scale * 1.05:
            return self._detect_at(rgb, cfg.upsample_side / long_side), True
        return found, False

    def _detect_at(self, rgb: U8, scale: float) -> list[Detection]:
        h, w = rgb.shape[:2]
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_LINEAR if scale >= 1.0 else cv2.INTER_AREA
        img = rgb if (sw, sh) == (w, h) else cv2.resize(rgb, (sw, sh), interpolation=interp)
        m = self.multiple
        ph, pw = -(-sh // m) * m, -(-sw // m) * m
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :sh, :sw] = img[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR planes
        names = [o.name for o in self.session.get_outputs()]
        outs = dict(zip(names, self.session.run(None, {self.input_name: x}), strict=True))
        boxes, scores, points = self._decode(outs, pw)
        if scores.size == 0:
            return []
        rects = [[float(b[0]), float(b[1]), float(b[2]), float(b[3])] for b in boxes]
        keep = np.asarray(cv2.dnn.NMSBoxes(rects, scores.tolist(), self.config.score_threshold,
                                           self.config.nms_iou, top_k=self.config.top_k)).reshape(-1)
        sx, sy = w / sw, h / sh
        dets = []
        for i in keep.tolist():
            bx, by, bw, bh = boxes[i]
            pts = tuple((float(px * sx), float(py * sy)) for px, py in points[i])
            dets.append(Detection(round(bx * sx), round(by * sy), round((bx + bw) * sx) - 1,
                                  round((by + bh) * sy) - 1, float(scores[i]), pts))
        return sorted(dets, key=lambda d: -d.score)

    def _decode(self, outs: dict[str, F32], width: int) -> tuple[F32, F32, F32]:
        """(boxes (n, 4) x, y, w, h; scores (n,); points (n, 5, 2)) above the score threshold, in the
        padded input's pixels."""
        all_boxes, all_scores, all_points = [], [], []
        for s in self.strides:
            cols = width // s
            cls = np.clip(outs[f"cls_{s}"][0, :, 0], 0.0, 1.0)
            obj = np.clip(outs[f"obj_{s}"][0, :, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            idx = np.flatnonzero(score > self.config.score_threshold)
            if idx.size == 0:
                continue
            r, c = (idx // cols).astype(np.float32), (idx % cols).astype(np.float32)
            b = outs[f"bbox_{s}"][0, idx]
            k = outs[f"kps_{s}"][0, idx].reshape(-1, 5, 2)
            cx, cy = (c + b[:, 0]) * s, (r + b[:, 1]) * s
            bw, bh = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
            all_boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1))
            all_scores.append(score[idx])
            all_points.append(np.stack([(k[..., 0] + c[:, None]) * s, (k[..., 1] + r[:, None]) * s], axis=-1))
        if not all_scores:
            empty = np.zeros((0,), np.float32)
            return empty.reshape(0, 4), empty, empty.reshape(0, 5, 2)
        return (np.concatenate(all_boxes).astype(np.float32), np.concatenate(all_scores).astype(np.float32),
                np.concatenate(all_points).astype(np.float32))
