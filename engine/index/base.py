"""The contract every 1:N template index honours (face: FAISS float; iris: masked Hamming).

Indexes are *derived data*: the store is the record of truth, an index can always be rebuilt from it.
Labels are the store's int64 record ids (one template per record per modality). Every search returns a
similarity (higher = more alike, ``engine.types``), so the gallery can fuse modalities uniformly.

Short names inside index code follow FAISS: ``xb`` base, ``xq`` queries, ``D`` scores, ``I`` labels,
``k``, ``nq``, ``d``.

Thread-safety: ``search`` may be called from many threads at once; ``add``/``remove``/``save`` are
called by one writer at a time, never concurrently with ``search`` (the gallery holds a
readers-writer lock around them).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from engine.types import ModelRef, Template

__all__ = ["Labels", "SearchResult", "TemplateIndex"]

Labels = npt.NDArray[np.int64]

# (D, I): D float32 (nq, k) similarities sorted descending per row; I int64 (nq, k) labels, -1 where
# fewer than k results exist (its D is -inf there).
SearchResult = tuple[npt.NDArray[np.float32], Labels]


class TemplateIndex(Protocol):
    @property
    def model(self) -> ModelRef: ...

    def __len__(self) -> int: ...

    def add(self, labels: Labels, templates: list[Template]) -> None:
        """Add (or replace) templates under ``labels``. Raises ``ModelMismatch`` for another model."""
        ...

    def remove(self, labels: Labels) -> None:
        """Remove labels (unknown labels are ignored: removal is idempotent for replay)."""
        ...

    def search(self, queries: list[Template], k: int, allowed: Labels | None = None) -> SearchResult:
        """Top-``k`` per query, restricted to ``allowed`` labels when given (``None`` = everything)."""
        ...

    def score(self, query: Template, labels: Labels) -> npt.NDArray[np.float32]:
        """Similarity of ``query`` to each given label (1:1 verify); NaN for labels not present."""
        ...

    def save(self, path: Path | BinaryIO) -> None:
        """Write a snapshot: atomically to a path (temp file + fsync + rename), or into a stream (the
        gallery gives a sealing, encrypting one)."""
        ...
