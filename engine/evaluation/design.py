"""Gallery / probe design of an evaluation set.

For every subject with two or more samples, its *first* sample (manifest order, deterministic) is
enrolled and the others are mated probes. Subjects with a single sample are non-mated probes (never
enrolled). If the enrolment sample fails extraction the subject is a failure to enroll (FTE); there
is no retry with the next sample, so FTE is the share of subjects whose designated sample failed, and
their probes are mated searches that cannot succeed (counted as misses in FNIR and rank-k).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Design", "make_design"]

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Design:
    """Indices into the sample list. ``probe_mate`` (n_probes,) = position in ``gallery`` of the
    probe's mate, -1 for a non-mated probe. ``subject_ids`` (n_samples,) int label per sample."""

    gallery: I64
    probes: I64
    probe_mate: I64
    subject_ids: I64


def make_design(subjects: Sequence[str]) -> Design:
    ids: dict[str, int] = {}
    subject_ids = np.array([ids.setdefault(s, len(ids)) for s in subjects], dtype=np.int64)
    counts = np.bincount(subject_ids, minlength=len(ids))
    first = np.full(len(ids), -1, dtype=np.int64)
    gallery: list[int] = []
    gallery_pos: dict[int, int] = {}
    probes: list[int] = []
    mates: list[int] = []
    for i, sid in enumerate(subject_ids.tolist()):
        if counts[sid] >= 2 and first[sid] < 0:
            first[sid] = i
            gallery_pos[sid] = len(gallery)
            gallery.append(i)
            continue
        probes.append(i)
        mates.append(gallery_pos.get(sid, -1))
    return Design(np.array(gallery, dtype=np.int64), np.array(probes, dtype=np.int64),
                  np.array(mates, dtype=np.int64), subject_ids)
