"""The evaluation manifest: a CSV with columns ``identity,modality,path`` (path relative to the CSV).

``modality`` is ``face``, ``iris_left``, ``iris_right`` or ``iris`` (an eye of unknown side). Left and
right eyes of one person are different biometric subjects, so the *subject* of an iris sample is the
identity plus its side.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput

__all__ = ["MODALITIES", "Sample", "read_manifest"]

MODALITIES = {"face": "face", "iris_left": "iris", "iris_right": "iris", "iris": "iris"}
COLUMNS = ("identity", "modality", "path")


@dataclass(frozen=True)
class Sample:
    """One image: ``subject`` groups samples of the same face / eye; ``kind`` is face or iris."""

    identity: str
    modality: str
    path: Path

    @property
    def kind(self) -> str:
        return MODALITIES[self.modality]

    @property
    def subject(self) -> str:
        return self.identity if self.modality in ("face", "iris") else f"{self.identity}/{self.modality}"


def read_manifest(path: Path, modality: str | None = None, limit: int | None = None) -> list[Sample]:
    """Samples in file order. ``modality``: keep one kind (``face``/``iris``) or one exact modality.
    ``limit``: keep the first ``limit`` subjects of each kind (in order of first appearance), with all
    their samples, so the gallery/probe design of a limited run is a subset of the full one."""
    if modality is not None and modality not in MODALITIES:
        raise InvalidInput(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    if limit is not None and limit < 1:
        raise InvalidInput(f"--limit must be >= 1, got {limit}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InvalidInput(f"cannot read manifest {path}: {exc}") from exc
    if rows and not set(COLUMNS) <= set(rows[0]):
        raise InvalidInput(f"manifest {path} must have columns {','.join(COLUMNS)}")
    samples = [_sample(path, i + 2, row) for i, row in enumerate(rows)]
    if modality is not None:
        samples = [s for s in samples if modality in (s.modality, s.kind)]
    if limit is not None:
        samples = _first_subjects(samples, limit)
    if not samples:
        raise InvalidInput(f"manifest {path} has no samples for this selection")
    return samples


def _sample(manifest: Path, line: int, row: dict[str, str]) -> Sample:
    identity, modality, rel = (row.get(c, "").strip() for c in COLUMNS)
    if not identity or not rel:
        raise InvalidInput(f"{manifest}:{line}: empty identity or path")
    if modality not in MODALITIES:
        raise InvalidInput(f"{manifest}:{line}: unknown modality {modality!r}")
    return Sample(identity, modality, (manifest.parent / rel).resolve())


def _first_subjects(samples: Sequence[Sample], limit: int) -> list[Sample]:
    kept: dict[str, set[str]] = {}
    out = []
    for s in samples:
        subjects = kept.setdefault(s.kind, set())
        if s.subject not in subjects and len(subjects) >= limit:
            continue
        subjects.add(s.subject)
        out.append(s)
    return out
