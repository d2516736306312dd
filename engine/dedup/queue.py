"""Pushing a finished job's clusters into the store's adjudication queue.

The queue (``engine.store.adjudication``) holds *pending records* with their candidates: a case is
opened when a record is inserted as PENDING. That fits a batch job exactly: each batch record that
falls in a cluster is inserted as PENDING with its cluster mates as candidates, as an enrollment would
have done, and an adjudicator decides it (``same`` erases it, ``distinct`` activates it).

N:N clusters hold records that are already ACTIVE: in each cluster the oldest member (lowest label)
stays active and every other member is moved to PENDING with an open case naming its direct cluster
mates as candidates (``Gallery.open_case``: through the gallery, so the indexes follow at once). A
final ``distinct`` decision makes it active again; ``same`` erases it. Members that cannot be queued
(already pending, already adjudicated once, gone) are skipped with the reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.dedup.jobs import DedupJob
from engine.dedup.sources import open_sources
from engine.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from engine.store import RecordStatus
from engine.types import FaceTemplate, IrisTemplate, Modality, Template

if TYPE_CHECKING:
    from engine.gallery import Gallery

__all__ = ["PushResult", "push_clusters"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    queued: list[str]  # ref ids inserted as pending cases
    skipped: dict[str, str]  # ref id -> reason (e.g. ALREADY_EXISTS)


def push_clusters(
    job: DedupJob, *, actor: str, partition: str | None = None, gallery: Gallery | None = None
) -> PushResult:
    """Batch jobs: insert every clustered batch record as PENDING with its cluster mates as candidates.
    N:N jobs: open a case on every cluster member but the oldest (see module doc) through ``gallery``,
    the job's gallery opened by the caller (the server's, or one the command line opened)."""
    if job.progress().stage != "done":
        raise Conflict(f"job {job.job_id} has not finished", reason="JOB_NOT_DONE")
    doc: dict[str, Any] = json.loads((job.dir / "report.json").read_text())
    if job.spec.kind == "nn":
        if gallery is None:
            raise InvalidInput("pushing N:N clusters goes through the open gallery", reason="NO_GALLERY")
        return _push_nn(job, doc, gallery, actor)
    opened = open_sources(job.spec, job.dir, job.source)
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
    log.info(
        "dedup job %s: %d record(s) queued for adjudication, %d skipped",
        job.job_id,
        len(queued),
        len(skipped),
    )
    return PushResult(queued, skipped)


def _push_nn(job: DedupJob, doc: dict[str, Any], gallery: Gallery, actor: str) -> PushResult:
    queued: list[str] = []
    skipped: dict[str, str] = {}
    for c in doc["clusters"]:
        refs = [str(m["ref_id"]) for m in c["members"]]
        labels = gallery.store.labels_of(refs, status=None)
        for ref in refs:
            if ref not in labels:
                skipped[ref] = "NOT_FOUND"
        present = sorted((r for r in refs if r in labels), key=lambda r: labels[r])
        for ref in present[1:]:  # the oldest record of the cluster stays active
            try:
                gallery.open_case(ref, _candidates(doc, c, ref), actor=actor)
                queued.append(ref)
            except (Conflict, NotFound) as exc:
                skipped[ref] = exc.reason
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
