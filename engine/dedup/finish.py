"""Last stage of a job: fuse the candidates, mark adjudicated pairs, cluster, write the reports."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.dedup.clusters import build_clusters
from engine.dedup.data import RecordInfo
from engine.dedup.fuse import MODALITIES, Thresholds, fuse_candidates
from engine.dedup.report import Report, write_outputs
from engine.fusion import Fusion
from engine.models.manifest import write_atomic
from engine.store import Store

if TYPE_CHECKING:
    from engine.dedup.jobs import DedupJob
    from engine.dedup.sources import Opened

__all__ = ["adjudicated_pairs", "finish"]

log = logging.getLogger(__name__)


def adjudicated_pairs(store: Store, infos: dict[int, RecordInfo]) -> list[tuple[int, int]]:
    """Pairs of record indices already decided *distinct* by an adjudicator (from the store's cases:
    a resolved case of record A whose candidates name B). Only gallery records can have cases."""
    by_ref = {info.ref_id: i for i, info in infos.items() if info.origin == "gallery"}
    out: list[tuple[int, int]] = []
    for ref, i in by_ref.items():
        case = store.case(ref)
        if case is None or case.outcome != "distinct":
            continue
        for cand in case.candidates:
            j = by_ref.get(str(cand.get("ref_id", "")))
            if j is not None and j != i:
                out.append((min(i, j), max(i, j)))
    return out


def finish(job: DedupJob, opened: Opened, cp: dict[str, Any], fusion: Fusion) -> dict[str, Any]:
    """Write pairs/clusters CSV + JSON, the HTML report and ``summary.json``; returns the summary."""
    started = time.perf_counter()
    records = opened.records
    th = Thresholds.from_json(cp["thresholds"])
    cand = job.candidates()
    fused = fuse_candidates(records, np.asarray(cand["u"]), np.asarray(cand["v"]), fusion, th)
    involved = sorted(set(fused.u.tolist()) | set(fused.v.tolist()))
    infos = records.info(involved)
    clusters, marked = build_clusters(fused, adjudicated_pairs(opened.store, infos))
    per_modality = {m.value: len(d) for m, d in records.modalities.items()}
    recall = {
        m: {"exact_pairs": e, "found": f, "recall": (f / e if e else 1.0)}
        for m, (e, f) in cp.get("recall", {}).items()
    }
    summary: dict[str, Any] = {
        "job_id": job.job_id,
        "kind": job.spec.kind,
        "mode": job.spec.mode,
        "partition": job.spec.partition,
        "records": records.n,
        "primary_records": opened.n_primary,
        "templates": per_modality,
        "thresholds": th.to_json(),
        # in words, for every reader of the result (CLI, RPC, HTML report): "" when the rate is met
        "target_not_met": th.unmet_text(),
        "candidates": int(cand.size),
        "pairs": len(fused),
        "pairs_adjudicated_distinct": int(sum(marked)),
        "clusters": len(clusters),
        "records_in_clusters": int(sum(c.size for c in clusters)),
        "chained_clusters": int(sum(c.chained for c in clusters)),
        "largest_cluster": max((c.size for c in clusters), default=0),
        "pair_recall_sample": recall or None,
        "pairs_seconds": round(float(cp.get("pairs_elapsed_s", 0.0)), 3),
        "manifest": cp.get("facts", {}),
        "modalities": [m.value for m in MODALITIES if m in records.modalities],
        "finished": time.time(),
    }
    report = Report(summary, fused, marked, clusters, infos)
    write_outputs(job.dir, report)
    summary["fuse_seconds"] = round(time.perf_counter() - started, 3)
    write_atomic(job.dir / "summary.json", json.dumps(summary, indent=1).encode())
    log.info("dedup job %s: %d pairs, %d clusters", job.job_id, len(fused), len(clusters))
    if summary["target_not_met"]:
        log.warning("dedup job %s: target not met: %s", job.job_id, summary["target_not_met"])
    return summary
