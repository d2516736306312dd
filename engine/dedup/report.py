"""Outputs of a job: ``pairs.csv``, ``clusters.csv``, ``report.json`` (everything, one document) and
``report.html`` (self-contained, for reviewers; rendered from the JSON document by
``engine.dedup.html``, so it can be rendered again later, e.g. with thumbnails for a role that may
see images). Scores are rounded for reading (similarities 5 decimals, LLRs 3)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.dedup.clusters import Cluster
from engine.dedup.data import RecordInfo
from engine.dedup.fuse import MODALITIES, FusedPairs
from engine.fsutil import open_private
from engine.models.manifest import write_atomic

__all__ = ["Report", "render_html", "write_outputs"]

HIST_BINS = 48


@dataclass
class Report:
    summary: dict[str, Any]
    pairs: FusedPairs
    marked: list[bool]
    clusters: list[Cluster]
    infos: dict[int, RecordInfo]


def _r(x: float, nd: int) -> float | None:
    return None if not math.isfinite(x) else round(float(x), nd)


def document(report: Report) -> dict[str, Any]:
    """The JSON document of a report (pairs, clusters with members, histogram, summary)."""
    p = report.pairs
    cluster_of: dict[int, int] = {}
    for c in report.clusters:
        for k in c.pairs:
            cluster_of[k] = c.cluster_id

    def who(i: int) -> dict[str, Any]:
        info = report.infos.get(i)
        if info is None:  # record deleted since the job started
            return {"ref_id": f"<record {i} gone>", "partition": "", "origin": "", "attributes": {}}
        return {
            "ref_id": info.ref_id,
            "partition": info.partition,
            "origin": info.origin,
            "attributes": info.attributes,
        }

    pairs = []
    for k in range(len(p)):
        a, b = who(int(p.u[k])), who(int(p.v[k]))
        pairs.append(
            {
                "pair": k,
                "a": a["ref_id"],
                "b": b["ref_id"],
                "origin_a": a["origin"],
                "origin_b": b["origin"],
                "partition_a": a["partition"],
                "partition_b": b["partition"],
                "fused": _r(p.fused[k], 3),
                "threshold": _r(p.threshold[k], 3),
                "scores": {
                    m.value: _r(p.scores[k, c], 5)
                    for c, m in enumerate(MODALITIES)
                    if not np.isnan(p.scores[k, c])
                },
                "llrs": {
                    m.value: _r(p.llrs[k, c], 3)
                    for c, m in enumerate(MODALITIES)
                    if not np.isnan(p.llrs[k, c])
                },
                "adjudicated_distinct": bool(report.marked[k]),
                "cluster": cluster_of.get(k),
            }
        )
    clusters = [
        {
            "cluster": c.cluster_id,
            "size": c.size,
            "risk": round(c.risk, 3),
            "chained": c.chained,
            "missing_pairs": c.missing_pairs,
            "weakest_link": c.weakest,
            "pairs": c.pairs,
            "tree": c.tree,
            "members": [who(i) for i in c.members],
        }
        for c in report.clusters
    ]
    finite = p.candidate_fused[np.isfinite(p.candidate_fused)]
    hist: dict[str, Any] = {"edges": [], "counts": [], "thresholds": report.summary["thresholds"]["fused"]}
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        ths = [t for t in hist["thresholds"].values() if math.isfinite(t)]
        lo, hi = min([lo, *ths]) - 0.5, max([hi, *ths]) + 0.5
        counts, edges = np.histogram(finite, bins=HIST_BINS, range=(lo, hi))
        hist.update(edges=[round(float(e), 3) for e in edges], counts=counts.tolist())
    return {"summary": report.summary, "pairs": pairs, "clusters": clusters, "histogram": hist}


def write_outputs(
    job_dir: Path, report: Report, thumbnail_of: Callable[[str], str | None] | None = None
) -> None:
    doc = document(report)
    write_atomic(job_dir / "report.json", json.dumps(doc, indent=1).encode())
    score_cols = [m.value for m in MODALITIES]
    with open_private(job_dir / "pairs.csv", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "pair",
                "cluster",
                "ref_id_a",
                "ref_id_b",
                "origin_a",
                "origin_b",
                "partition_a",
                "partition_b",
                "fused_llr",
                "threshold",
                *(f"score_{m}" for m in score_cols),
                "adjudicated_distinct",
            ]
        )
        for d in doc["pairs"]:
            w.writerow(
                [
                    d["pair"],
                    d["cluster"] or "",
                    d["a"],
                    d["b"],
                    d["origin_a"],
                    d["origin_b"],
                    d["partition_a"],
                    d["partition_b"],
                    d["fused"],
                    d["threshold"],
                    *(d["scores"].get(m, "") for m in score_cols),
                    int(d["adjudicated_distinct"]),
                ]
            )
    with open_private(job_dir / "clusters.csv", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "cluster",
                "size",
                "risk",
                "chained",
                "missing_pairs",
                "weakest_a",
                "weakest_b",
                "weakest_fused",
                "weakest_threshold",
                "members",
            ]
        )
        for c in doc["clusters"]:
            wl = doc["pairs"][c["weakest_link"]]
            w.writerow(
                [
                    c["cluster"],
                    c["size"],
                    c["risk"],
                    int(c["chained"]),
                    c["missing_pairs"],
                    wl["a"],
                    wl["b"],
                    wl["fused"],
                    wl["threshold"],
                    ";".join(m["ref_id"] for m in c["members"]),
                ]
            )
    render_html(job_dir, doc, thumbnail_of)


def render_html(
    job_dir: Path, doc: dict[str, Any] | None = None, thumbnail_of: Callable[[str], str | None] | None = None
) -> Path:
    """(Re)write ``report.html`` from ``doc`` (default: the job's ``report.json``). ``thumbnail_of``
    maps a gallery ref id to a data: URI (None = no thumbnails: the default, see ``html``)."""
    from engine.dedup.html import render

    if doc is None:
        doc = json.loads((job_dir / "report.json").read_text())
    out = job_dir / "report.html"
    write_atomic(out, render(doc, thumbnail_of).encode())
    return out
