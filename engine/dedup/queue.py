"""Pushing a finished job's clusters into the store's adjudication queue.

The queue (``engine.store.adjudication``) holds *pending records* with their candidates: a case is
opened when a record is inserted as PENDING. That fits a batch job exactly: each batch record that
falls in a cluster is inserted as PENDING with its cluster mates as candidates, as an enrollment would
have done, and an adjudicator decides it (``same`` erases it, ``distinct`` activates it).

It does not fit N:N over records that are already ACTIVE: the store has no operation that opens a
case on an existing record (only ``insert(status=PENDING, candidates=...)``), so N:N clusters are
refused here with a clear reason rather than forced in; they go to reviewers through the reports.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from engine.dedup.jobs import DedupJob
from engine.dedup.sources import open_sources
from engine.errors import AlreadyExists, Conflict
from engine.store import RecordStatus
from engine.types import FaceTemplate, IrisTemplate, Modality, Template

__all__ = ["PushResult", "push_clusters"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    queued: list[str]  # ref ids inserted as pending cases
    skipped: dict[str, str]  # ref id -> reason (e.g. ALREADY_EXISTS)


def push_clusters(job: DedupJob, *, actor: str, partition: str | None = None) -> PushResult:
    """Insert every clustered batch record as PENDING with its cluster mates as candidates."""
    if job.spec.kind == "nn":
        raise Conflict(
            "N:N clusters cannot be queued: the store can open an adjudication case only when "
            "a record is inserted as pending, not on an already active record",
            reason="QUEUE_UNSUPPORTED_FOR_NN",
        )
    if job.progress().stage != "done":
        raise Conflict(f"job {job.job_id} has not finished", reason="JOB_NOT_DONE")
    doc: dict[str, Any] = json.loads((job.dir / "report.json").read_text())
    opened = open_sources(job.spec, job.dir)
    try:
        records = opened.records
        index_of = {info.ref_id: i for i, info in records.info(range(opened.n_primary)).items()}
        queued: list[str] = []
        skipped: dict[str, str] = {}
        part = partition if partition is not None else (job.spec.partition or "default")
        for c in doc["clusters"]:
            for member in c["members"]:
                if member["origin"] != "batch":
                    continue
                ref = member["ref_id"]
                i = index_of.get(ref)
                if i is None:
                    skipped[ref] = "NOT_IN_BATCH"
                    continue
                cands = _candidates(doc, c, ref)
                try:
                    opened.store.insert(
                        _templates(records, i),
                        ref_id=ref,
                        partition=part,
                        attributes=member["attributes"],
                        status=RecordStatus.PENDING,
                        candidates=cands,
                        actor=actor,
                    )
                    queued.append(ref)
                except AlreadyExists:
                    skipped[ref] = "ALREADY_EXISTS"
    finally:
        opened.close()
    log.info(
        "dedup job %s: %d record(s) queued for adjudication, %d skipped",
        job.job_id,
        len(queued),
        len(skipped),
    )
    return PushResult(queued, skipped)


def _candidates(doc: dict[str, Any], cluster: dict[str, Any], ref: str) -> list[dict[str, Any]]:
    """The direct matches of ``ref`` in its cluster, in the engine's candidate form (``fused``,
    ``scores``, ``llrs``; ``Engine.list_pending`` reads them back). Mates reached only through a chain
    are not candidates of this record: they have no score with it."""
    out: dict[str, dict[str, Any]] = {}
    for k in cluster["pairs"]:
        p = doc["pairs"][k]
        if ref in (p["a"], p["b"]):
            mate = p["b"] if p["a"] == ref else p["a"]
            out[mate] = {
                "ref_id": mate,
                "fused": p["fused"],
                "scores": p["scores"],
                "llrs": p["llrs"],
                "dedup_cluster": cluster["cluster"],
            }
    return list(out.values())


def _templates(records: Any, i: int) -> dict[Modality, Template]:
    out: dict[Modality, Template] = {}
    for m, d in records.modalities.items():
        hit = (d.rows == i).nonzero()[0]
        if hit.size == 0:
            continue
        r = int(hit[0])
        if d.vectors is not None:
            out[m] = FaceTemplate(d.vectors[r], d.model)
        else:
            out[m] = IrisTemplate(d.codes[r], d.masks[r], d.columns, d.model)
    return out
