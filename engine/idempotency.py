"""The engine's side of idempotent writes: its results as JSON and back, exactly.

``engine.store.idempotency`` keeps ``(caller, request_id)`` and a result in the same transaction as the
change; this module decides what that result is for each engine operation and rebuilds it on a replay,
so a retried enroll returns the first call's reference id, outcome, candidates and threshold (floats
round-trip exactly through JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.records import (
    Candidate,
    EnrollOutcome,
    EnrollResult,
    InsertResult,
    SampleResult,
    SampleUse,
    Threshold,
)
from engine.types import Modality, ModelRef, Quality, QualityReason

__all__ = ["enroll_from_json", "enroll_to_json", "insert_from_json", "insert_to_json"]


def _model(m: ModelRef) -> list[str]:
    return [m.model_id, m.version]


def _sample_to_json(s: SampleResult) -> dict[str, Any]:
    q = s.quality
    return {"modality": s.modality.value, "model": _model(s.model), "details": dict(s.details),
            "use": s.use.value,
            "quality": None if q is None else {"score": q.score, "ok": q.ok, "measures": dict(q.measures),
                                               "reasons": [r.value for r in q.reasons],
                                               "rejected": [r.value for r in q.rejected]}}


def _sample_from_json(d: Mapping[str, Any]) -> SampleResult:
    q = d["quality"]
    quality = None if q is None else Quality(float(q["score"]), bool(q["ok"]),
                                             tuple(QualityReason(r) for r in q["reasons"]),
                                             {str(k): float(v) for k, v in q["measures"].items()},
                                             tuple(QualityReason(r) for r in q.get("rejected", ())))
    # results stored before multi-sample capture have no "use": their one sample was used
    return SampleResult(Modality(d["modality"]), ModelRef(*d["model"]), quality, dict(d["details"]),
                        SampleUse(d.get("use", SampleUse.USED.value)))


def _candidate_to_json(c: Candidate) -> dict[str, Any]:
    return {"ref_id": c.reference_id, "fused": c.fused, "partition": c.partition,
            "scores": {m.value: v for m, v in c.scores.items()},
            "llrs": {m.value: v for m, v in c.llrs.items()}}


def _candidate_from_json(d: Mapping[str, Any]) -> Candidate:
    return Candidate(str(d["ref_id"]), float(d["fused"]),
                     {Modality(m): float(v) for m, v in d["scores"].items()},
                     {Modality(m): float(v) for m, v in d["llrs"].items()}, str(d["partition"]))


def insert_to_json(r: InsertResult) -> dict[str, Any]:
    return {"ref_id": r.reference_id, "samples": [_sample_to_json(s) for s in r.samples]}


def insert_from_json(d: Mapping[str, Any]) -> InsertResult:
    return InsertResult(str(d["ref_id"]), [_sample_from_json(s) for s in d["samples"]])


def enroll_to_json(r: EnrollResult) -> dict[str, Any]:
    t = r.threshold
    return {"ref_id": r.reference_id, "outcome": r.outcome.value,
            "candidates": [_candidate_to_json(c) for c in r.candidates],
            "threshold": [t.target_fpir, t.gallery_size, t.fused_threshold, t.target_met, t.expected_fpir],
            "samples": [_sample_to_json(s) for s in r.samples]}


def enroll_from_json(d: Mapping[str, Any]) -> EnrollResult:
    fpir, size, fused, met, expected = d["threshold"]
    return EnrollResult(str(d["ref_id"]), EnrollOutcome(d["outcome"]),
                        [_candidate_from_json(c) for c in d["candidates"]],
                        Threshold(float(fpir), int(size), float(fused), bool(met),
                                  None if expected is None else float(expected)),
                        [_sample_from_json(s) for s in d["samples"]])
