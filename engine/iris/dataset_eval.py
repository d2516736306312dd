"""Accuracy of the iris pipeline on a labelled image set (all-vs-all), shared by the accuracy tests,
the calibration script (``models/calibrate_iris.py``) and the extraction benchmark.

Protocol: every image is extracted once; an image whose extraction raises ``SampleRejected`` is a
failure to enrol (FTE) and takes no part in comparisons; every other pair of templates is compared
once with ``engine.iris.matcher.IrisMatcher`` (genuine = same eye). The quality gate is *not*
applied (its rejections are reported as ``quality_rejected``), so the distributions describe the
matcher on everything the extractor could encode.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import SampleRejected
from engine.index.hamming import best_scores, pad_words, shift_order, shifted_rows
from engine.iris.extractor import IrisExtractor
from engine.iris.matcher import IrisMatcher
from engine.metrics.verification import eer, fnmr_at_fmr
from engine.types import IrisTemplate

__all__ = ["DatasetScores", "evaluate", "read_manifest", "score_all_pairs"]

F64 = npt.NDArray[np.float64]


def read_manifest(shared_data: Path, name: str) -> list[tuple[str, Path]]:
    """(identity, image path) rows of ``<shared_data>/iris_<name>.csv`` (``casia1``, ``mmu2``)."""
    with (shared_data / f"iris_{name}.csv").open(newline="") as f:
        return [(row["identity"], shared_data / row["path"]) for row in csv.DictReader(f)]


@dataclass
class DatasetScores:
    """Raw results of one data set: similarity arrays and counts; ``extract_ms`` per image."""

    name: str
    images: int
    failures: int
    quality_rejected: int
    genuine: F64
    impostor: F64
    extract_ms: list[float] = field(default_factory=list)

    @property
    def fte(self) -> float:
        return self.failures / self.images if self.images else float("nan")

    def summary(self) -> dict[str, Any]:
        e = eer(self.genuine, self.impostor)
        points = fnmr_at_fmr(self.genuine, self.impostor)
        ops = {f"fnmr_at_fmr_{p.target:g}": p.false_negative_rate for p in points}
        return {
            "dataset": self.name, "images": self.images, "fte": self.fte, "failures": self.failures,
            "quality_rejected": self.quality_rejected, "genuine_pairs": int(self.genuine.size),
            "impostor_pairs": int(self.impostor.size), "eer": e.eer, "eer_threshold": e.threshold,
            **ops, "genuine_mean": float(self.genuine.mean()), "impostor_mean": float(self.impostor.mean()),
            "impostor_max": float(self.impostor.max()),
            "extract_ms_p50": float(np.median(self.extract_ms)) if self.extract_ms else float("nan"),
        }


def score_all_pairs(templates: list[IrisTemplate], identities: list[str],
                    matcher: IrisMatcher | None = None) -> tuple[F64, F64]:
    """(genuine, impostor) similarities over all unordered pairs, computed by the 1:N kernel of
    ``engine.index.hamming`` with the matcher's parameters (the same numbers as
    ``IrisMatcher.similarity``, which the unit tests check, ~100x faster)."""
    m = matcher or IrisMatcher()
    n = len(templates)
    if n < 2:
        return np.zeros(0), np.zeros(0)
    t0 = templates[0]
    shifts = shift_order(m.params.max_shift, t0.columns)
    n0 = m.params.n_typical_for(t0.code.size * 8)
    gc = pad_words(np.stack([t.code for t in templates]))
    gm = pad_words(np.stack([t.mask for t in templates]))
    sims = np.zeros((n, n), np.float64)
    for i, t in enumerate(templates[:-1]):
        pc, pm = shifted_rows(t.code, t.mask, shifts, t.bytes_per_column)
        rows = np.arange(i + 1, n, dtype=np.int64)
        sim, _, _ = best_scores(pc[None], pm[None], gc, gm, rows, n0)
        sims[i, i + 1 :] = sim[0]
    iu = np.triu_indices(n, 1)
    ids = np.asarray(identities)
    same = (ids[:, None] == ids[None, :])[iu]
    flat = sims[iu]
    return flat[same], flat[~same]


def evaluate(extractor: IrisExtractor, rows: list[tuple[str, Path]], name: str,
             matcher: IrisMatcher | None = None) -> DatasetScores:
    """Extract every image of ``rows`` and score all pairs (see module docstring)."""
    templates: list[IrisTemplate] = []
    ids: list[str] = []
    failures = rejected = 0
    times: list[float] = []
    for identity, path in rows:
        data = path.read_bytes()
        t0 = time.perf_counter()
        try:
            ex = extractor.extract(data)
        except SampleRejected:
            failures += 1
            continue
        times.append((time.perf_counter() - t0) * 1000.0)
        if not isinstance(ex.template, IrisTemplate):
            raise TypeError("iris extractor returned a non-iris template")
        rejected += 0 if ex.quality.ok else 1
        templates.append(ex.template)
        ids.append(identity)
    gen, imp = score_all_pairs(templates, ids, matcher)
    return DatasetScores(name, len(rows), failures, rejected, gen, imp, times)
