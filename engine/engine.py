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

import bisect
import contextlib
import functools
import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engine.calibration import FUSED_FACE, FUSED_FACE_VS_ONE, fused_face_variant, has_distributions
from engine.config import EngineConfig
from engine.cpus import set_threads, threads
from engine.datadir import DataDir
from engine.errors import (
    Conflict,
    InvalidInput,
    ModelMismatch,
    NasnameError,
    NotFound,
    QualityRejected,
    SampleRejected,
)
from engine.events import EventLog, recorded
from engine.extractor import Extractor
from engine.fusion import MIN_FUSED_THRESHOLD, FusedThreshold, Fusion, expected_fpir, per_comparison_fmr
from engine.gallery import Gallery
from engine.idempotency import enroll_from_json, enroll_to_json, insert_from_json, insert_to_json
from engine.multisample import MAX_FRAMES, Frame, Strategy, combine
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
    SampleUse,
    Threshold,
    UpdateOutcome,
    UpdateResult,
    VerifyResult,
)
from engine.store import NewRecord
from engine.store.idempotency import IdempotencyKey, Idempotent, Replay
from engine.store.values import AuditReport, CaseEvent, Quarantined, Record, WriteResult
from engine.types import Modality, ModelRef, Quality, QualityReason, Template

if TYPE_CHECKING:
    from engine.reports import ReportPeriod

__all__ = ["BatchEntry", "Engine"]

log = logging.getLogger(__name__)

ExtractorLoader = Callable[[str], Extractor]

# The target FPIR a request may ask for. Below 1e-6 a threshold is beyond anything calibration data
# can support (an FPIR of 1e-300 is a number, not a measurement) and would quietly switch
# de-duplication off; above 0.5, more than half of the searches for a new person would return a false
# candidate, which is no longer a search. Configured defaults are in this range too (0.003).
FPIR_RANGE = (1e-6, 0.5)


@dataclass(frozen=True)
class _Extracted:
    """One sample through its extractor: the template (None when refused), its result, the refusal."""

    template: Template | None
    result: SampleResult
    error: SampleRejected | None = None


