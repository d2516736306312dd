"""Memory per face template beyond the raw vector stays under 1 KiB (issue target), for the exact
store including its growth slack, the label array and the label -> row map."""

from __future__ import annotations

import tracemalloc

import numpy as np

from engine.index.face import FaceIndex, FaceIndexOptions
from tests.unit.index.conftest import MODEL, templates, unit_rows


def test_overhead_per_template_under_1_kib() -> None:
    n, d, chunk = 40000, 128, 4000
    rng = np.random.default_rng(2)
    batches = [templates(unit_rows(rng, chunk, d)) for _ in range(n // chunk)]
    index = FaceIndex(MODEL, d, FaceIndexOptions(micro_batch=False))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i, batch in enumerate(batches):  # many adds: includes the amortised-growth slack
            index.add(np.arange(i * chunk, (i + 1) * chunk, dtype=np.int64) + 10**9, batch)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(index) == n
    raw = n * d * 4
    per_template = (used - raw) / n
    assert used >= raw  # the vectors really are held (the measurement sees them)
    print(f"overhead per template: {per_template:.0f} B")
    assert per_template <= 1024, per_template
