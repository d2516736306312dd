"""The Engine: nasname's operations in plain Python (the gRPC servicer is a thin translation of this).

    engine = Engine.open(EngineConfig.load())          # store, indexes, extractors, calibration
    engine.enroll("R-1", [Sample(Modality.FACE, image=jpeg)], partition="camp-a")
    engine.identify([Sample(Modality.IRIS_LEFT, image=png)], max_results=5, target_fpir=0.003)

Every method raises only ``engine.errors`` exceptions and is thread-safe. ``actor`` arguments name
the authenticated caller for the audit trail (a token id, never a person's name).

Decision rule (``engine.fusion``): each candidate's fused score is the sum of the calibrated LLRs of
the modalities it shares with the probe; it is returned when the sum reaches the threshold that gives
the target FPIR at the size of the searched gallery (for that set of shared modalities).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from engine.config import EngineConfig
from engine.datadir import DataDir
from engine.errors import Conflict, InvalidInput, ModelMismatch, NotFound, QualityRejected
from engine.extractor import Extractor
from engine.fusion import Fusion, per_comparison_fmr
from engine.gallery import Gallery
from engine.records import (
    AdjudicationDecision,
    AdjudicationItem,
    Candidate,
    EnrollOutcome,
    EnrollResult,
    GalleryStats,
    IdentifyResult,
    InsertResult,
    RecordStatus,
    RecordView,
    Sample,
    SampleResult,
    Threshold,
    VerifyResult,
)
from engine.store.values import Record
from engine.types import Modality, ModelRef, Template

__all__ = ["Engine"]

log = logging.getLogger(__name__)

ExtractorLoader = Callable[[str], Extractor]

# The fused threshold never goes below zero: a candidate is never reported on evidence that favours
# "different persons" (LLR < 0), even when the impostor distribution is so narrow that the target FPIR
# alone would allow it (tiny galleries, extreme calibrations). This only ever lowers FPIR.
MIN_FUSED_THRESHOLD = 0.0


class Engine:
    """Operations over one gallery. Build with :meth:`open` (from configuration) or directly with
    explicit parts (tests pass fakes for extractors through ``extractors``)."""

    def __init__(
        self,
        gallery: Gallery,
        config: EngineConfig,
        *,
        extractors: ExtractorLoader | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        self._gallery = gallery
        self._config = config
        self._load_extractor = extractors or functools.partial(_default_loader, face_model=config.face_model)
        self._enabled = {Modality.parse(m) for m in config.modalities}
        self._fusion = fusion
        self._fusion_lock = threading.Lock()
        # Search-then-store of an enroll must be atomic: two enrollments of the same person arriving
        # together must not both miss each other. Extraction happens outside this lock.
        self._enroll_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="nasname-extract")
        self._closed = False

    @classmethod
    def open(
        cls,
        config: EngineConfig | None = None,
        *,
        extractors: ExtractorLoader | None = None,
        fusion: Fusion | None = None,
    ) -> Engine:
        """Open (or create) the gallery in ``config.data_dir`` (key, store, index snapshots).

        Extractors are loaded lazily, on the first image of their kind; each modality's model is fixed
        by its first template (``ModelMismatch`` for any other model afterwards). With the default
        extractors, a gallery whose face templates are not of ``config.face_model`` is refused here
        (``ModelMismatch`` naming both models and ``nasname models switch-face``)."""
        config = config or EngineConfig.load()
        gallery = Gallery.open(config)
        try:  # the site identity (engine.transfer) is created at the first start of a data directory
            from engine.transfer.site import ensure_site

            ensure_site(gallery.datadir, config.site_id)
        except BaseException:
            gallery.close()
            raise
        if extractors is None:
            from engine.extractors import check_face_model

            try:
                check_face_model(config.face_model, gallery.models(), config.data_dir)
            except BaseException:
                gallery.close()
                raise
        return cls(gallery, config, extractors=extractors, fusion=fusion)

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def gallery(self) -> Gallery:
        return self._gallery

    @property
    def datadir(self) -> DataDir:
        """The open data directory (store, key, folders): what jobs and operations work on."""
        return self._gallery.datadir

    @property
    def fusion(self) -> Fusion | None:
        """The calibrations in use (None until first needed, unless passed in; e.g. for dedup jobs)."""
        return self._fusion

    @property
    def tokens(self) -> Any:
        """The API-token store (create_token / authenticate / list_tokens / revoke_token)."""
        return self._gallery.store

    # -- samples -------------------------------------------------------------------------------

    def _extract_one(self, sample: Sample) -> tuple[Template, SampleResult]:
        if sample.template is not None:
            return sample.template, SampleResult(sample.modality, sample.template.model, None)
        assert sample.image is not None  # guaranteed by Sample.__post_init__
        extraction = self._load_extractor(sample.modality.kind).extract(sample.image)
        quality = extraction.quality
        if not quality.ok:
            raise QualityRejected(
                f"{sample.modality.value} sample failed the quality check: "
                + ", ".join(r.value for r in quality.reasons),
                reasons=[r.value for r in quality.reasons],
                details={"modality": sample.modality.value, "quality_score": round(quality.score, 3)},
            )
        details = {k: v for k, v in extraction.details.items() if isinstance(v, int | float | str | bool)}
        return extraction.template, SampleResult(sample.modality, extraction.template.model, quality, details)

    def extract(self, samples: Sequence[Sample]) -> tuple[dict[Modality, Template], list[SampleResult]]:
        """Check the samples and turn images into templates (in parallel across modalities)."""
        if not samples:
            raise InvalidInput("no biometric sample given", reason="NO_BIOMETRIC_DATA")
        seen: set[Modality] = set()
        for s in samples:
            if s.modality in seen:
                raise InvalidInput(f"two samples for {s.modality.value}", reason="DUPLICATE_MODALITY")
            if s.modality not in self._enabled:
                raise InvalidInput(f"modality {s.modality.value} is not enabled on this server",
                                   reason="MODALITY_DISABLED")
            seen.add(s.modality)
        if len(samples) == 1:
            results = [self._extract_one(samples[0])]
        else:
            results = list(self._pool.map(self._extract_one, samples))
        models = self._gallery.models()
        templates: dict[Modality, Template] = {}
        for sample, (template, _) in zip(samples, results, strict=True):
            expected = models.get(sample.modality)
            if expected is not None and template.model != expected:
                raise ModelMismatch(
                    f"{sample.modality.value} template is from {template.model}; "
                    f"this gallery uses {expected}",
                    details={"modality": sample.modality.value, "expected": str(expected),
                             "got": str(template.model)})
            templates[sample.modality] = template
        return templates, [r for _, r in results]

    # -- fusion --------------------------------------------------------------------------------

    def _fusion_for(self, templates: Mapping[Modality, Template]) -> Fusion:
        with self._fusion_lock:
            if self._fusion is None:
                models: dict[Modality, ModelRef] = dict(self._gallery.models())
                self._fusion = Fusion.for_models(models) if models else None
            fusion = self._fusion
            if fusion is None or any(not fusion.knows(m, t.model) for m, t in templates.items()):
                models = dict(self._gallery.models())
                models.update({m: t.model for m, t in templates.items()})
                fusion = self._fusion = Fusion.for_models(models)
            return fusion

    @staticmethod
    def _threshold(fusion: Fusion, modalities: Iterable[Modality], fmr: float) -> float:
        return max(fusion.threshold(modalities, fmr), MIN_FUSED_THRESHOLD)

    # -- search --------------------------------------------------------------------------------

    def _search(
        self,
        probe: Mapping[Modality, Template],
        *,
        max_results: int,
        target_fpir: float,
        partition: str | None,
        reference_ids: Sequence[str] | None,
        exclude: int | None = None,
    ) -> tuple[list[Candidate], Threshold]:
        if not 1 <= max_results <= self._config.max_results_limit:
            raise InvalidInput(f"max_results must be in 1..{self._config.max_results_limit}",
                               reason="INVALID_REQUEST")
        fusion = self._fusion_for(probe)
        n = self._gallery.count(partition=partition) if reference_ids is None else len(set(reference_ids))
        fmr = per_comparison_fmr(target_fpir, max(n, 1))
        threshold = Threshold(target_fpir, n, self._threshold(fusion, probe.keys(), fmr))
        shortlist = max(self._config.shortlist, max_results)
        scores: dict[int, dict[Modality, float]] = {}
        for modality, template in probe.items():
            sims, labels = self._gallery.search_labels(modality, [template], shortlist,
                                                       partition=partition, ref_ids=reference_ids)
            keep = labels[0] >= 0
            for label, similarity in zip(labels[0][keep].tolist(), sims[0][keep].tolist(), strict=True):
                scores.setdefault(label, {})[modality] = similarity
        if exclude is not None:
            scores.pop(exclude, None)
        if not scores:
            return [], threshold
        # A candidate found through one modality is scored exactly in every other modality the probe
        # has, so fusion always sees every shared modality, not only those where it made the shortlist.
        for modality, template in probe.items():
            missing = np.array([lab for lab, per in scores.items() if modality not in per], dtype=np.int64)
            if missing.size:
                for lab, sim in zip(missing, self._gallery.score(modality, template, missing), strict=True):
                    if np.isfinite(sim):
                        scores[int(lab)][modality] = float(sim)
        thresholds: dict[frozenset[Modality], float] = {}
        passing: list[tuple[int, float, dict[Modality, float], dict[Modality, float]]] = []
        # LLRs per modality in one vectorised call each (identify sees ~100 shortlisted records).
        order = list(scores)
        llr_of: dict[Modality, dict[int, float]] = {}
        for modality in probe:
            with_m = [lab for lab in order if modality in scores[lab]]
            values = fusion.calibration(modality).llr_of([scores[lab][modality] for lab in with_m])
            llr_of[modality] = dict(zip(with_m, values.tolist(), strict=True))
        for label in order:
            per_modality = scores[label]
            shared = frozenset(per_modality)
            if shared not in thresholds:
                thresholds[shared] = self._threshold(fusion, shared, fmr)
            llrs = {m: llr_of[m][label] for m in per_modality}
            fused = float(sum(llrs.values()))
            if fused >= thresholds[shared]:
                passing.append((label, fused, per_modality, llrs))
        if not passing:
            return [], threshold
        # Names and partitions only for the few candidates that pass (one store query, not one per hit).
        labels = np.array([p[0] for p in passing], dtype=np.int64)
        names = self._gallery.ref_ids_of(labels)
        partitions = dict(zip(labels.tolist(), self._gallery.partitions_of(labels), strict=True))
        candidates = [Candidate(names[label], fused, dict(per_modality), llrs, partitions[label])
                      for label, fused, per_modality, llrs in passing
                      if label in names]  # a record deleted since the search is dropped
        candidates.sort(key=lambda c: (-c.fused, c.reference_id))
        return candidates[:max_results], threshold

    # -- operations ----------------------------------------------------------------------------

    def insert(
        self,
        reference_id: str | None,
        samples: Sequence[Sample],
        *,
        partition: str = "default",
        attributes: Mapping[str, str] | None = None,
        actor: str = "local",
    ) -> InsertResult:
        """Store a record without de-duplication. ``None`` id -> a generated one. Existing id ->
        AlreadyExists. Durable and searchable when this returns."""
        templates, results = self.extract(samples)
        written = self._gallery.insert(templates, ref_id=reference_id, partition=partition,
                                       attributes=attributes, images=_images(samples), actor=actor)
        return InsertResult(written.ref_id, results)

    def enroll(
        self,
        reference_id: str | None,
        samples: Sequence[Sample],
        *,
        partition: str = "default",
        attributes: Mapping[str, str] | None = None,
        target_fpir: float | None = None,
        search_partition: str | None = None,
        actor: str = "local",
        annotate: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
        images: Mapping[Modality, bytes] | None = None,
    ) -> EnrollResult:
        """De-duplicate against the gallery (all partitions unless ``search_partition``), then store:
        ENROLLED (active) when no candidate reaches the threshold, else PENDING_ADJUDICATION with the
        candidates kept for an adjudicator. Durable either way when this returns. ``annotate`` adds to
        the kept candidate JSON (a transfer import adds both sites' provenance); ``images`` are kept
        images for template-only samples (a transfer packet's)."""
        templates, results = self.extract(samples)
        kept_images = {**_images(samples), **(images or {})}
        fpir = target_fpir if target_fpir is not None else self._config.enroll_target_fpir
        with self._enroll_lock:
            candidates, threshold = self._search(templates, max_results=self._config.shortlist,
                                                 target_fpir=fpir, partition=search_partition,
                                                 reference_ids=None)
            if candidates:
                kept = [_candidate_json(c) for c in candidates]
                written = self._gallery.insert(
                    templates, ref_id=reference_id, partition=partition, attributes=attributes,
                    status=RecordStatus.PENDING, candidates=annotate(kept) if annotate else kept,
                    images=kept_images, actor=actor)
                outcome = EnrollOutcome.PENDING_ADJUDICATION
            else:
                written = self._gallery.insert(templates, ref_id=reference_id, partition=partition,
                                               attributes=attributes, images=kept_images, actor=actor)
                outcome = EnrollOutcome.ENROLLED
        log.info("enroll outcome=%s candidates=%d", outcome.value, len(candidates))
        return EnrollResult(written.ref_id, outcome, candidates, threshold, results)

    def identify(
        self,
        samples: Sequence[Sample] | None = None,
        *,
        reference_id: str | None = None,
        max_results: int = 10,
        target_fpir: float | None = None,
        partition: str | None = None,
        reference_ids: Sequence[str] | None = None,
    ) -> IdentifyResult:
        """1:N by fresh samples or by an enrolled record's templates (then the record itself is
        excluded from its own results). Restriction to a partition and/or an explicit id list."""
        if (samples is None) == (reference_id is None):
            raise InvalidInput("identify takes either samples or a reference id", reason="INVALID_REQUEST")
        exclude: int | None = None
        if reference_id is not None:
            record = self._gallery.get(reference_id)
            if not record.templates:
                raise Conflict(f"record {reference_id} holds no biometrics", reason="NO_BIOMETRIC_DATA")
            probe = dict(record.templates)
            results = [SampleResult(m, t.model, None) for m, t in probe.items()]
            exclude = record.label
        else:
            assert samples is not None
            probe, results = self.extract(samples)
        fpir = target_fpir if target_fpir is not None else self._config.identify_target_fpir
        candidates, threshold = self._search(probe, max_results=max_results, target_fpir=fpir,
                                             partition=partition, reference_ids=reference_ids,
                                             exclude=exclude)
        return IdentifyResult(candidates, threshold, results)

    def verify(
        self, reference_id: str, samples: Sequence[Sample], *, target_fmr: float | None = None
    ) -> VerifyResult:
        """1:1 against every template of ``reference_id`` the samples share a modality with."""
        record = self._gallery.get(reference_id, with_templates=False)
        if record.status is not RecordStatus.ACTIVE:
            raise Conflict(f"record {reference_id} is {record.status.value}, not active",
                           details={"status": record.status.value})
        probe, results = self.extract(samples)
        shared = [m for m in probe if m in record.modalities]
        if not shared:
            raise InvalidInput(
                f"record {reference_id} has no template for "
                + ", ".join(m.value for m in probe), reason="NO_SHARED_MODALITY")
        scores: dict[Modality, float] = {}
        for m in shared:
            similarity = float(self._gallery.score(m, probe[m], np.array([record.label]))[0])
            if np.isfinite(similarity):
                scores[m] = similarity
        fusion = self._fusion_for(probe)
        fmr = target_fmr if target_fmr is not None else self._config.verify_target_fmr
        fused, llrs = fusion.fuse(scores)
        threshold = Threshold(fmr, 1, self._threshold(fusion, shared, per_comparison_fmr(fmr, 1)))
        return VerifyResult(reference_id, fused >= threshold.fused_threshold, fused, scores, llrs,
                            threshold, results)

    def delete(self, reference_id: str, *, actor: str = "local") -> None:
        """Erase the record's biometrics; it disappears from results immediately. Unknown -> NotFound."""
        self._gallery.delete(reference_id, actor=actor)

    def get(self, reference_id: str) -> RecordView:
        record = self._gallery.get(reference_id)
        return _view(record)

    def count(self, partition: str | None = None) -> int:
        """Number of active (searchable) records."""
        return int(self._gallery.count(partition=partition))

    def stats(self) -> GalleryStats:
        from engine.ops.schedule import last_good_backup

        raw = self._gallery.stats()
        backup = last_good_backup(self._gallery.datadir)
        by_status = {str(k): int(v) for k, v in raw["records"].items()}
        partitions: dict[str, dict[str, int]] = raw["partitions"]
        return GalleryStats(
            total=sum(by_status.values()),
            by_status=by_status,
            by_partition={p: int(c.get(RecordStatus.ACTIVE.value, 0)) for p, c in partitions.items()},
            by_modality={str(k): int(v) for k, v in raw["templates"].items()},
            models={m.value: str(ref) for m, ref in self._gallery.models().items()},
            by_partition_status={p: {str(k): int(v) for k, v in c.items()} for p, c in partitions.items()},
            pending_cases=int(raw["pending_cases"]),
            last_backup_time=None if backup is None else float(backup["time"]),
            last_backup_age_s=None if backup is None else float(backup["age_s"]),
        )

    def list_pending(self, *, limit: int = 100, offset: int = 0) -> list[AdjudicationItem]:
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be in 1..1000 and offset >= 0", reason="INVALID_REQUEST")
        cases = self._gallery.store.pending(limit=limit + offset)[offset:]
        return [
            AdjudicationItem(
                reference_id=c.ref_id,
                partition=c.partition,
                candidates=[_candidate_from_json(d) for d in c.candidates],
                decisions=[{"actor": d.actor, "decision": d.decision, "comment": d.comment, "time": d.time}
                           for d in c.decisions],
                created=c.created,
            )
            for c in cases
        ]

    def adjudicate(
        self,
        reference_id: str,
        decision: AdjudicationDecision,
        *,
        actor: str,
        comment: str = "",
        mate_reference_id: str | None = None,
    ) -> RecordView:
        """Decide a pending record: DISTINCT -> it becomes active; SAME -> its biometrics are erased
        and the decision (with the mate's id) is audited. Not pending -> Conflict."""
        if decision is AdjudicationDecision.SAME and mate_reference_id is not None:
            case = self._gallery.store.case(reference_id)
            if case is None:
                raise NotFound(f"no adjudication case for {reference_id}", details={"ref_id": reference_id})
            if mate_reference_id not in {c.get("ref_id") for c in case.candidates}:
                raise InvalidInput(f"{mate_reference_id} is not a candidate of {reference_id}",
                                   reason="INVALID_REQUEST")
            comment = f"{comment} [mate={mate_reference_id}]".strip()
        self._gallery.decide(reference_id, decision.value, actor=actor, comment=comment)
        return _view(self._gallery.get(reference_id, with_templates=False))

    def close(self) -> None:
        """Flush snapshots and close the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        self._gallery.close()


def _default_loader(kind: str, face_model: str | None = None) -> Extractor:
    from engine.extractors import load_extractor

    return load_extractor(kind, face_model if kind == "face" else None)


def _images(samples: Sequence[Sample]) -> dict[Modality, bytes]:
    return {s.modality: s.image for s in samples if s.image is not None}


def _candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "ref_id": c.reference_id,
        "fused": round(c.fused, 4),
        "scores": {m.value: round(s, 5) for m, s in c.scores.items()},
        "llrs": {m.value: round(v, 4) for m, v in c.llrs.items()},
    }


def _candidate_from_json(d: Mapping[str, Any]) -> Candidate:
    return Candidate(
        reference_id=str(d["ref_id"]),
        fused=float(d["fused"]),
        scores={Modality(m): float(s) for m, s in d.get("scores", {}).items()},
        llrs={Modality(m): float(v) for m, v in d.get("llrs", {}).items()},
    )


def _view(record: Record) -> RecordView:
    return RecordView(
        reference_id=record.ref_id,
        partition=record.partition,
        status=record.status,
        attributes={str(k): str(v) for k, v in record.attributes.items()},
        models={m: t.model for m, t in record.templates.items()},
        created=record.created,
        updated=record.updated,
    )
