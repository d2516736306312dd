"""Translation between protobuf messages (nasname.v1) and the engine's dataclasses. Pure functions.

Input checks that only the wire format can get wrong (an unset enum, an empty oneof) are raised here as
``InvalidInput``; every other check belongs to the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import InvalidInput
from engine.records import (
    AdjudicationDecision,
    AdjudicationItem,
    Candidate,
    EnrollOutcome,
    GalleryStats,
    RecordStatus,
    RecordView,
    SampleResult,
    SampleUse,
    Threshold,
    UpdateOutcome,
    VerifyResult,
)
from engine.records import Sample as EngineSample
from engine.store.values import CaseEvent
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Quality, Template
from server._gen.nasname.v1 import nasname_pb2 as pb

__all__ = [
    "MODALITY_FROM_PB",
    "MODALITY_TO_PB",
    "candidates_to_pb",
    "decision_from_pb",
    "history_to_pb",
    "pending_to_pb",
    "record_to_pb",
    "sample_results_to_pb",
    "samples_from_pb",
    "scores_to_pb",
    "stats_to_pb",
    "template_to_pb",
    "threshold_to_pb",
    "verify_to_pb",
]

MODALITY_TO_PB: dict[Modality, pb.Modality] = {
    Modality.FACE: pb.MODALITY_FACE,
    Modality.IRIS_LEFT: pb.MODALITY_IRIS_LEFT,
    Modality.IRIS_RIGHT: pb.MODALITY_IRIS_RIGHT,
}
MODALITY_FROM_PB: dict[int, Modality] = {v: k for k, v in MODALITY_TO_PB.items()}

_STATUS_TO_PB = {
    RecordStatus.ACTIVE: pb.RECORD_STATUS_ACTIVE,
    RecordStatus.PENDING: pb.RECORD_STATUS_PENDING,
    RecordStatus.DELETED: pb.RECORD_STATUS_DELETED,
}
_USE_TO_PB = {
    SampleUse.USED: pb.SAMPLE_USE_USED,
    SampleUse.NOT_SELECTED: pb.SAMPLE_USE_NOT_SELECTED,
    SampleUse.REFUSED: pb.SAMPLE_USE_REFUSED,
}
OUTCOME_TO_PB = {
    EnrollOutcome.ENROLLED: pb.ENROLL_OUTCOME_ENROLLED,
    EnrollOutcome.PENDING_ADJUDICATION: pb.ENROLL_OUTCOME_PENDING_ADJUDICATION,
}
_DECISION_FROM_PB: dict[pb.AdjudicationDecision, AdjudicationDecision] = {
    pb.ADJUDICATION_DECISION_SAME: AdjudicationDecision.SAME,
    pb.ADJUDICATION_DECISION_DISTINCT: AdjudicationDecision.DISTINCT,
}
_DECISION_TO_PB: dict[str, pb.AdjudicationDecision] = {v.value: k for k, v in _DECISION_FROM_PB.items()}


# -- requests -> engine -----------------------------------------------------------------------------

def modality_from_pb(value: int, where: str = "sample") -> Modality:
    modality = MODALITY_FROM_PB.get(value)
    if modality is None:
        raise InvalidInput(f"{where}: modality must be set (FACE, IRIS_LEFT or IRIS_RIGHT)",
                           reason="MISSING_MODALITY")
    return modality


def _model_from_pb(model: pb.ModelRef) -> ModelRef:
    if not model.model_id or not model.version:
        raise InvalidInput("a template needs its model id and version", reason="MISSING_MODEL")
    return ModelRef(model.model_id, model.version)


def template_from_pb(t: pb.Template) -> Template:
    model = _model_from_pb(t.model)
    kind = t.WhichOneof("kind")
    if kind == "face":
        return FaceTemplate(np.asarray(t.face.vector, dtype=np.float32), model)
    if kind == "iris":
        return IrisTemplate(np.frombuffer(t.iris.code, dtype=np.uint8).copy(),
                            np.frombuffer(t.iris.mask, dtype=np.uint8).copy(), int(t.iris.columns), model)
    raise InvalidInput("a template needs a face or iris body", reason="INVALID_TEMPLATE")


def template_to_pb(t: Template) -> pb.Template:
    model = pb.ModelRef(model_id=t.model.model_id, version=t.model.version)
    if isinstance(t, FaceTemplate):
        return pb.Template(model=model, face=pb.FaceTemplate(vector=t.vector.tolist()))
    return pb.Template(model=model, iris=pb.IrisTemplate(code=t.code.tobytes(), mask=t.mask.tobytes(),
                                                         columns=t.columns))


def samples_from_pb(samples: Iterable[pb.Sample]) -> list[EngineSample]:
    out: list[EngineSample] = []
    for i, s in enumerate(samples):
        modality = modality_from_pb(s.modality, f"sample {i}")
        data = s.WhichOneof("data")
        if data == "image":
            out.append(EngineSample(modality, image=s.image))
        elif data == "template":
            out.append(EngineSample(modality, template=template_from_pb(s.template)))
        else:
            raise InvalidInput(f"sample {i} carries neither an image nor a template",
                               reason="MISSING_SAMPLE_DATA")
    return out


def decision_from_pb(value: pb.AdjudicationDecision) -> AdjudicationDecision:
    decision = _DECISION_FROM_PB.get(value)
    if decision is None:
        raise InvalidInput("decision must be SAME or DISTINCT", reason="MISSING_DECISION")
    return decision


# -- engine -> responses ----------------------------------------------------------------------------

def _model_to_pb(model: ModelRef) -> pb.ModelRef:
    return pb.ModelRef(model_id=model.model_id, version=model.version)


def _quality_to_pb(q: Quality) -> pb.Quality:
    return pb.Quality(score=q.score, ok=q.ok, reasons=[str(r) for r in q.reasons],
                      measures={k: float(v) for k, v in q.measures.items()},
                      instructions=list(q.instructions))


def sample_results_to_pb(results: Sequence[SampleResult]) -> list[pb.SampleResult]:
    out = []
    for r in results:
        msg = pb.SampleResult(modality=MODALITY_TO_PB[r.modality], model=_model_to_pb(r.model),
                              use=_USE_TO_PB[r.use], error_reason=str(r.details.get("error_reason", "")))
        if r.quality is not None:
            msg.quality.CopyFrom(_quality_to_pb(r.quality))
        out.append(msg)
    return out


def threshold_to_pb(t: Threshold) -> pb.Threshold:
    return pb.Threshold(target_fpir=t.target_fpir, gallery_size=t.gallery_size,
                        fused_threshold=t.fused_threshold, target_not_met=not t.target_met,
                        expected_fpir=t.expected_fpir or 0.0)


def scores_to_pb(scores: Mapping[Modality, float], llrs: Mapping[Modality, float]) -> list[pb.ModalityScore]:
    return [pb.ModalityScore(modality=MODALITY_TO_PB[m], similarity=float(s), llr=float(llrs.get(m, 0.0)))
            for m, s in sorted(scores.items(), key=lambda kv: kv[0].value)]


def candidates_to_pb(candidates: Sequence[Candidate]) -> list[pb.Candidate]:
    return [pb.Candidate(reference_id=c.reference_id, partition=c.partition, fused=c.fused,
                         scores=scores_to_pb(c.scores, c.llrs)) for c in candidates]


def record_to_pb(r: RecordView) -> pb.Record:
    return pb.Record(
        reference_id=r.reference_id, partition=r.partition, status=_STATUS_TO_PB[r.status],
        attributes={str(k): str(v) for k, v in r.attributes.items()},
        models=[pb.ModalityModel(modality=MODALITY_TO_PB[m], model=_model_to_pb(ref))
                for m, ref in sorted(r.models.items(), key=lambda kv: kv[0].value)],
        created=r.created, updated=r.updated)


def _decision_entry(d: Mapping[str, Any]) -> pb.DecisionEntry:
    return pb.DecisionEntry(actor=str(d.get("actor", "")),
                            decision=_DECISION_TO_PB.get(str(d.get("decision", "")),
                                                         pb.ADJUDICATION_DECISION_UNSPECIFIED),
                            comment=str(d.get("comment", "")), time=float(d.get("time", 0.0) or 0.0),
                            mate_reference_id=str(d.get("mate", "") or ""))


def history_to_pb(events: Sequence[CaseEvent]) -> list[pb.HistoryEntry]:
    return [pb.HistoryEntry(event=e.kind, time=e.time, actor=e.actor, mate_reference_id=e.mate,
                            decision=_DECISION_TO_PB.get(e.decision, pb.ADJUDICATION_DECISION_UNSPECIFIED),
                            comment=e.comment) for e in events]


STATUS_FROM_PB: dict[int, RecordStatus] = {v: k for k, v in _STATUS_TO_PB.items()}
UPDATE_OUTCOME_TO_PB = {
    UpdateOutcome.UPDATED: pb.UPDATE_OUTCOME_UPDATED,
    UpdateOutcome.NOT_VERIFIED: pb.UPDATE_OUTCOME_NOT_VERIFIED,
    UpdateOutcome.POSSIBLE_DUPLICATE: pb.UPDATE_OUTCOME_POSSIBLE_DUPLICATE,
}


def verify_to_pb(r: VerifyResult, request_id: str = "") -> pb.VerifyResponse:
    return pb.VerifyResponse(request_id=request_id, reference_id=r.reference_id, match=r.match,
                             fused=r.fused, scores=scores_to_pb(r.scores, r.llrs),
                             threshold=threshold_to_pb(r.threshold), samples=sample_results_to_pb(r.samples))


def pending_to_pb(item: AdjudicationItem) -> pb.PendingAdjudication:
    return pb.PendingAdjudication(reference_id=item.reference_id, partition=item.partition,
                                  candidates=candidates_to_pb(item.candidates),
                                  decisions=[_decision_entry(d) for d in item.decisions],
                                  created=item.created)


def stats_to_pb(s: GalleryStats) -> pb.StatsResponse:
    return pb.StatsResponse(total=s.total, by_status=dict(s.by_status), by_partition=dict(s.by_partition),
                            by_modality=dict(s.by_modality), models=dict(s.models),
                            quarantined=s.quarantined, audit_problem=s.audit_problem,
                            last_backup_time=s.last_backup_time or 0.0,
                            last_backup_age_s=s.last_backup_age_s or 0.0)