def _check_fpir(value: float | None) -> None:
    lo, hi = FPIR_RANGE
    if value is not None and not lo <= value <= hi:  # also refuses NaN
        raise InvalidInput(f"target FPIR must be between {lo:g} and {hi:g}, got {value:g}",
                           reason="INVALID_THRESHOLD", details={"min": lo, "max": hi})



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
        self._fusion = self._given_fusion = fusion
        self._fusion_lock = threading.Lock()
        self._unfused_warned: set[ModelRef] = set()
        self._variant_files: dict[tuple[ModelRef, str], bool] = {}  # see _has_calibration
        self._one_frame_fusion: Fusion | None = None  # see _fusion_for
        # Models a template sent by a client may be of: those the extractors make, and those the
        # caller handed calibrations for (tools and tests with their own models). See _check_known.
        self._calibrated = fusion.models() if fusion is not None else {}
        self._extractor_models: dict[str, ModelRef | None] = {}
        self._custom_extractors = extractors is not None
        # Search-then-store of an enroll must be atomic: two enrollments of the same person arriving
        # together must not both miss each other. Extraction happens outside this lock.
        self._enroll_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="nasname-extract")
        # At most one image extraction per available CPU at a time, whatever the number of callers:
        # the service keeps many more handler threads than CPUs so that concurrent identifies can
        # wait together in one micro-batch (server.config.default_workers), and those threads must
        # not all run CPU-bound model inference at once (each extraction already uses the cores).
        self._extract_slots = threading.BoundedSemaphore(max(2, threads()))
        # every operation attempt leaves a statistics row (engine.events), in the log the data
        # directory owns; None for store-less fakes
        datadir = getattr(gallery, "datadir", None)
        self.events: EventLog | None = datadir.events if datadir is not None else None
        if self.events is not None:
            self.events.retention_days = config.event_retention_days
        self._on_extraction: Callable[[str, Mapping[str, float]], None] | None = None
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
        set_threads(config.threads)  # before any index sizes its pools (engine.cpus)
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

    # -- idempotency ---------------------------------------------------------------------------

    def _key(self, actor: str, request_id: str | None, operation: str,
             *content: object) -> IdempotencyKey | None:
        """Writes given a ``request_id`` are idempotent per caller (``actor``): repeated within
        ``config.idempotency_retention_s`` they return the first call's result and write nothing
        (``engine.store.idempotency``; the key is committed with the change). ``content``: what makes
        the request this request (ids, options, samples); the same id with other content is refused."""
        if not request_id:
            return None
        return IdempotencyKey(actor, request_id, operation, self._config.idempotency_retention_s,
                              fingerprint=_fingerprint(content))

    def _replayed(self, key: IdempotencyKey | None) -> dict[str, Any] | None:
        return None if key is None else self._gallery.store.idempotent_result(key)
    def on_extraction(self, callback: Callable[[str, Mapping[str, float]], None] | None) -> None:
        """Call ``callback(kind, stage_ms)`` after each extraction with the extractor's per-stage
        timings in milliseconds (the server's metrics); None stops it."""
        self._on_extraction = callback

    # -- samples -------------------------------------------------------------------------------

    def _extract_one(self, sample: Sample) -> _Extracted:
        """One sample's template, or the refusal that dropped it (``SampleRejected``: no biometric
        found, or below the quality gate; anything else, such as an undecodable image, raises)."""
        if sample.template is not None:
            return _Extracted(sample.template, SampleResult(sample.modality, sample.template.model, None))
        assert sample.image is not None  # guaranteed by Sample.__post_init__
        extractor = self._load_extractor(sample.modality.kind)
        try:
            with self._extract_slots:
                extraction = extractor.extract(sample.image)
        except SampleRejected as exc:
            reasons = tuple(QualityReason(r) for r in exc.reasons if r in QualityReason.__members__)
            refused = Quality(0.0, False, reasons, rejected=reasons)
            return _Extracted(None, SampleResult(sample.modality, extractor.model, refused,
                                                 {"error_reason": exc.reason}, SampleUse.REFUSED), exc)
        stages = extraction.details.get("stage_ms")
        if self._on_extraction is not None and isinstance(stages, dict):
            self._on_extraction(sample.modality.kind, stages)
        quality = extraction.quality
        if QualityReason.MULTIPLE_FACES in quality.reasons and self._config.multiple_faces == "reject":
            # this installation refuses photos of several faces
            quality = replace(quality, ok=False, rejected=(*quality.rejected, QualityReason.MULTIPLE_FACES))
        details = {k: v for k, v in extraction.details.items() if isinstance(v, int | float | str | bool)}
        if not quality.ok:
            error = QualityRejected(
                f"{sample.modality.value} sample failed the quality check: "
                + ", ".join(r.value for r in (quality.rejected or quality.reasons)),
                reasons=[r.value for r in quality.reasons],
                details={"modality": sample.modality.value, "quality_score": round(quality.score, 3),
                         "instructions": "; ".join(quality.instructions)},
            )
            return _Extracted(None, SampleResult(sample.modality, extraction.template.model, quality,
                                                 {**details, "error_reason": error.reason},
                                                 SampleUse.REFUSED), error)
        return _Extracted(extraction.template,
                          SampleResult(sample.modality, extraction.template.model, quality, details))

    def extract(self, samples: Sequence[Sample]) -> tuple[dict[Modality, Template], list[SampleResult]]:
        """Check the samples and turn images into templates (in parallel). A modality may come with
        several samples (up to ``multisample.MAX_FRAMES``, all images or all templates): refused ones
        are dropped, the usable ones are combined into one template (``engine.multisample``); the
        call fails only when no sample of a modality is usable, with that modality's (first) refusal.
        Returns one template per modality and one ``SampleResult`` per input sample, in input order."""
        if not samples:
            raise InvalidInput("no biometric sample given", reason="NO_BIOMETRIC_DATA")
        groups: dict[Modality, list[int]] = {}
        for i, s in enumerate(samples):
            if s.modality not in self._enabled:
                raise InvalidInput(f"modality {s.modality.value} is not enabled on this server",
                                   reason="MODALITY_DISABLED")
            groups.setdefault(s.modality, []).append(i)
        for modality, idx in groups.items():
            if len(idx) > MAX_FRAMES:
                raise InvalidInput(f"{len(idx)} samples for {modality.value}; at most {MAX_FRAMES} per "
                                   "modality", reason="TOO_MANY_SAMPLES",
                                   details={"modality": modality.value, "max": MAX_FRAMES})
            if len({samples[i].template is None for i in idx}) > 1:
                raise InvalidInput(f"the samples for {modality.value} mix images and templates; send "
                                   "either", reason="MIXED_SAMPLES", details={"modality": modality.value})
        if len(samples) == 1:
            done = [self._extract_one(samples[0])]
        else:
            done = list(self._pool.map(self._extract_one, samples))
        results = [d.result for d in done]
        models = self._gallery.models()
        templates: dict[Modality, Template] = {}
        for modality, idx in groups.items():
            usable = [i for i in idx if done[i].template is not None]
            if not usable:
                error = done[idx[0]].error
                assert error is not None
                if len(idx) > 1:
                    error.details["samples_refused"] = len(idx)
                raise error
            expected = models.get(modality)
            for i in usable:
                template = done[i].template
                assert template is not None
                if expected is not None and template.model != expected:
                    raise ModelMismatch(
                        f"{modality.value} template is from {template.model}; "
                        f"this gallery uses {expected}",
                        details={"modality": modality.value, "expected": str(expected),
                                 "got": str(template.model)})
                if expected is None and samples[i].template is not None:
                    self._check_known(modality, template.model)
            frames = [Frame(t, None if r.quality is None else r.quality.score)
                      for t, r in ((done[i].template, results[i]) for i in usable) if t is not None]
            combined = combine(frames, self._frames_strategy(modality, frames[0].template.model))
            templates[modality] = combined.template
            for pos, i in enumerate(usable):
                if pos not in combined.used:
                    results[i] = replace(results[i], use=SampleUse.NOT_SELECTED)
        return templates, results

    def _check_known(self, modality: Modality, model: ModelRef) -> None:
        """Refuse a client's template of a model this server does not know, before it can fix the
        model of a modality that has none yet: a station could otherwise lock an unused modality to
        a made-up model, and every real capture of it would be refused from then on. Known: the
        model the server's own extractor of that kind makes (registry and manifests), or one the
        engine was given calibrations for. (A modality that has a model accepts exactly that one.)"""
        if self._calibrated.get(modality) == model:
            return
        kind = modality.kind
        if kind not in self._extractor_models:
            try:
                if self._custom_extractors:
                    self._extractor_models[kind] = self._load_extractor(kind).model
                else:
                    from engine.extractors import template_model

                    self._extractor_models[kind] = template_model(kind, self._config.face_model)
            except NasnameError as exc:
                log.warning("the %s extractor's model is unknown (%s)", kind, exc)
                self._extractor_models[kind] = None
        known = self._extractor_models[kind]
        if model != known:
            accepts = (f"it accepts {known} (its {kind} extractor's model)" if known is not None
                       else f"its {kind} extractor is not available")
            raise InvalidInput(
                f"{modality.value} template of {model}, a model this server does not know; {accepts}",
                reason="UNKNOWN_MODEL",
                details={"modality": modality.value, "template_model": str(model),
                         "known_model": str(known) if known is not None else ""})

    # -- fusion --------------------------------------------------------------------------------

    def _frames_strategy(self, modality: Modality, model: ModelRef) -> Strategy:
        """How several frames of ``modality`` become one template: the configuration's choice
        (``face_frames``, ``iris_frames``), except that face frames are fused only for a model with a
        calibration of fused templates (``engine.calibration.FUSED_FACE``). Without one the engine
        could not keep its FPIR promise for fused faces, so it keeps the best frame and says so once."""
        if modality.kind != "face":
            return Strategy(self._config.iris_frames)
        wanted = Strategy(self._config.face_frames)
        given = self._given_fusion
        if given is not None and given.knows(modality, model):  # calibrations handed in: theirs
            fused = given.variant(modality) == FUSED_FACE
        else:
            fused = self._has_calibration(model, FUSED_FACE)
        if wanted is Strategy.FUSE and not fused:
            if model not in self._unfused_warned:
                self._unfused_warned.add(model)
                log.warning("face_frames = fuse, but %s has no calibration of fused templates: the "
                            "best face frame is kept instead (models/calibrate_face.py --fused)", model)
            return Strategy.BEST
        return wanted

    def _has_calibration(self, model: ModelRef, variant: str) -> bool:
        """Whether the shipped calibrations hold ``variant`` of ``model``; looked up once per engine
        (the files ship with the code), not on every search."""
        key = (model, variant)
        known = self._variant_files.get(key)
        if known is None:
            known = self._variant_files[key] = has_distributions(model, variant=variant)
        return known

    def calibration_variants(self, models: Mapping[Modality, ModelRef], *,
                             one_face_frame: bool = False) -> dict[Modality, str]:
        """The calibration variant each modality's comparisons need (``engine.calibration``). When
        this engine fuses face frames its gallery may hold fused templates: a probe fused from several
        frames (or a stored record, or an unknown probe) is judged as fused against fused
        (``FUSED_FACE``), a probe of ``one_face_frame`` as fused against one frame
        (``FUSED_FACE_VS_ONE``, less strict) when the model has that calibration."""
        face = models.get(Modality.FACE)
        if face is None or self._frames_strategy(Modality.FACE, face) is not Strategy.FUSE:
            return {}
        variant = fused_face_variant(face, one_frame=one_face_frame, exists=self._has_calibration)
        return {Modality.FACE: variant}

    def fusion_for_models(self, models: Mapping[Modality, ModelRef]) -> Fusion:
        """The calibrations this engine decides with, for ``models`` (dedup jobs use it, so that a
        job's thresholds are the engine's): those it was given when they cover ``models``, else the
        shipped ones of the variants it needs."""
        given = self._given_fusion
        if given is not None and all(given.knows(m, ref) for m, ref in models.items()):
            return given
        return Fusion.for_models(models, variants=self.calibration_variants(models))

    def _fusion_for(self, templates: Mapping[Modality, Template], *, one_face_frame: bool = False) -> Fusion:
        """The calibrations for comparing ``templates`` with the gallery: the gallery's (every record
        may be fused), or, for a probe of ``one_face_frame``, those of a single frame against it."""
        with self._fusion_lock:
            if self._fusion is None:
                models: dict[Modality, ModelRef] = dict(self._gallery.models())
                self._fusion = self.fusion_for_models(models) if models else None
            fusion = self._fusion
            if fusion is None or any(not fusion.knows(m, t.model) for m, t in templates.items()):
                models = dict(self._gallery.models())
                models.update({m: t.model for m, t in templates.items()})
                fusion = self._fusion = self.fusion_for_models(models)
            if not one_face_frame or self._given_fusion is fusion:
                return fusion
            models = fusion.models()
            variants = self.calibration_variants(models, one_face_frame=True)
            if variants.get(Modality.FACE) != FUSED_FACE_VS_ONE:
                return fusion
            single = self._one_frame_fusion
            if single is None or single.models() != models:
                single = self._one_frame_fusion = Fusion.for_models(models, variants=variants)
            return single

    @staticmethod
    def _threshold(fusion: Fusion, modalities: Iterable[Modality], fmr: float) -> FusedThreshold:
        decided = fusion.decide_threshold(modalities, fmr, floor=MIN_FUSED_THRESHOLD)
        if not decided.met:
            log.warning("target false match rate %.3g per comparison cannot be met by %s: the strictest "
                        "threshold (identical samples) gives %.3g", fmr,
                        "+".join(sorted(m.value for m in modalities)), decided.fmr)
        return decided

    @staticmethod
    def _report(target: float, n: int, decided: FusedThreshold, *, met: bool = True) -> Threshold:
        return Threshold(target, n, decided.value, target_met=decided.met and met,
                         expected_fpir=expected_fpir(decided.fmr, n))

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
        one_face_frame: bool = False,
    ) -> tuple[list[Candidate], Threshold]:
        if not 1 <= max_results <= self._config.max_results_limit:
            raise InvalidInput(f"max_results must be in 1..{self._config.max_results_limit}",
                               reason="INVALID_REQUEST")
        fusion = self._fusion_for(probe, one_face_frame=one_face_frame)
        n = self._gallery.count(partition=partition) if reference_ids is None else len(set(reference_ids))
        fmr = per_comparison_fmr(target_fpir, max(n, 1))
        decided = self._threshold(fusion, probe.keys(), fmr)
        threshold = self._report(target_fpir, n, decided)
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
        thresholds: dict[frozenset[Modality], FusedThreshold] = {frozenset(probe): decided}
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
            if fused >= thresholds[shared].value:
                passing.append((label, fused, per_modality, llrs))
        # a candidate sharing fewer modalities may have been held to an unreachable target too
        threshold = self._report(target_fpir, n, decided, met=all(t.met for t in thresholds.values()))
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

    @recorded("insert")
    def insert(
        self,
        reference_id: str | None,
        samples: Sequence[Sample],
        *,
        partition: str = "default",
        attributes: Mapping[str, str] | None = None,
        actor: str = "local",
        request_id: str | None = None,
    ) -> InsertResult:
        """Store a record without de-duplication. ``None`` id -> a generated one. Existing id ->
        AlreadyExists. Durable and searchable when this returns. ``request_id``: see :meth:`_key`."""
        key = self._key(actor, request_id, "insert", reference_id, samples, partition, attributes)
        if (done := self._replayed(key)) is not None:
            return insert_from_json(done)
        templates, results = self.extract(samples)
        idem = None if key is None else Idempotent(
            key, lambda w: insert_to_json(InsertResult(_ref(w), results)))
        try:
            written = self._gallery.insert(templates, ref_id=reference_id, partition=partition,
                                           attributes=attributes, images=_images(samples, results),
                                           qualities=_qualities(results), actor=actor, idem=idem)
        except Replay as replay:
            return insert_from_json(replay.result)
        return InsertResult(written.ref_id, results)

    @recorded("enroll")
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
        request_id: str | None = None,
        annotate: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
        images: Mapping[Modality, bytes] | None = None,
    ) -> EnrollResult:
        """De-duplicate against the gallery (all partitions unless ``search_partition``), then store:
        ENROLLED (active) when no candidate reaches the threshold, else PENDING_ADJUDICATION with the
        candidates kept for an adjudicator. Durable either way when this returns. ``request_id``: see
        :meth:`_key`. ``annotate`` adds to the kept candidate JSON (a transfer import adds both sites'
        provenance); ``images`` are kept images for template-only samples (a transfer packet's)."""
        key = self._key(actor, request_id, "enroll", reference_id, samples, partition, attributes,
                        target_fpir, search_partition, images)
        if (done := self._replayed(key)) is not None:
            return enroll_from_json(done)
        _check_fpir(target_fpir)
        templates, results = self.extract(samples)
        kept_images = {**_images(samples, results), **(images or {})}
        fpir = target_fpir if target_fpir is not None else self._config.enroll_target_fpir
        try:
            return self._enroll(templates, results, samples, key, reference_id=reference_id,
                                partition=partition, attributes=attributes, fpir=fpir,
                                search_partition=search_partition, actor=actor, annotate=annotate,
                                kept_images=kept_images)
        except Replay as replay:
            return enroll_from_json(replay.result)

    def _enroll(self, templates: Mapping[Modality, Template], results: list[SampleResult],
                samples: Sequence[Sample], key: IdempotencyKey | None, *, reference_id: str | None,
                partition: str, attributes: Mapping[str, str] | None, fpir: float,
                search_partition: str | None, actor: str,
                annotate: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None,
                kept_images: Mapping[Modality, bytes]) -> EnrollResult:
        with self._enroll_lock:
            candidates, threshold = self._search(templates, max_results=self._config.shortlist,
                                                 target_fpir=fpir, partition=search_partition,
                                                 reference_ids=None, one_face_frame=_one_face(results))
            outcome = EnrollOutcome.PENDING_ADJUDICATION if candidates else EnrollOutcome.ENROLLED
            idem = None if key is None else Idempotent(key, lambda w: enroll_to_json(
                EnrollResult(_ref(w), outcome, candidates, threshold, results)))
            if candidates:
                kept = [_candidate_json(c) for c in candidates]
                written = self._gallery.insert(
                    templates, ref_id=reference_id, partition=partition, attributes=attributes,
                    status=RecordStatus.PENDING, candidates=annotate(kept) if annotate else kept,
                    images=kept_images, qualities=_qualities(results), actor=actor, idem=idem)
            else:
                written = self._gallery.insert(templates, ref_id=reference_id, partition=partition,
                                               attributes=attributes, images=kept_images,
                                               qualities=_qualities(results), actor=actor, idem=idem)
        log.info("enroll outcome=%s candidates=%d", outcome.value, len(candidates))
        return EnrollResult(written.ref_id, outcome, candidates, threshold, results)

    def enroll_many(
        self,
        entries: Sequence[BatchEntry],
        *,
        target_fpir: float | None = None,
        actor: str = "local",
        annotate: Callable[[int, list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
        also: Callable[[sqlite3.Connection, list[WriteResult]], None] | None = None,
    ) -> list[EnrollResult]:
        """Enroll a block of records given as templates with exactly the outcome of calling
        :meth:`enroll` on each in order, at the cost of one batched search per modality and one
        transaction: the block is searched 1:N against the gallery (one ``search_labels`` call per
        modality) and against itself (``Gallery.scratch_index``); then each record, in order, takes as
        candidates the gallery's top-``shortlist`` merged with the records of the block enrolled
        ACTIVE before it, scored in every shared modality and held to the fused threshold at the
        gallery size it would have seen (so two records of the block that match each other end as
        the sequential run ends them: the second pending, with the first as its candidate).
        Entries with ``candidates`` are stored PENDING with those, unsearched (a transfer conflict).
        All records and ``also``'s rows are written in one transaction (``Gallery.insert_many``);
        enrollments wait meanwhile. ``annotate(i, kept)`` adds to entry ``i``'s candidate JSON."""
        _check_fpir(target_fpir)
        fpir = target_fpir if target_fpir is not None else self._config.enroll_target_fpir
        models = self._gallery.models()
        for e in entries:
            if not e.templates:
                raise InvalidInput(f"record {e.reference_id} has no template", reason="NO_BIOMETRIC_DATA")
            for m, t in e.templates.items():
                if m not in self._enabled:
                    raise InvalidInput(f"modality {m.value} is not enabled on this server",
                                       reason="MODALITY_DISABLED")
                if models.get(m, t.model) != t.model:
                    raise ModelMismatch(f"{m.value} template is from {t.model}; "
                                        f"this gallery uses {models[m]}",
                                        details={"modality": m.value, "expected": str(models[m]),
                                                 "got": str(t.model)})
                if m not in models:
                    self._check_known(m, t.model)
        with self._enroll_lock:
            found = _BlockSearch(self, entries, fpir) if entries else None
            records: list[NewRecord] = []
            outcomes: list[tuple[EnrollOutcome, list[Candidate], Threshold]] = []
            for i, e in enumerate(entries):
                assert found is not None
                candidates, threshold = found.decide(i)
                kept: list[dict[str, Any]] | None = None
                if e.candidates is not None:
                    kept = [dict(c) for c in e.candidates]
                elif candidates:
                    kept = [_candidate_json(c) for c in candidates]
                    kept = annotate(i, kept) if annotate else kept
                status = RecordStatus.ACTIVE if kept is None else RecordStatus.PENDING
                records.append(NewRecord(e.templates, ref_id=e.reference_id, partition=e.partition,
                                         attributes=e.attributes, status=status, candidates=kept,
                                         images=e.images))
                outcomes.append((EnrollOutcome.PENDING_ADJUDICATION if status is RecordStatus.PENDING
                                 else EnrollOutcome.ENROLLED, candidates, threshold))
            written = self._gallery.insert_many(records, actor=actor, also=also)
        log.info("enroll_many records=%d pending=%d", len(written),
                 sum(o is EnrollOutcome.PENDING_ADJUDICATION for o, _, _ in outcomes))
        return [EnrollResult(w.ref_id, o, c, t, [SampleResult(m, tm.model, None)
                                                  for m, tm in e.templates.items()])
                for w, (o, c, t), e in zip(written, outcomes, entries, strict=True)]

    @recorded("identify")
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
        _check_fpir(target_fpir)
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
                                             exclude=exclude, one_face_frame=samples is not None
                                             and _one_face(results))
        return IdentifyResult(candidates, threshold, results)

    @recorded("verify")
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
        fusion = self._fusion_for(probe, one_face_frame=_one_face(results))
        fmr = target_fmr if target_fmr is not None else self._config.verify_target_fmr
        fused, llrs = fusion.fuse(scores)
        threshold = self._report(fmr, 1, self._threshold(fusion, shared, per_comparison_fmr(fmr, 1)))
        return VerifyResult(reference_id, fused >= threshold.fused_threshold, fused, scores, llrs,
                            threshold, results)

    @recorded("delete")
    def delete(self, reference_id: str, *, actor: str = "local", request_id: str | None = None) -> None:
        """Erase the record's biometrics; it disappears from results immediately. Unknown -> NotFound.
        ``request_id``: see :meth:`_key` (a repeat then succeeds instead of finding nothing to delete)."""
        key = self._key(actor, request_id, "delete", reference_id)
        if self._replayed(key) is not None:
            return
        try:
            self._gallery.delete(reference_id, actor=actor,
                                 idem=None if key is None else Idempotent(key, _write_json))
        except Replay:
            return

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
            quarantined=int(raw["quarantined"]),
            audit_problem=str(raw["audit_problem"]),
            last_backup_time=None if backup is None else float(backup["time"]),
            last_backup_age_s=None if backup is None else float(backup["age_s"]),
        )

    def quarantined(self) -> list[tuple[str, Quarantined]]:
        """``(reference id, Quarantined)`` of the active records left out of every search because a
        stored template is unreadable, with the reason per modality, for an admin to restore (backup,
        old key back in the ring) or erase (``delete``)."""
        return self._gallery.quarantined()

    def check_templates(self) -> list[tuple[str, Quarantined]]:
        """Decrypt every stored template (``Gallery.check_templates``), for ``nasname check``."""
        return self._gallery.check_templates()

    def verify_audit(self) -> AuditReport:
        """Full check of the audit chain (``Gallery.verify_audit``), for ``nasname check``."""
        return self._gallery.verify_audit()

    def list_pending(self, *, limit: int = 100, offset: int = 0) -> list[AdjudicationItem]:
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be in 1..1000 and offset >= 0", reason="INVALID_REQUEST")
        cases = self._gallery.store.pending(limit=limit + offset)[offset:]
        return [
            AdjudicationItem(
                reference_id=c.ref_id,
                partition=c.partition,
                candidates=[_candidate_from_json(d) for d in c.candidates],
                decisions=[{"actor": d.actor, "decision": d.decision, "comment": d.comment, "time": d.time,
                            "mate": d.mate} for d in c.decisions],
                created=c.created,
            )
            for c in cases
        ]

    @recorded("adjudicate")
    def adjudicate(
        self,
        reference_id: str,
        decision: AdjudicationDecision,
        *,
        actor: str,
        comment: str = "",
        mate_reference_id: str | None = None,
        request_id: str | None = None,
        final: bool = True,
    ) -> RecordView:
        """Decide a pending record: DISTINCT -> it becomes active; SAME -> its biometrics are erased
        and the decision (with the mate's id) is audited. Not pending -> Conflict. ``request_id``: see
        :meth:`_key` (a repeat returns the record's view instead of Conflict). ``final=False`` records
        the decision without resolving the case (the first half of a two-person review)."""
        key = self._key(actor, request_id, "adjudicate", reference_id, decision.value, comment,
                        mate_reference_id, final)
        if self._replayed(key) is not None:
            return self.get(reference_id)
        if decision is AdjudicationDecision.SAME:
            if not mate_reference_id:
                raise InvalidInput("a 'same' decision needs the mate: the enrolled reference id this person "
                                   "already is", reason="MISSING_MATE")
            case = self._gallery.store.case(reference_id)
            if case is None:
                raise NotFound(f"no adjudication case for {reference_id}", details={"ref_id": reference_id})
            if mate_reference_id not in {c.get("ref_id") for c in case.candidates}:
                raise InvalidInput(f"{mate_reference_id} is not a candidate of {reference_id}",
                                   reason="INVALID_REQUEST")
        mate = mate_reference_id if decision is AdjudicationDecision.SAME else None
        # Replay: decided by the first call; the view below is the record as it is now.
        with contextlib.suppress(Replay):
            self._gallery.decide(reference_id, decision.value, actor=actor, comment=comment, final=final,
                                 mate=mate, idem=None if key is None else Idempotent(key, _write_json))
        return self.get(reference_id)

    def history(self, reference_id: str) -> list[CaseEvent]:
        """The record's adjudication history (cases opened / reopened, decisions with mate, actor,
        reason and time), oldest first. Unknown id: NotFound."""
        return self._gallery.store.history(reference_id)

    def reopen(self, reference_id: str, *, actor: str, reason: str) -> RecordView:
        """Reopen a record decided ``distinct``: PENDING again, out of every search, with its
        candidates back in the adjudication queue (``engine.store.adjudication``)."""
        self._gallery.reopen(reference_id, actor=actor, reason=reason)
        return self.get(reference_id)

    def list_records(self, *, partition: str | None = None, status: RecordStatus | None = None,
                     created_from: float | None = None, created_to: float | None = None,
                     limit: int = 100, offset: int = 0) -> tuple[list[RecordView], int]:
        """A page of records (oldest first) matching the filters, and how many match in all."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be in 1..1000 and offset >= 0", reason="INVALID_REQUEST")
        records, total = self._gallery.store.list_records(
            partition=partition, status=status, created_from=created_from, created_to=created_to,
            limit=limit, offset=offset)
        models = self._gallery.models()
        return [RecordView(r.ref_id, r.partition, r.status, {str(k): str(v) for k, v in r.attributes.items()},
                           {m: models[m] for m in r.modalities if m in models}, r.created, r.updated)
                for r in records], total

    def update_biometrics(self, reference_id: str, sample: Sample, *, verification: Sequence[Sample] = (),
                          target_fmr: float | None = None, target_fpir: float | None = None,
                          actor: str = "local") -> UpdateResult:
        """Re-capture: add or replace one modality of an ACTIVE record. First 1:1 — ``verification``
        samples of the record's other modalities must match it (with no other modality on the record,
        the new sample is verified against the one it replaces); then 1:N — the new sample must not
        match anyone else; only then is it stored. Each step is audited; a refusal changes nothing."""
        record = self._gallery.get(reference_id, with_templates=False)
        if record.status is not RecordStatus.ACTIVE:
            raise Conflict(f"record {reference_id} is {record.status.value}, not active", reason="NOT_ACTIVE",
                           details={"status": record.status.value})
        others = [m for m in record.modalities if m is not sample.modality]
        if others and not any(s.modality in others for s in verification):
            raise InvalidInput("to re-capture, first verify the person with the record's other modalities: "
                               "give samples of " + ", ".join(m.value for m in others),
                               reason="VERIFICATION_NEEDED")
        check = self.verify(reference_id, list(verification) or [sample], target_fmr=target_fmr)
        store = self._gallery.store
        details: dict[str, Any] = {"modality": sample.modality.value, "verified": check.match,
                                   "verified_with": sorted(m.value for m in check.scores)}
        if not check.match:
            store.audit_event(actor, "recapture_refused", reference_id, {**details, "step": "verify"})
            return UpdateResult(reference_id, UpdateOutcome.NOT_VERIFIED, check, [], check.threshold,
                                check.samples)
        templates, results = self.extract([sample])
        fpir = target_fpir if target_fpir is not None else self._config.enroll_target_fpir
        with self._enroll_lock:
            candidates, threshold = self._search(templates, max_results=self._config.shortlist,
                                                 target_fpir=fpir, partition=None, reference_ids=None,
                                                 exclude=record.label, one_face_frame=_one_face(results))
            if candidates:
                store.audit_event(actor, "recapture_refused", reference_id,
                                  {**details, "step": "dedup", "candidates": len(candidates)})
                return UpdateResult(reference_id, UpdateOutcome.POSSIBLE_DUPLICATE, check, candidates,
                                    threshold, results)
            self._gallery.replace_template(reference_id, sample.modality, templates[sample.modality],
                                           image=sample.image, actor=actor)
        return UpdateResult(reference_id, UpdateOutcome.UPDATED, check, [], threshold, results)

    def report_files(self, period: ReportPeriod, *, now: float) -> dict[str, bytes]:
        """The registration report for ``period`` as files (``engine.reports``): report.html,
        report.json and one CSV per table, small counts suppressed as the period says."""
        from engine.reports import build_report, report_files

        return report_files(build_report(self, period, now=now))

    def threshold(self, modalities: Iterable[Modality], target_fpir: float | None = None) -> Threshold:
        """The fused threshold an enrollment would apply today to candidates sharing ``modalities``
        (default target: ``enroll_target_fpir``) at the current gallery size."""
        models = self._gallery.models()
        shared = [m for m in modalities if m in models]
        if not shared:
            raise InvalidInput("a threshold needs a modality the gallery holds", reason="INVALID_REQUEST")
        fusion = self._fusion_for({})  # the calibrations of the gallery's models
        fpir = target_fpir if target_fpir is not None else self._config.enroll_target_fpir
        n = self._gallery.count()
        return self._report(fpir, n, self._threshold(fusion, shared, per_comparison_fmr(fpir, max(n, 1))))

    def close(self) -> None:
        """Flush snapshots and close the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        self._gallery.close()


