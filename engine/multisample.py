"""Several captures of one modality in one call (stations take three frames) -> one template.

The one place where frames are combined; ``Engine.extract`` (enroll, insert, verify, identify, so
also the client CLI's repeated ``--face``/``--iris-left``/``--iris-right``) and ``nasname evaluate``'s
multi-sample design (``engine.evaluation.multisample``) both call :func:`combine`.

Frames the quality gate refused never get here (the engine drops them and says why in their
``SampleResult``). Of the usable frames, by the :class:`Strategy` the caller gives:

* ``best``: the frame with the highest quality score (ties: the first sent);
* ``fuse`` for face: the mean of the L2-normalised embeddings of the best ``FACE_FUSE_MAX`` frames by
  quality, normalised again (the engine then thresholds face comparisons with the calibration of
  fused templates, ``engine.calibration.FUSED_FACE``);
* ``fuse`` for iris: every frame is aligned to a reference frame (the medoid: the smallest summed
  distance to the others) by the rotation the engine's matcher (``engine.iris.matcher``) finds
  best; then each bit takes the majority of the frames where it is valid, and a bit is kept in
  the mask only where the frames agree enough (``IRIS_MIN_AGREEMENT``; a tie is never kept). This
  is open-iris's majority-vote template aggregation with its bit weights turned into a mask
  (nasname's matcher has no weighted bits).

Which strategy each kind uses by default was chosen by measurement, see docs/QUALITY.md ("Multi-sample
capture"); the engine takes it from its configuration (``face_frames``, ``iris_frames``; both fuse by
default). A fused face template sits closer to every other face, so the engine thresholds face
comparisons with the calibration of fused templates while it fuses faces (``Engine._frames_strategy``
keeps the best frame for a model without one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import InvalidInput, ModelMismatch
from engine.types import FaceTemplate, IrisTemplate, Template

if TYPE_CHECKING:  # the iris package loads its models' code: imported when an iris is fused
    from engine.iris.matcher import IrisMatcher, MatchResult

__all__ = ["FACE_FUSE_MAX", "IRIS_MIN_AGREEMENT", "MAX_FRAMES", "Combined", "Frame", "Strategy", "best_frame",
           "best_frames", "combine", "majority_iris", "mean_face"]


class Strategy(StrEnum):
    BEST = "best"  # the best frame by quality
    FUSE = "fuse"  # all usable frames fused into one template

#: Frames of one modality one call may carry: stations take three; a few more are tolerated, more
#: would only cost extraction time (each frame is a full extraction).
MAX_FRAMES = 5

#: Face frames fused into one template at most (the best by quality): the fused calibration
#: (``engine.calibration.FUSED_FACE``) was measured on templates of up to this many frames, and every
#: extra frame fused makes impostors look a little more alike.
FACE_FUSE_MAX = 3

#: Share of the frames (valid at that bit) that must agree with the majority for an iris bit to stay
#: valid in the fused mask. 1.0: unanimous only; just above 0.5: a strict majority (ties masked).
IRIS_MIN_AGREEMENT = 0.6


@dataclass(frozen=True)
class Frame:
    """One usable capture: its template and the extractor's quality score (None for a template the
    client computed: no quality known)."""

    template: Template
    quality: float | None = None


@dataclass(frozen=True)
class Combined:
    """The template a modality is searched / stored with, and which frames (indices into the frames
    given) went into it."""

    template: Template
    used: tuple[int, ...]
    strategy: Strategy


def best_frames(frames: Sequence[Frame], n: int) -> tuple[int, ...]:
    """Indices of the ``n`` frames with the highest quality scores (unknown quality counts lowest;
    ties: the first sent), in the order they were sent."""
    scores = [f.quality if f.quality is not None else -np.inf for f in frames]
    ranked = sorted(range(len(frames)), key=lambda i: (-scores[i], i))
    return tuple(sorted(ranked[:n]))


def best_frame(frames: Sequence[Frame]) -> int:
    """Index of the frame with the highest quality score (unknown quality counts lowest; ties: the
    first)."""
    if not frames:
        raise InvalidInput("no frame to choose from", reason="NO_BIOMETRIC_DATA")
    return best_frames(frames, 1)[0]


def mean_face(templates: Sequence[FaceTemplate]) -> FaceTemplate:
    """Mean of the (unit) embeddings, normalised again (``FaceTemplate`` normalises)."""
    _same_model(templates)
    if len({t.vector.size for t in templates}) != 1:
        raise ModelMismatch("face templates of different dimensions cannot be fused")
    mean = np.mean(np.stack([t.vector.astype(np.float64) for t in templates]), axis=0)
    if not np.any(mean):  # opposite embeddings: nothing in common, keep the first rather than zero
        return templates[0]
    return FaceTemplate(mean.astype(np.float32), templates[0].model)


def majority_iris(templates: Sequence[IrisTemplate], *, min_agreement: float = IRIS_MIN_AGREEMENT,
                  reference: int | None = None, matcher: IrisMatcher | None = None) -> IrisTemplate:
    """Majority-vote code with a consistency mask (see the module's docstring). ``reference``: the
    frame the others are aligned to (default: the medoid)."""
    from engine.iris.matcher import IrisMatcher, check_compatible

    if not 0.5 <= min_agreement <= 1.0:
        raise InvalidInput("min_agreement must be in [0.5, 1]", reason="INVALID_CONFIG")
    _same_model(templates)
    for t in templates[1:]:
        check_compatible(t, templates[0])
    if len(templates) == 1:
        return templates[0]
    matcher = matcher or IrisMatcher()
    n = len(templates)
    results = [[matcher.match(templates[i], templates[j]) if i != j else None for j in range(n)]
               for i in range(n)]
    if reference is None:
        # medoid: a frame unlike the others (a poor segmentation that passed the gate) is not the
        # one everything is aligned to
        cost = [sum(_distance(r) for r in row if r is not None) for row in results]
        reference = int(np.argmin(cost))
    ref = templates[reference]
    codes, masks = [], []
    for i, t in enumerate(templates):
        shift = 0 if i == reference else _shift(results[i][reference])
        step = shift * t.bytes_per_column  # the matcher's roll: whole columns of bytes
        codes.append(np.unpackbits(np.roll(t.code, step)))
        masks.append(np.unpackbits(np.roll(t.mask, step)))
    code = np.stack(codes).astype(np.int32)
    mask = np.stack(masks).astype(np.int32)
    valid = mask.sum(axis=0)
    ones = (code & mask).sum(axis=0)
    zeros = valid - ones
    agree = np.maximum(ones, zeros)
    keep = (valid > 0) & (ones != zeros) & (agree >= min_agreement * valid)
    fused_code = np.packbits((ones > zeros).astype(np.uint8))
    fused_mask = np.packbits(keep.astype(np.uint8))
    return IrisTemplate(fused_code, fused_mask, ref.columns, ref.model)


def combine(frames: Sequence[Frame], strategy: Strategy) -> Combined:
    """The one template of a modality's usable frames (all of one kind and model), by ``strategy``
    (the engine's ``face_frames`` / ``iris_frames``: the configuration is the one home of the
    defaults)."""
    if not frames:
        raise InvalidInput("no usable frame", reason="NO_BIOMETRIC_DATA")
    kind = frames[0].template.modality_kind
    if any(f.template.modality_kind != kind for f in frames):
        raise InvalidInput("frames of one modality must all be face or all be iris templates",
                           reason="INVALID_TEMPLATE")
    if len(frames) == 1 or strategy is Strategy.BEST:
        best = best_frame(frames)
        return Combined(frames[best].template, (best,), Strategy.BEST)
    used = tuple(range(len(frames)))
    if kind == "face" and len(frames) > FACE_FUSE_MAX:
        used = best_frames(frames, FACE_FUSE_MAX)
    templates = [frames[i].template for i in used]
    if kind == "face":
        fused: Template = mean_face([t for t in templates if isinstance(t, FaceTemplate)])
    else:
        ordered = [t for t in templates if isinstance(t, IrisTemplate)]
        fused = majority_iris(ordered)
    return Combined(fused, used, Strategy.FUSE)


def _shift(result: MatchResult | None) -> int:
    return 0 if result is None or result.reason is not None else result.shift


def _distance(result: MatchResult) -> float:
    return 1.0 if result.reason is not None else result.hd_norm  # no bit in common: as far as can be


def _same_model(templates: Sequence[Template]) -> None:
    if not templates:
        raise InvalidInput("no template to fuse", reason="NO_BIOMETRIC_DATA")
    models = {t.model for t in templates}
    if len(models) > 1:
        raise ModelMismatch(f"frames of several models cannot be combined: {sorted(map(str, models))}")
