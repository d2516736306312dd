"""Clusters of suspected duplicates: connected components of the accepted pairs (union-find).

Pairs are joined strongest first (Kruskal on the fused LLR, descending), so each cluster's joining
pairs form its *maximum spanning tree* and the last pair that joined it is its **weakest link**: the
pair whose removal would split the cluster and which has the lowest fused score among all pairs that
could hold it together. A cluster that is not a clique (some member pairs are not matches themselves)
is **chained**: A~B and B~C but A≁C is how one false match glues two people's records together, so the
report shows the weakest link and the missing pairs count for every cluster.

Risk (ranking only, documented so reviewers can reason about the order): the sum over the spanning
tree of each link's margin above its threshold (nats), i.e. larger clusters held by strong links come
first; a cluster held together by a single near-threshold link comes last.

Pairs already adjudicated *distinct* are kept in the pair list (marked) but join nothing: they are not
raised again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from engine.dedup.fuse import FusedPairs

__all__ = ["Cluster", "build_clusters"]


@dataclass
class Cluster:
    """``members`` record indices (ascending); ``pairs`` indices into the FusedPairs of every accepted
    pair inside the cluster; ``tree`` the spanning-tree pairs; ``weakest`` the weakest link's pair index."""

    cluster_id: int
    members: list[int]
    pairs: list[int]
    tree: list[int]
    weakest: int
    risk: float
    chained: bool
    missing_pairs: int  # member pairs that are not matches themselves
    partitions: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.members)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def build_clusters(
    pairs: FusedPairs, adjudicated: Iterable[tuple[int, int]] = ()
) -> tuple[list[Cluster], list[bool]]:
    """Clusters ranked by risk (highest first, ties by smallest member), and per pair whether it was
    already adjudicated distinct (those pairs are excluded from clustering)."""
    done = {(min(a, b), max(a, b)) for a, b in adjudicated}
    u, v = pairs.u.tolist(), pairs.v.tolist()
    marked = [(a, b) in done for a, b in zip(u, v, strict=True)]
    margin = pairs.fused - pairs.threshold
    # strongest first; ties broken by record indices so the result is deterministic
    order = sorted((k for k in range(len(u)) if not marked[k]), key=lambda k: (-pairs.fused[k], u[k], v[k]))
    uf = _UnionFind()
    tree_of: dict[int, list[int]] = {}
    for k in order:
        a, b = u[k], v[k]
        ra, rb = uf.find(a), uf.find(b)
        if ra == rb:
            continue
        merged = tree_of.pop(ra, []) + tree_of.pop(rb, []) + [k]
        uf.union(a, b)
        tree_of[uf.find(a)] = merged
    members: dict[int, set[int]] = {}
    inside: dict[int, list[int]] = {}
    for k in order:
        r = uf.find(u[k])
        members.setdefault(r, set()).update((u[k], v[k]))
        inside.setdefault(r, []).append(k)
    clusters: list[Cluster] = []
    for r, tree in tree_of.items():
        mem = sorted(members[r])
        n = len(mem)
        weakest = tree[-1]  # joined last in descending order
        clusters.append(
            Cluster(
                0,
                mem,
                sorted(inside[r]),
                tree,
                weakest,
                float(np.sum(np.maximum(margin[tree], 0.0))),
                len(inside[r]) < n * (n - 1) // 2,
                n * (n - 1) // 2 - len(inside[r]),
            )
        )
    clusters.sort(key=lambda c: (-c.risk, c.members[0]))
    for i, c in enumerate(clusters, start=1):
        c.cluster_id = i
    return clusters, marked