@dataclass(frozen=True)
class BatchEntry:
    """One record of :meth:`Engine.enroll_many`: its templates (made already), where it goes, the
    images kept with it, and ``candidates`` when it is to be stored PENDING with those, unsearched."""

    reference_id: str
    templates: Mapping[Modality, Template]
    partition: str = "default"
    attributes: Mapping[str, Any] | None = None
    images: Mapping[Modality, bytes] | None = None
    candidates: Sequence[Mapping[str, Any]] | None = None


class _BlockSearch:
    """The searches of one ``enroll_many`` block, made up front, and the sequential decisions over
    them. Candidates are keyed by gallery label (>= 0) or block position ``j`` as ``-1 - j``.

    Each record is searched against the gallery (top-``shortlist`` per modality, one batched call) and
    against the block (a scratch exact index of the block's templates, top-``shortlist`` + 1); the
    records of the block enrolled ACTIVE before it are merged into its gallery list as the sequential
    run's index would have held them (those below the block list's cut are scored one by one when
    they could still reach the merged list).

    ``Engine._search`` scores every listed candidate in every modality it was not listed in. Here
    that is done only for candidates that could still pass: with an exact index, a label missing from
    a full list scores at most that list's lowest similarity, and the LLR is non-decreasing in the
    similarity, so a candidate whose LLRs so far plus those bounds stay below the lowest threshold it
    could be held to cannot pass, whatever its exact scores. Modalities searched through approximate
    indexes get no bound (their candidates are always scored), so the outcome is the sequential one
    either way. Thresholds are steps in the gallery size: found by bisection over the sizes the block
    can reach, not recomputed per record."""

    _MARGIN = 1e-3  # similarity slack on the bound: search and score may round float32 differently

    def __init__(self, engine: Engine, entries: Sequence[BatchEntry], fpir: float) -> None:
        self.engine, self.entries, self.fpir = engine, entries, fpir
        gallery, config = engine._gallery, engine._config
        self.k = config.shortlist
        self.exact = {m: (config.face_index if m.kind == "face" else config.iris_index) == "exact"
                      for m in Modality}
        probe = {m: t for e in entries for m, t in e.templates.items()}
        self.fusion = engine._fusion_for(probe)
        self.n0 = gallery.count()
        self.active = 0  # records of the block enrolled ACTIVE so far
        self._steps: dict[frozenset[Modality], tuple[list[int], list[FusedThreshold]]] = {}
        # per modality: the row of each entry holding it (and back), the gallery's top-k, the scratch
        # index of the block and its top-k + 1 (the record itself is there), the rows enrolled ACTIVE
        self.row: dict[Modality, dict[int, int]] = {}
        self.entry_of: dict[Modality, npt.NDArray[np.int64]] = {}
        self.hits: dict[Modality, tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]] = {}
        self.scratch: dict[Modality, Any] = {}
        self.near: dict[Modality, tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]] = {}
        self.is_active: dict[Modality, npt.NDArray[np.bool_]] = {}
        for m in sorted({m for e in entries for m in e.templates}, key=lambda x: x.value):
            who = [i for i, e in enumerate(entries) if m in e.templates]
            probes = [entries[i].templates[m] for i in who]
            self.row[m] = {i: r for r, i in enumerate(who)}
            self.entry_of[m] = np.array(who, dtype=np.int64)
            self.is_active[m] = np.zeros(len(who), dtype=np.bool_)
            searched = [r for r, i in enumerate(who) if entries[i].candidates is None]
            sims = np.full((len(who), 0), -np.inf, dtype=np.float32)
            labels = np.full((len(who), 0), -1, dtype=np.int64)
            if searched:
                s, lab = gallery.search_labels(m, [probes[r] for r in searched], self.k)
                sims = np.full((len(who), s.shape[1]), -np.inf, dtype=np.float32)
                labels = np.full((len(who), lab.shape[1]), -1, dtype=np.int64)
                sims[searched], labels[searched] = s, lab
            self.hits[m] = (sims, labels)
            self.scratch[m] = gallery.scratch_index(m, probes)
            self.near[m] = self.scratch[m].search(probes, min(self.k + 1, len(who)))

    def threshold(self, modalities: frozenset[Modality], n: int) -> FusedThreshold:
        """``Engine._threshold`` at gallery size ``n`` (within the sizes this block can reach)."""
        if modalities not in self._steps:
            self._steps[modalities] = self._step_function(modalities)
        starts, values = self._steps[modalities]
        return values[bisect.bisect_right(starts, n) - 1]

    def _step_function(self, modalities: frozenset[Modality]) -> tuple[list[int], list[FusedThreshold]]:
        def at(n: int) -> FusedThreshold:
            return Engine._threshold(self.fusion, modalities, per_comparison_fmr(self.fpir, max(n, 1)))

        out: list[tuple[int, FusedThreshold]] = []

        def walk(lo: int, hi: int, t_lo: FusedThreshold, t_hi: FusedThreshold) -> None:
            # the threshold only rises with n: equal at both ends means equal in between
            if t_lo == t_hi:
                out.append((lo, t_lo))
            elif hi - lo <= 1:
                out.extend([(lo, t_lo), (hi, t_hi)])
            else:
                mid = (lo + hi) // 2
                t_mid = at(mid)
                walk(lo, mid, t_lo, t_mid)
                walk(mid, hi, t_mid, t_hi)

        lo, hi = self.n0, self.n0 + len(self.entries)
        walk(lo, hi, at(lo), at(hi))
        return [s for s, _ in out], [t for _, t in out]

    def decide(self, i: int) -> tuple[list[Candidate], Threshold]:
        """Entry ``i``'s candidates as :meth:`Engine.enroll` would find them after the entries before
        it, and its threshold; notes it ACTIVE when it was searched and nothing passes."""
        e = self.entries[i]
        probe = e.templates
        n = self.n0 + self.active
        decided = self.threshold(frozenset(probe), n)
        report = self.engine._report(self.fpir, n, decided)
        if e.candidates is not None:
            return [], report
        mods = list(probe)
        lists = [self._listed(m, i) for m in mods]
        every = np.unique(np.concatenate([k for k, _, _ in lists]))
        if every.size == 0:
            return [], report
        S = np.full((every.size, len(mods)), np.nan)
        for c, (keys, vals, _) in enumerate(lists):
            S[np.searchsorted(every, keys), c] = vals
        own = every < 0  # records of the block: scored in the scratch index, when they hold the modality
        holds = np.ones_like(S, dtype=np.bool_)
        for x in np.nonzero(own)[0].tolist():
            theirs = self.entries[-1 - int(every[x])].templates
            holds[x] = [m in theirs for m in mods]
        bound = np.array([b for _, _, b in lists])
        open_ = np.isnan(S) & holds & (bound > -np.inf)[None, :]
        L = self._llrs(mods, S)
        bits = 1 << np.arange(len(mods))
        found = (~np.isnan(S) * bits).sum(axis=1)
        unsure = (open_ * bits).sum(axis=1)
        extra = (open_ * np.maximum(bound, 0.0)[None, :]).sum(axis=1)
        codes, where = np.unique(found << 8 | unsure, return_inverse=True)
        floor = np.array([self._lowest(mods, int(p) >> 8, int(p) & 255, n) for p in codes])[where]
        need = (unsure > 0) & (np.nansum(L, axis=1) + extra >= floor - 1e-9)
        for c, m in enumerate(mods):
            rows = np.nonzero(need & open_[:, c] & ~own)[0]
            if rows.size:
                S[rows, c] = self.engine._gallery.score(m, probe[m], every[rows])
            mine = np.nonzero(need & open_[:, c] & own)[0]
            if mine.size:
                at = np.array([self.row[m][-1 - int(every[x])] for x in mine], dtype=np.int64)
                S[mine, c] = self.scratch[m].score(probe[m], at)
            if rows.size or mine.size:
                L[:, c] = self.fusion.calibration(m).llr_of(S[:, c])
        fused = np.nansum(L, axis=1)
        shared = (~np.isnan(S) * bits).sum(axis=1)
        settled = (unsure == 0) | need  # the others cannot pass
        codes, where = np.unique(shared, return_inverse=True)
        held = [self.threshold(frozenset(m for c, m in enumerate(mods) if int(p) >> c & 1), n) for p in codes]
        met = all(held[w].met for w in np.unique(where[settled]).tolist())
        limit = np.array([t.value for t in held])[where]
        passing: list[tuple[int, float, dict[Modality, float], dict[Modality, float]]] = []
        for x in np.nonzero(settled & (fused >= limit))[0].tolist():
            cols = [c for c in range(len(mods)) if not np.isnan(S[x, c])]
            passing.append((int(every[x]), float(sum(L[x, c] for c in cols)),
                            {mods[c]: float(S[x, c]) for c in cols}, {mods[c]: float(L[x, c]) for c in cols}))
        report = self.engine._report(self.fpir, n, decided, met=met)
        candidates = self._named(passing)
        if not candidates:
            self.active += 1
            for m in probe:
                self.is_active[m][self.row[m][i]] = True
        return candidates[: self.k], report

    def _listed(self, m: Modality, i: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], float]:
        """Entry ``i``'s top-k in modality ``m`` over the gallery and the block's ACTIVE records before
        it (keys, similarities), and the LLR bound of a key not listed (-inf: every holder of ``m``
        is listed; inf: no bound, the index is approximate)."""
        r = self.row[m][i]
        sims, labels = self.hits[m][0][r], self.hits[m][1][r]
        keep = labels >= 0
        keys, vals = labels[keep], sims[keep].astype(np.float64)
        active = self.is_active[m]
        if active.any():
            near_s, near_l = self.near[m][0][r], self.near[m][1][r]
            near_s, near_l = near_s[near_l >= 0], near_l[near_l >= 0]
            cut_off = near_l.size < active.size  # the block list does not hold the whole block
            if cut_off and (keys.size < self.k or (near_s.size and vals.min() < near_s.min())):
                # an active record below the block list's cut could reach the merged list: score all
                rows = np.nonzero(active)[0]
                block_s = np.asarray(self.scratch[m].score(self.entries[i].templates[m], rows),
                                     dtype=np.float64)
            else:
                rows, block_s = near_l[active[near_l]], near_s[active[near_l]].astype(np.float64)
            keys = np.concatenate([keys, -1 - self.entry_of[m][rows]])
            vals = np.concatenate([vals, block_s])
            top = np.argsort(-vals, kind="stable")[: self.k]
            keys, vals = keys[top], vals[top]
        if not self.exact[m]:  # an approximate index may leave out anyone: score whatever is missing
            return keys, vals, np.inf
        if keys.size < self.k:  # an exact list that is not full holds every record holding m
            return keys, vals, -np.inf
        cut = float(vals.min()) + self._MARGIN  # others may hold m, up to the list's last similarity
        return keys, vals, float(self.fusion.calibration(m).llr_of(cut))

    def _llrs(self, mods: list[Modality], S: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.column_stack([self.fusion.calibration(m).llr_of(S[:, c]) for c, m in enumerate(mods)])

    def _lowest(self, mods: list[Modality], found: int, unsure: int, n: int) -> float:
        """The lowest threshold a key found through ``found`` (modality bits) may be held to once the
        modalities of ``unsure`` it may also hold are scored."""
        return min(self.threshold(frozenset(m for c, m in enumerate(mods) if (found | p) >> c & 1), n).value
                   for p in range(unsure + 1) if p & ~unsure == 0)

    def _named(self, passing: list[tuple[int, float, dict[Modality, float], dict[Modality, float]]]
               ) -> list[Candidate]:
        """Candidates with names and partitions, best first (one store query for the stored ones)."""
        stored = np.array([p[0] for p in passing if p[0] >= 0], dtype=np.int64)
        names: dict[int, str] = self.engine._gallery.ref_ids_of(stored) if stored.size else {}
        parts: dict[int, str] = dict(zip(stored.tolist(), self.engine._gallery.partitions_of(stored),
                                         strict=True)) if stored.size else {}
        for key in (p[0] for p in passing if p[0] < 0):
            names[key], parts[key] = self.entries[-1 - key].reference_id, self.entries[-1 - key].partition
        candidates = [Candidate(names[key], fused, per, llrs, parts[key])
                      for key, fused, per, llrs in passing if key in names]
        candidates.sort(key=lambda c: (-c.fused, c.reference_id))
        return candidates


def _default_loader(kind: str, face_model: str | None = None) -> Extractor:
    from engine.extractors import load_extractor

    return load_extractor(kind, face_model if kind == "face" else None)


def _ref(written: Any) -> str:
    assert isinstance(written, WriteResult)
    return written.ref_id


def _write_json(written: Any) -> dict[str, Any]:
    return {"ref_id": _ref(written)}


def _qualities(results: Sequence[SampleResult]) -> dict[Modality, float]:
    """The extractor's quality score per modality: the best of the samples used (precomputed
    templates have none)."""
    out: dict[Modality, float] = {}
    for r in results:
        if r.quality is not None and r.use is SampleUse.USED:
            out[r.modality] = max(out.get(r.modality, 0.0), float(r.quality.score))
    return out


def _fingerprint(content: Sequence[object]) -> str:
    """sha256 hex over a request's content: ids, options, mappings (sorted) and samples (modality and
    the image bytes or template bytes), each part length-prefixed so no two requests share a digest."""
    h = hashlib.sha256()

    def feed(part: object) -> None:
        if isinstance(part, Sample):
            feed(("sample", part.modality.value))
            feed(part.image if part.template is None else part.template.to_bytes())
        elif isinstance(part, bytes):
            h.update(b"b" + len(part).to_bytes(8, "big"))
            h.update(part)
        elif isinstance(part, Mapping):
            feed(tuple(sorted((str(k), v) for k, v in part.items())))
        elif isinstance(part, list | tuple):
            feed(f"seq:{len(part)}")
            for item in part:
                feed(item)
        else:
            text = repr(part).encode()
            h.update(b"r" + len(text).to_bytes(8, "big"))
            h.update(text)

    feed(tuple(content))
    return h.hexdigest()


def _one_face(results: Sequence[SampleResult]) -> bool:
    """Whether the probe's face template was made here from one photo: its calibration against a
    gallery of fused faces is less strict (``Engine.calibration_variants``). A precomputed template
    (no quality: not extracted here) may itself be fused, so it is judged as fused, as the records
    of a transfer packet are (``enroll_many``)."""
    used = [r for r in results if r.modality is Modality.FACE and r.use is SampleUse.USED]
    return len(used) == 1 and used[0].quality is not None


def _images(samples: Sequence[Sample], results: Sequence[SampleResult]) -> dict[Modality, bytes]:
    """The image kept per modality: of the samples used, the one of the best quality (the first
    when none has a quality)."""
    best: dict[Modality, tuple[float, bytes]] = {}
    for s, r in zip(samples, results, strict=True):
        if s.image is None or r.use is not SampleUse.USED:
            continue
        score = r.quality.score if r.quality is not None else -1.0
        if s.modality not in best or score > best[s.modality][0]:
            best[s.modality] = (score, s.image)
    return {m: image for m, (_, image) in best.items()}


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
