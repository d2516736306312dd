"""Batch de-duplication for investigators: N:N over the gallery (or a partition), or a batch (manifest
folder or another gallery) against the gallery, as resumable jobs producing clusters of suspected
duplicates and reports.

    engine.dedup.jobs      DedupJob (create / open / run / progress / cancel), JobSpec, Progress
    engine.dedup.pairs     per-modality candidate kernels (exact GEMM / popcount; fast IVF / coarse-to-fine)
    engine.dedup.fuse      thresholds (target FPIR or FMR) and fusion across shared modalities
    engine.dedup.clusters  union-find clusters, weakest link, risk ranking
    engine.dedup.report    CSV / JSON / HTML outputs;  engine.dedup.manifest  batch CSV reader
    engine.dedup.queue     clusters of a batch job -> adjudication queue
    engine.dedup.cli       ``nasname dedup ...`` (``main``)
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.dedup.jobs import DedupJob
from engine.dedup.sources import JobSpec
from engine.jobs import JobCancelled, Progress

__all__ = ["DedupJob", "JobCancelled", "JobSpec", "Progress", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nasname dedup`` (wired by ``server.cli``)."""
    from engine.dedup.cli import main as cli_main

    return cli_main(argv)
