"""Run one extractor over a list of image files, keeping failures apart (they are counted, not hidden)."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from engine.errors import InvalidInput, SampleRejected
from engine.extractor import Extractor
from engine.types import Quality, Template

__all__ = ["ExtractionRun", "extract_files"]

log = logging.getLogger(__name__)


@dataclass
class ExtractionRun:
    """``templates[i]`` is None when file ``i`` gave no template; ``failures`` counts the reason codes
    (``NO_BIOMETRIC_FOUND``, ``QUALITY_CHECK_FAILED``, ``INVALID_IMAGE``...), ``rejected_quality``
    counts extractions that succeeded but whose quality verdict was not ok (kept as failures too,
    because the engine's gate would refuse them). ``stage_ms`` collects the extractor's per-stage
    timings (``details["stage_ms"]``) and ``total_ms`` the wall time per file. ``qualities[i]``: the
    quality verdict of file ``i`` (None when extraction itself failed), kept also for samples the gate
    refused, so that the gate can be calibrated (``models/calibrate_quality.py``)."""

    templates: list[Template | None]
    failures: Counter[str] = field(default_factory=Counter)
    qualities: list[Quality | None] = field(default_factory=list)
    #: ``refused[i]``: the template of a sample the gate refused (``templates[i]`` is None then), kept
    #: only with ``keep_refused`` (to measure how the refused samples would have matched)
    refused: list[Template | None] = field(default_factory=list)
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    total_ms: list[float] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(t is None for t in self.templates)


def extract_files(
    extractor: Extractor, paths: Sequence[Path], *, apply_quality_gate: bool = True,
    progress: bool = True, label: str = "extract", keep_refused: bool = False,
) -> ExtractionRun:
    run = ExtractionRun(templates=[])
    for path in tqdm(paths, desc=label, unit="img", file=sys.stderr, disable=None if progress else True):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read image {path}: {exc}") from exc
        t0 = time.perf_counter()
        try:
            result = extractor.extract(data)
        except (SampleRejected, InvalidInput) as exc:
            run.total_ms.append((time.perf_counter() - t0) * 1e3)
            run.failures[exc.reason] += 1
            run.templates.append(None)
            run.qualities.append(None)
            run.refused.append(None)
            continue
        run.total_ms.append((time.perf_counter() - t0) * 1e3)
        run.qualities.append(result.quality)
        for stage, ms in dict(result.details.get("stage_ms", {})).items():
            run.stage_ms.setdefault(str(stage), []).append(float(ms))
        if apply_quality_gate and not result.quality.ok:
            run.failures["QUALITY_CHECK_FAILED"] += 1
            run.templates.append(None)
            run.refused.append(result.template if keep_refused else None)
            continue
        run.templates.append(result.template)
        run.refused.append(None)
    if run.failures:
        log.info("%s: %d of %d samples failed (%s)", label, run.n_failed, len(paths),
                 ", ".join(f"{k}={v}" for k, v in sorted(run.failures.items())))
    return run
