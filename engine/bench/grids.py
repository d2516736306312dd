"""Run grids of ``nasname bench``, declared as data (what runs, at which sizes, against what).

Every engine contender runs next to its baselines in the same process and the same run: numpy brute
force and FAISS with default settings for exact search, plus FAISS-HNSW and hnswlib with their
defaults wherever approximate search is compared (iris: FAISS binary HNSW, as hnswlib has no Hamming
space). ``reference`` names the exact contender that recall is measured against. ``max_size``: above
it a contender is skipped (and reported as such) because one query or the build would take minutes on
a small machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["CLUSTER_FACE", "GRIDS", "ContenderSpec", "Grid"]


@dataclass(frozen=True)
class ContenderSpec:
    name: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    role: str = "baseline"  # "engine" or "baseline"
    approximate: bool = False
    max_size: int | None = None


FACE = (
    ContenderSpec("numpy brute force", "numpy-face"),
    ContenderSpec("FAISS IndexFlatIP (defaults)", "faiss-face", {"kind": "flat"}),
    ContenderSpec("engine exact", "engine-face", {"kind": "exact"}, role="engine"),
    ContenderSpec("engine fp16", "engine-face", {"kind": "fp16"}, role="engine"),
    ContenderSpec("engine sq8", "engine-face", {"kind": "sq8"}, role="engine", approximate=True),
    ContenderSpec("engine hnsw", "engine-face", {"kind": "hnsw"}, role="engine", approximate=True),
    ContenderSpec("engine ivf", "engine-face", {"kind": "ivf"}, role="engine", approximate=True),
    ContenderSpec("FAISS IndexHNSWFlat (defaults)", "faiss-face", {"kind": "hnsw"}, approximate=True),
    ContenderSpec("hnswlib (defaults)", "hnswlib-face", approximate=True),
)

IRIS = (
    ContenderSpec("numpy brute force (masked HD)", "numpy-iris", {"shifts": 15}, max_size=200_000),
    ContenderSpec("FAISS IndexBinaryFlat (defaults, no masks)", "faiss-iris", {"shifts": 15}),
    ContenderSpec("engine exact", "engine-iris", {"kind": "exact"}, role="engine"),
    ContenderSpec("engine fast", "engine-iris", {"kind": "fast"}, role="engine", approximate=True),
    ContenderSpec("FAISS IndexBinaryHNSW (defaults, no masks)", "faiss-iris", {"shifts": 15, "kind": "hnsw"},
                  approximate=True),
)


@dataclass(frozen=True)
class Grid:
    """``queries``: single-request queries per contender and size (fewer if ``budget_s`` runs out);
    ``concurrent_queries`` issued by ``callers`` threads at once; ``k`` results per query."""

    name: str
    face_sizes: tuple[int, ...]
    iris_sizes: tuple[int, ...]
    queries: int
    concurrent_queries: int
    callers: int
    k: int
    budget_s: float
    face_dim: int
    iris_nbytes: int
    iris_columns: int
    face: tuple[ContenderSpec, ...] = FACE
    iris: tuple[ContenderSpec, ...] = IRIS
    reference: tuple[tuple[str, str], ...] = (("face", "numpy brute force"),
                                              ("iris", "numpy brute force (masked HD)"))
    extraction_images: int = 10
    gallery_sizes: tuple[int, ...] = (1_000, 10_000)
    seed: int = 0

    def with_sizes(self, sizes: tuple[int, ...]) -> Grid:
        return replace(self, face_sizes=sizes, iris_sizes=sizes)


# `nasname bench --cluster`: the Ray-sharded face index with 1, 2 and 4 local shards next to the
# single-node index and the numpy reference, in one run.
CLUSTER_FACE = (
    ContenderSpec("numpy brute force", "numpy-face"),
    ContenderSpec("engine exact", "engine-face", {"kind": "exact"}, role="engine"),
    *(ContenderSpec(f"engine exact, Ray {n} shard{'s' if n > 1 else ''}", "cluster-face",
                    {"kind": "exact", "shards": n}, role="engine") for n in (1, 2, 4)),
)

GRIDS: dict[str, Grid] = {
    "full": Grid(
        name="full", face_sizes=(1_000, 10_000, 100_000, 1_000_000),
        iris_sizes=(1_000, 10_000, 100_000, 1_000_000), queries=200, concurrent_queries=512,
        callers=32, k=10, budget_s=20.0, face_dim=128, iris_nbytes=256, iris_columns=256),
    "quick": Grid(
        name="quick", face_sizes=(1_000, 10_000), iris_sizes=(1_000, 3_000), queries=30,
        concurrent_queries=64, callers=32, k=10, budget_s=0.3, face_dim=128, iris_nbytes=256,
        iris_columns=256, extraction_images=2, gallery_sizes=(300,),
        face=tuple(c for c in FACE if c.name not in ("engine sq8", "engine ivf"))),
}
