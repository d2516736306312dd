"""All-against-all similarity matrices of templates (the engine's score convention: higher = more alike).

A ``Scorer`` maps two template lists to a (len(a), len(b)) float32 similarity matrix. Face: cosine of
the normalised embeddings (what every face index computes exactly). Iris: the engine's 1:1 iris matcher
(``engine.iris.matcher``, Daugman-normalised, the numbers the 1:N index computes too) when it is
installed, so evaluation measures the matcher that production uses; otherwise
the numpy reference below (fractional Hamming distance over bits valid in both masks, minimised over
circular shifts of whole angular columns, similarity = 1 - HD), which is also the bench baseline.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput, ModelMismatch
from engine.index.base import TemplateIndex
from engine.types import FaceTemplate, IrisTemplate, ModelRef, Template

__all__ = ["Scorer", "default_scorer", "face_similarity", "index_scorer", "iris_similarity", "matcher_scorer"]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
Scorer = Callable[[Sequence[Template], Sequence[Template]], F32]

#: Angular columns each way tried by the reference iris matcher (as engine.iris.matcher: +-15 of 256).
DEFAULT_IRIS_SHIFTS = 15


def _same_model(a: Sequence[Template], b: Sequence[Template]) -> ModelRef | None:
    models = {t.model for t in (*a, *b)}
    if len(models) > 1:
        raise ModelMismatch(f"templates of several models cannot be compared: {sorted(map(str, models))}")
    return next(iter(models), None)


def face_similarity(a: Sequence[Template], b: Sequence[Template]) -> F32:
    """Cosine similarity, (len(a), len(b))."""
    _same_model(a, b)
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    xa = np.stack([_face(t).vector for t in a])
    xb = np.stack([_face(t).vector for t in b])
    if xa.shape[1] != xb.shape[1]:
        raise ModelMismatch("face templates of different dimensions")
    return np.asarray(xa @ xb.T, dtype=np.float32)


def iris_similarity(
    a: Sequence[Template], b: Sequence[Template], max_shift: int = DEFAULT_IRIS_SHIFTS
) -> F32:
    """1 - min over shifts in [-max_shift, max_shift] columns of the masked fractional Hamming distance.
    A pair with no bit valid in both masks at every shift scores 0 (no evidence)."""
    _same_model(a, b)
    out = np.zeros((len(a), len(b)), dtype=np.float32)
    if not a or not b:
        return out
    ia, ib = [_iris(t) for t in a], [_iris(t) for t in b]
    nbytes, columns = ib[0].code.size, ib[0].columns
    if any(t.code.size != nbytes or t.columns != columns for t in (*ia, *ib)):
        raise ModelMismatch("iris templates of different code sizes")
    pad = (-nbytes) % 8  # uint64 words need a multiple of 8 bytes; zero-mask padding adds no bits
    codes = _words(np.stack([t.code for t in ib]), pad)
    masks = _words(np.stack([t.mask for t in ib]), pad)
    step = nbytes // columns
    shifts = range(-max_shift, max_shift + 1)
    for row, q in enumerate(ia):
        best = np.full(len(ib), np.inf)
        for s in shifts:
            qc = _words(np.roll(q.code, s * step)[None, :], pad)
            qm = _words(np.roll(q.mask, s * step)[None, :], pad)
            valid = masks & qm
            bits = np.bitwise_count(valid).sum(axis=1, dtype=np.int64)
            diff = np.bitwise_count((codes ^ qc) & valid).sum(axis=1, dtype=np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                hd = np.where(bits > 0, diff / np.maximum(bits, 1), np.inf)
            np.minimum(best, hd, out=best)
        out[row] = np.where(np.isfinite(best), 1.0 - best, 0.0)
    return out


def _words(x: npt.NDArray[np.uint8], pad: int) -> npt.NDArray[np.uint64]:
    if pad:
        x = np.concatenate([x, np.zeros((x.shape[0], pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(x).view(np.uint64)


def _face(t: Template) -> FaceTemplate:
    if not isinstance(t, FaceTemplate):
        raise InvalidInput("expected face templates")
    return t


def _iris(t: Template) -> IrisTemplate:
    if not isinstance(t, IrisTemplate):
        raise InvalidInput("expected iris templates")
    return t


def index_scorer(make_index: Callable[[ModelRef], TemplateIndex]) -> Scorer:
    """A scorer that enrolls ``b`` into a fresh engine index and asks it ``score`` for each of ``a``
    (the 1:1 path of the engine, so its normalisation and rotation handling are what is measured)."""

    def score(a: Sequence[Template], b: Sequence[Template]) -> F32:
        model = _same_model(a, b)
        out = np.zeros((len(a), len(b)), dtype=np.float32)
        if model is None or not a or not b:
            return out
        index = make_index(model)
        labels = np.arange(len(b), dtype=np.int64)
        index.add(labels, list(b))
        for row, q in enumerate(a):
            out[row] = index.score(q, labels)
        return out

    return score


def matcher_scorer(similarity: Callable[[Template, Template], float]) -> Scorer:
    """A scorer from a 1:1 similarity function (the engine's ``IrisMatcher.similarity``)."""

    def score(a: Sequence[Template], b: Sequence[Template]) -> F32:
        _same_model(a, b)
        out = np.zeros((len(a), len(b)), dtype=np.float32)
        for i, q in enumerate(a):
            for j, r in enumerate(b):
                out[i, j] = similarity(q, r)
        return out

    return score


def default_scorer(kind: str) -> tuple[Scorer, str]:
    """(scorer, description). Iris uses the engine's 1:1 ``IrisMatcher`` when installed."""
    if kind == "face":
        return face_similarity, "cosine (numpy, exact)"
    if kind != "iris":
        raise InvalidInput(f"unknown template kind {kind!r}")
    try:
        module: Any = importlib.import_module("engine.iris.matcher")
        matcher = module.IrisMatcher()
    except (ImportError, AttributeError):
        log.info("engine.iris.matcher not available; using the numpy reference iris matcher")
        return iris_similarity, f"numpy reference masked Hamming, +-{DEFAULT_IRIS_SHIFTS} columns"
    return matcher_scorer(lambda a, b: float(matcher.similarity(a, b))), \
        "engine.iris.matcher.IrisMatcher.similarity"
