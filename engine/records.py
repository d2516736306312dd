"""Inputs and results of the Engine API (plain frozen dataclasses; the server maps them to protobuf).

Scores: ``Candidate.scores`` are per-modality similarities (higher = more alike, see engine.types);
``Candidate.llrs`` their calibrated log-likelihood ratios; ``Candidate.fused`` the sum of the LLRs of
the modalities the probe and the candidate share. A candidate is returned when ``fused`` is at or
above ``Threshold.fused`` (derived from the target FPIR and the gallery size, ``engine.fusion``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.errors import InvalidInput
from engine.store.values import RecordStatus
from engine.types import Modality, ModelRef, Quality, Template

__all__ = [
    "AdjudicationDecision",
    "AdjudicationItem",
    "Candidate",
    "EnrollOutcome",
    "EnrollResult",
    "GalleryStats",
    "IdentifyResult",
    "InsertResult",
    "RecordStatus",
    "RecordView",
    "Sample",
    "SampleResult",
    "SampleUse",
    "Threshold",
    "UpdateOutcome",
    "UpdateResult",
    "VerifyResult",
]


class EnrollOutcome(StrEnum):
    ENROLLED = "enrolled"
    PENDING_ADJUDICATION = "pending_adjudication"


class AdjudicationDecision(StrEnum):
    SAME = "same"  # the pending record is the same person as a candidate: it is not enrolled
    DISTINCT = "distinct"  # a different person: the pending record is enrolled (becomes active)


@dataclass(frozen=True)
class Sample:
    """One biometric sample: an encoded image (JPEG/PNG/...) or a precomputed template, not both."""

    modality: Modality
    image: bytes | None = None
    template: Template | None = None

    def __post_init__(self) -> None:
        if (self.image is None) == (self.template is None):
            raise InvalidInput(
                f"sample for {self.modality.value} must carry exactly one of image or template",
                reason="INVALID_SAMPLE",
            )
        if self.template is not None and self.template.modality_kind != self.modality.kind:
            raise InvalidInput(
                f"a {self.template.modality_kind} template cannot fill the {self.modality.value} slot",
                reason="WRONG_MODALITY",
            )


class SampleUse(StrEnum):
    """What the engine did with one input sample when a modality came with several
    (``engine.multisample``)."""

    USED = "used"  # in the modality's template: the only sample, the best one, or fused with the others
    NOT_SELECTED = "not_selected"  # accepted, but another sample of better quality was used instead
    REFUSED = "refused"  # dropped: refused by the quality gate or nothing found (quality says why)


@dataclass(frozen=True)
class SampleResult:
    """What became of one input sample (quality is None for precomputed templates). A ``REFUSED``
    sample (only ever returned when another sample of its modality was usable) has ``details``
    ``error_reason`` (QUALITY_CHECK_FAILED, NO_BIOMETRIC_FOUND) and its quality's reasons and
    instructions say what to change."""

    modality: Modality
    model: ModelRef
    quality: Quality | None
    details: dict[str, Any] = field(default_factory=dict)
    use: SampleUse = SampleUse.USED


@dataclass(frozen=True)
class Threshold:
    """The decision rule used: candidates need ``fused >= fused_threshold``. ``target_fpir`` and
    ``gallery_size`` are what it was derived from (for verify, ``target_fpir`` is the target FMR,
    ``expected_fpir`` the expected FMR, and ``gallery_size`` is 1)."""

    target_fpir: float
    gallery_size: int
    fused_threshold: float
    # False when the target cannot be met at this gallery size: even identical samples are too common
    # among impostors for it, so ``fused_threshold`` is the fused LLR of identical samples (the
    # strictest threshold anything can pass) and ``expected_fpir`` is above the target.
    target_met: bool = True
    expected_fpir: float | None = None  # what ``fused_threshold`` gives by the calibration (None: unknown)


@dataclass(frozen=True)
class Candidate:
    reference_id: str
    fused: float
    scores: dict[Modality, float]
    llrs: dict[Modality, float]
    partition: str = ""


@dataclass(frozen=True)
class IdentifyResult:
    candidates: list[Candidate]
    threshold: Threshold
    samples: list[SampleResult]


@dataclass(frozen=True)
class InsertResult:
    reference_id: str
    samples: list[SampleResult]


@dataclass(frozen=True)
class EnrollResult:
    reference_id: str
    outcome: EnrollOutcome
    candidates: list[Candidate]
    threshold: Threshold
    samples: list[SampleResult]


@dataclass(frozen=True)
class VerifyResult:
    reference_id: str
    match: bool
    fused: float
    scores: dict[Modality, float]
    llrs: dict[Modality, float]
    threshold: Threshold
    samples: list[SampleResult]


class UpdateOutcome(StrEnum):
    UPDATED = "updated"  # verified 1:1, no one else matched 1:N: the new sample is stored
    NOT_VERIFIED = "not_verified"  # the 1:1 check failed: nothing changed
    POSSIBLE_DUPLICATE = "possible_duplicate"  # the new sample matches someone else: nothing changed


@dataclass(frozen=True)
class UpdateResult:
    """A re-capture (``Engine.update_biometrics``): the 1:1 check, then the 1:N candidates of the new
    sample (``threshold`` is the 1:N one once the check passed)."""

    reference_id: str
    outcome: UpdateOutcome
    verification: VerifyResult
    candidates: list[Candidate]
    threshold: Threshold
    samples: list[SampleResult]


@dataclass(frozen=True)
class RecordView:
    """A record without its biometrics (templates never leave the engine through this view).
    ``RecordStatus`` is the store's (``engine.store.values``), re-exported here."""

    reference_id: str
    partition: str
    status: RecordStatus
    attributes: dict[str, str]
    models: dict[Modality, ModelRef]
    created: float
    updated: float


@dataclass(frozen=True)
class AdjudicationItem:
    reference_id: str
    partition: str
    candidates: list[Candidate]
    decisions: list[dict[str, Any]]
    created: float


@dataclass(frozen=True)
class GalleryStats:
    """Counts: ``total`` records of any status; ``by_partition`` and ``by_modality`` count ACTIVE
    (searchable) records / templates; ``by_partition_status`` splits every partition by status;
    ``quarantined`` active records are in no index (``Engine.quarantined`` lists them)."""

    total: int
    by_status: dict[str, int]
    by_partition: dict[str, int]
    by_modality: dict[str, int]
    models: dict[str, str]
    by_partition_status: dict[str, dict[str, int]] = field(default_factory=dict)
    pending_cases: int = 0
    quarantined: int = 0  # active records out of every search: a stored template is unreadable
    audit_problem: str = ""  # the audit-chain check at open: what is wrong, by seq ("" = intact)
    last_backup_time: float | None = None  # Unix time of the last good backup (None: never)
    last_backup_age_s: float | None = None
