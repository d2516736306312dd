"""``FaceExtractor``: photo -> face template + quality (the engine's ``Extractor`` for kind "face").

decode (``engine.imageio``, bombs refused from the header) -> detection -> choice of one face (largest,
weighted towards the centre; the count is reported) -> 5-point landmarks -> aligned chip (from the
embedding model's manifest) -> quality -> embedding -> L2-normalised template.

Two pipelines, chosen by the detector's manifest:
* default (``sface``): YuNet finds the boxes and their 5 ArcFace-order points in one pass
  (``engine.face.yunet``); SFace embeds the 112x112 chip aligned on all five.
* dlib (``dlib_resnet_v1``, and ``mobilefacenet`` which shares its detection): mmod detection over a
  pyramid (upsampled when nothing is found, for faces down to ``min_face_px``), then the 5-point
  regression-tree landmarks (eye corners + nose base).
``mirror_photo`` (default) adds the chip of the mirrored photo (its own landmarks) as a second view.
``near=box`` makes the pipeline embed the face at a box another detector chose (the detection that
overlaps it most; ``engine.face.ensemble`` uses it so both models of a fusion embed the same face).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.errors import AcquisitionFailed, ConfigurationError, ImageTooLarge, InvalidImage
from engine.extractor import Extraction
from engine.face.alignment import align
from engine.face.config import FaceConfig
from engine.face.detector import Detection, FaceDetector, box_iou
from engine.face.embedding import FaceEmbedder
from engine.face.jitter import jitter_chips
from engine.face.landmarks import ShapePredictor
from engine.face.quality import assess_quality
from engine.face.yunet import YuNetDetector
from engine.imageio import decode_rgb
from engine.models.manifest import ModelManifest
from engine.types import FaceTemplate, ModelRef, Quality, QualityReason

__all__ = ["NEAR_MIN_IOU", "FaceAnalysis", "FaceExtractor", "as_rgb", "choose_face", "overlapping_face",
           "template_ref"]

# (dx, dy, grow) as fractions of the box size, for ``box_average``
BOX_PERTURBATIONS = ((0, 0, 0), (0.03, 0, 0), (-0.03, 0, 0), (0, 0.03, 0), (0, -0.03, 0),
                     (-0.025, -0.025, 0.05), (0.025, 0.025, -0.05))

U8 = npt.NDArray[np.uint8]

#: ``analyse(near=box)``: the least IoU between the hinted box and a detection taken for the same face
NEAR_MIN_IOU = 0.3


@dataclass
class FaceAnalysis:
    """Everything found in one image before embedding (kept out of ``Extraction`` on purpose: the
    chip and landmarks are biometric data and must not travel in responses or logs)."""

    detections: list[Detection]
    chosen: Detection
    landmarks: npt.NDArray[np.float64]
    chip: U8
    quality: Quality
    upsampled: bool
    stage_ms: dict[str, float] = field(default_factory=dict)
    extra_chips: list[U8] = field(default_factory=list)


def choose_face(dets: list[Detection], width: int, height: int, policy: str) -> Detection:
    """``largest``: biggest box. ``largest_central``: area times a weight falling linearly from 1 at
    the image centre to 0.25 at a corner, so a bystander's bigger face at the edge loses to the
    subject in the middle of the frame."""
    if policy == "largest":
        return max(dets, key=lambda d: (d.area, d.score))
    half_diag = math.hypot(width, height) / 2.0

    def weight(d: Detection) -> float:
        cx, cy = d.centre
        dist = math.hypot(cx - width / 2.0, cy - height / 2.0) / max(half_diag, 1.0)
        return d.area * (1.0 - 0.75 * min(dist, 1.0))

    return max(dets, key=lambda d: (weight(d), d.score))


def overlapping_face(dets: list[Detection], near: Detection) -> Detection:
    """The detection overlapping box ``near`` most; ``AcquisitionFailed`` (NO_FACE) when its IoU is
    below ``NEAR_MIN_IOU`` (YuNet's and mmod's boxes of one LFW face: IoU 0.48-0.77; of two faces
    of one photo: at most 0.13)."""
    best = max(dets, key=lambda d: box_iou(d, near))
    if box_iou(best, near) < NEAR_MIN_IOU:
        raise AcquisitionFailed("no face found at the given box", reasons=[QualityReason.NO_FACE.value],
                                details={"faces_found": len(dets)})
    return best


def as_rgb(image: bytes | U8, cfg: FaceConfig) -> U8:
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_rgb(bytes(image), cfg.limits)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidImage("image must be encoded bytes or a uint8 array", reason="UNSUPPORTED_FORMAT")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidImage(f"array image must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}",
                           reason="UNSUPPORTED_FORMAT")
    h, w = image.shape[:2]
    lim = cfg.limits
    if max(h, w) > lim.max_side or h * w > lim.max_pixels:
        raise ImageTooLarge(f"array image {w}x{h} exceeds the configured limits",
                            details={"width": w, "height": h})
    if min(h, w) < lim.min_side:
        raise InvalidImage(f"image is {w}x{h}, smaller than {lim.min_side} px a side",
                           reason="IMAGE_TOO_SMALL")
    return np.ascontiguousarray(image[:, :, :3])


class FaceExtractor:
    """Implements ``engine.extractor.Extractor`` (kind ``"face"``).

    Build it from model manifests (each ``<name>.json`` beside its model file, sha256-checked) with
    ``FaceExtractor(detector_manifest=..., landmarks_manifest=..., embedding_manifest=...)``
    (``landmarks_manifest=None`` with a detector that finds landmarks itself, YuNet), or with
    ``FaceExtractor.default(embedding=name)``, which converts the models on first use: the embedding
    manifest's ``extra.detector`` / ``extra.landmarks`` name its pipeline (default dlib's mmod + sp5).
    Any ArcFace-style embedding model can be dropped in through its manifest."""

    kind = "face"

    def __init__(self, *, detector_manifest: Path, landmarks_manifest: Path | None,
                 embedding_manifest: Path, config: FaceConfig | None = None) -> None:
        self.config = config or FaceConfig()
        cfg = self.config
        dm = ModelManifest.load(detector_manifest)
        em = ModelManifest.load(embedding_manifest)
        self.detector: FaceDetector | YuNetDetector
        self.predictor: ShapePredictor | None = None
        if dm.output.get("decoder") == "yunet":
            self.detector = YuNetDetector(dm.verify(detector_manifest.parent), dm, cfg.yunet, cfg.threads)
            self.layout = "yunet5"
        else:
            if landmarks_manifest is None:
                raise ConfigurationError(f"detector {dm.name} finds no landmarks: give a landmarks model")
            lm = ModelManifest.load(landmarks_manifest)
            self.detector = FaceDetector(dm.verify(detector_manifest.parent), dm, cfg.detector, cfg.threads)
            self.predictor = ShapePredictor(lm.verify(landmarks_manifest.parent), lm)
            self.layout = "dlib5"
        wanted = "yunet5" if em.alignment.get("points") == "yunet5" else "dlib5"
        if wanted != self.layout:
            raise ConfigurationError(f"embedding {em.name} is aligned on {wanted} points but detector "
                                     f"{dm.name} gives {self.layout} points")
        self.embedder = FaceEmbedder(em.verify(embedding_manifest.parent), em, cfg.threads, cfg.batch_size)
        self._model = template_ref(em, cfg)

    @classmethod
    def default(cls, config: FaceConfig | None = None, *, embedding: str = "sface",
                model_directory: Path | None = None) -> FaceExtractor:
        """The named embedding model and the detector (and landmarks model) its manifest names,
        converted if needed."""
        from engine.models.registry import ensure_model

        em, em_path = ensure_model(embedding, model_directory)
        det_name = str(em.extra.get("detector", "dlib_mmod"))
        lm_name = em.extra.get("landmarks", "dlib_sp5")
        dm, dm_path = ensure_model(det_name, model_directory)
        lm_json = None
        if lm_name is not None:
            lm, lm_path = ensure_model(str(lm_name), model_directory)
            lm_json = lm_path.parent / f"{lm.name}.json"
        return cls(detector_manifest=dm_path.parent / f"{dm.name}.json", landmarks_manifest=lm_json,
                   embedding_manifest=em_path.parent / f"{em.name}.json", config=config)

    @property
    def model(self) -> ModelRef:
        return self._model

    def analyse(self, image: bytes | U8, near: Detection | None = None) -> FaceAnalysis:
        """Decode, detect, choose, landmark, align, assess. Raises ``AcquisitionFailed`` (NO_FACE).
        ``near``: take the detection overlapping this box most (IoU >= ``NEAR_MIN_IOU``), not the
        configured choice; NO_FACE when none does."""
        cfg, dcfg = self.config, self.config.detector
        ms: dict[str, float] = {}
        t0 = time.perf_counter()
        rgb = as_rgb(image, cfg)
        t1 = time.perf_counter()
        ms["decode"] = (t1 - t0) * 1e3
        h, w = rgb.shape[:2]
        dets, upsampled = self._detect(rgb)
        t2 = time.perf_counter()
        ms["detect"] = (t2 - t1) * 1e3
        if not dets:
            raise AcquisitionFailed("no face found in the image", reasons=[QualityReason.NO_FACE.value],
                                    details={"faces_found": 0})
        chosen = choose_face(dets, w, h, dcfg.selection) if near is None else overlapping_face(dets, near)
        landmarks = self._landmarks(rgb, chosen)
        t3 = time.perf_counter()
        ms["landmarks"] = (t3 - t2) * 1e3
        chip = align(rgb, landmarks, self.embedder.manifest.alignment)
        extra: list[U8] = []
        if cfg.mirror_photo:  # the landmark + chip stages again on the mirrored photo
            mirrored = self._mirror_landmarks(rgb, chosen)
            if mirrored is not None:
                extra.append(align(rgb[:, ::-1], mirrored, self.embedder.manifest.alignment))
        t4 = time.perf_counter()
        ms["align"] = (t4 - t3) * 1e3
        quality = assess_quality(chosen, landmarks, chip, len(dets), cfg.quality, self.layout)
        # which face was used (box in image pixels, share of the image): a reply can name it when the
        # photo held several faces
        quality.measures.update(face_box_x=float(chosen.left), face_box_y=float(chosen.top),
                                face_box_w=float(chosen.width), face_box_h=float(chosen.height),
                                face_share=chosen.area / float(w * h))
        ms["quality"] = (time.perf_counter() - t4) * 1e3
        return FaceAnalysis(dets, chosen, landmarks, chip, quality, upsampled, ms, extra)

    def _mirror_landmarks(self, rgb: U8, d: Detection) -> npt.NDArray[np.float64] | None:
        """Landmarks of face ``d`` found independently in the mirrored photo: dlib's predictor on the
        mirrored box; YuNet's own points of the detection nearest the mirrored box (None if the
        detector does not find it again)."""
        w = rgb.shape[1]
        flipped = rgb[:, ::-1]  # a view: the predictor and the sampler index it directly
        if self.predictor is None:
            cx, cy = w - 1 - d.centre[0], d.centre[1]
            near = [f for f in self.detector.detect(np.ascontiguousarray(flipped))
                    if abs(f.centre[0] - cx) < d.width / 4 and abs(f.centre[1] - cy) < d.height / 4]
            if not near:
                return None
            best = min(near, key=lambda f: abs(f.centre[0] - cx) + abs(f.centre[1] - cy))
            return np.asarray(best.landmarks, dtype=np.float64)
        fbox = np.array([[w - 1 - d.right, d.top, w - 1 - d.left, d.bottom]])
        out: npt.NDArray[np.float64] = self.predictor.predict(flipped, fbox)[0].astype(np.float64)
        return out

    def _landmarks(self, rgb: U8, d: Detection) -> npt.NDArray[np.float64]:
        """(5, 2) landmarks of box ``d``: the detector's own (YuNet), else dlib's predictor; with
        ``box_average`` the mean over the box and six slightly moved or scaled copies (the regression
        trees' output depends on where the box falls)."""
        if self.predictor is None:
            return np.asarray(d.landmarks, dtype=np.float64)
        if not self.config.box_average:
            box = np.array([[d.left, d.top, d.right, d.bottom]])
            one: npt.NDArray[np.float64] = self.predictor.predict(rgb, box)[0].astype(np.float64)
            return one
        bw, bh = d.width, d.height
        boxes = [[d.left + dx * bw, d.top + dy * bh, d.right + (dx + s) * bw, d.bottom + (dy + s) * bh]
                 for dx, dy, s in BOX_PERTURBATIONS]
        pts = self.predictor.predict(rgb, np.round(np.array(boxes)))
        mean: npt.NDArray[np.float64] = pts.mean(axis=0)
        return mean

    def _detect(self, rgb: U8) -> tuple[list[Detection], bool]:
        """The passes of ``DetectorConfig`` (fast, full, upsampled); returns (faces, upsampled).
        YuNet: its own passes (``YuNetConfig``)."""
        if isinstance(self.detector, YuNetDetector):
            return self.detector.detect_passes(rgb)
        dcfg = self.config.detector
        long_side = max(rgb.shape[:2])
        fast = min(1.0, dcfg.fast_side / long_side)
        full = min(1.0, dcfg.max_side / long_side)
        up = min(80.0 / max(dcfg.min_face_px, 1), dcfg.max_upsampled_side / long_side)
        passes = [(fast, 0.0, False)]
        if full > fast * 1.05:
            passes.append((full, fast * 1.01, False))
        if up > max(full, fast) * 1.05:
            passes.append((up, max(full, fast) * 1.01, True))
        for start, stop, is_up in passes:
            dets = self.detector.detect(rgb, upsample=start, min_scale=stop)
            if dets:
                return dets, is_up
        return [], False

    def embed_chips(self, chips: U8) -> npt.NDArray[np.float32]:
        """(B, H, W, 3) aligned chips -> (B, dim) L2-normalised embeddings, with the configured mirror
        averaging and jitter."""
        cfg = self.config
        groups = 1
        if cfg.jitter > 0:
            chips = jitter_chips(chips, cfg.jitter)
            groups = cfg.jitter + 1
        return self.embedder.embed_normalised(chips, flip=cfg.flip_average, groups=groups)

    def embed_views(self, views: U8) -> npt.NDArray[np.float32]:
        """(k, H, W, 3) chips of ONE face (main chip + extra views) -> its (dim,) L2-normalised
        embedding: raw outputs of every view, its jittered copies and mirror images summed."""
        cfg = self.config
        if cfg.jitter > 0:
            views = jitter_chips(views, cfg.jitter)
        out: npt.NDArray[np.float32] = self.embedder.embed_normalised(
            views, flip=cfg.flip_average, groups=views.shape[0])[0]
        return out

    def extract(self, image: bytes | U8, near: Detection | None = None) -> Extraction:
        a = self.analyse(image, near)
        t = time.perf_counter()
        vec = self.embed_views(np.stack([a.chip, *a.extra_chips]))
        a.stage_ms["embed"] = (time.perf_counter() - t) * 1e3
        details = {"faces_found": len(a.detections), "detector_score": round(a.chosen.score, 4),
                   "upsampled": a.upsampled, "stage_ms": {k: round(v, 3) for k, v in a.stage_ms.items()}}
        return Extraction(FaceTemplate(vec, self.model), a.quality, details)


def template_ref(manifest: ModelManifest, cfg: FaceConfig) -> ModelRef:
    """Templates made with mirror averaging or jitter differ (slightly) from plain ones, so the ref
    says so: galleries never mix them."""
    suffix = (("+flip" if cfg.flip_average else "") + ("+mphoto" if cfg.mirror_photo else "")
              + ("+boxavg" if cfg.box_average else "") + (f"+jit{cfg.jitter}" if cfg.jitter else ""))
    return ModelRef(manifest.model_id, manifest.version + suffix)
