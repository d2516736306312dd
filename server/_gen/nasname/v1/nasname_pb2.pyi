from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    MODALITY_FACE: _ClassVar[Modality]
    MODALITY_IRIS_LEFT: _ClassVar[Modality]
    MODALITY_IRIS_RIGHT: _ClassVar[Modality]

class SampleUse(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLE_USE_UNSPECIFIED: _ClassVar[SampleUse]
    SAMPLE_USE_USED: _ClassVar[SampleUse]
    SAMPLE_USE_NOT_SELECTED: _ClassVar[SampleUse]
    SAMPLE_USE_REFUSED: _ClassVar[SampleUse]

class RecordStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_STATUS_UNSPECIFIED: _ClassVar[RecordStatus]
    RECORD_STATUS_ACTIVE: _ClassVar[RecordStatus]
    RECORD_STATUS_PENDING: _ClassVar[RecordStatus]
    RECORD_STATUS_DELETED: _ClassVar[RecordStatus]

class EnrollOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLL_OUTCOME_UNSPECIFIED: _ClassVar[EnrollOutcome]
    ENROLL_OUTCOME_ENROLLED: _ClassVar[EnrollOutcome]
    ENROLL_OUTCOME_PENDING_ADJUDICATION: _ClassVar[EnrollOutcome]

class AdjudicationDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADJUDICATION_DECISION_UNSPECIFIED: _ClassVar[AdjudicationDecision]
    ADJUDICATION_DECISION_SAME: _ClassVar[AdjudicationDecision]
    ADJUDICATION_DECISION_DISTINCT: _ClassVar[AdjudicationDecision]

class DedupMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEDUP_MODE_UNSPECIFIED: _ClassVar[DedupMode]
    DEDUP_MODE_EXACT: _ClassVar[DedupMode]
    DEDUP_MODE_FAST: _ClassVar[DedupMode]

class ReportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_FORMAT_UNSPECIFIED: _ClassVar[ReportFormat]
    REPORT_FORMAT_JSON: _ClassVar[ReportFormat]
    REPORT_FORMAT_CSV: _ClassVar[ReportFormat]
    REPORT_FORMAT_PAIRS_CSV: _ClassVar[ReportFormat]
    REPORT_FORMAT_HTML: _ClassVar[ReportFormat]

class UpdateOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_OUTCOME_UNSPECIFIED: _ClassVar[UpdateOutcome]
    UPDATE_OUTCOME_UPDATED: _ClassVar[UpdateOutcome]
    UPDATE_OUTCOME_NOT_VERIFIED: _ClassVar[UpdateOutcome]
    UPDATE_OUTCOME_POSSIBLE_DUPLICATE: _ClassVar[UpdateOutcome]
MODALITY_UNSPECIFIED: Modality
MODALITY_FACE: Modality
MODALITY_IRIS_LEFT: Modality
MODALITY_IRIS_RIGHT: Modality
SAMPLE_USE_UNSPECIFIED: SampleUse
SAMPLE_USE_USED: SampleUse
SAMPLE_USE_NOT_SELECTED: SampleUse
SAMPLE_USE_REFUSED: SampleUse
RECORD_STATUS_UNSPECIFIED: RecordStatus
RECORD_STATUS_ACTIVE: RecordStatus
RECORD_STATUS_PENDING: RecordStatus
RECORD_STATUS_DELETED: RecordStatus
ENROLL_OUTCOME_UNSPECIFIED: EnrollOutcome
ENROLL_OUTCOME_ENROLLED: EnrollOutcome
ENROLL_OUTCOME_PENDING_ADJUDICATION: EnrollOutcome
ADJUDICATION_DECISION_UNSPECIFIED: AdjudicationDecision
ADJUDICATION_DECISION_SAME: AdjudicationDecision
ADJUDICATION_DECISION_DISTINCT: AdjudicationDecision
DEDUP_MODE_UNSPECIFIED: DedupMode
DEDUP_MODE_EXACT: DedupMode
DEDUP_MODE_FAST: DedupMode
REPORT_FORMAT_UNSPECIFIED: ReportFormat
REPORT_FORMAT_JSON: ReportFormat
REPORT_FORMAT_CSV: ReportFormat
REPORT_FORMAT_PAIRS_CSV: ReportFormat
REPORT_FORMAT_HTML: ReportFormat
UPDATE_OUTCOME_UNSPECIFIED: UpdateOutcome
UPDATE_OUTCOME_UPDATED: UpdateOutcome
UPDATE_OUTCOME_NOT_VERIFIED: UpdateOutcome
UPDATE_OUTCOME_POSSIBLE_DUPLICATE: UpdateOutcome

class ModelRef(_message.Message):
    __slots__ = ("model_id", "version")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: str
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class FaceTemplate(_message.Message):
    __slots__ = ("vector",)
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    vector: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, vector: _Optional[_Iterable[float]] = ...) -> None: ...

class IrisTemplate(_message.Message):
    __slots__ = ("code", "mask", "columns")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    code: bytes
    mask: bytes
    columns: int
    def __init__(self, code: _Optional[bytes] = ..., mask: _Optional[bytes] = ..., columns: _Optional[int] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("model", "face", "iris")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    IRIS_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    face: FaceTemplate
    iris: IrisTemplate
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., face: _Optional[_Union[FaceTemplate, _Mapping]] = ..., iris: _Optional[_Union[IrisTemplate, _Mapping]] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("modality", "image", "template")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    image: bytes
    template: Template
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., image: _Optional[bytes] = ..., template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class Quality(_message.Message):
    __slots__ = ("score", "ok", "reasons", "measures", "instructions")
    class MeasuresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCORE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MEASURES_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    score: float
    ok: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    measures: _containers.ScalarMap[str, float]
    instructions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, score: _Optional[float] = ..., ok: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., measures: _Optional[_Mapping[str, float]] = ..., instructions: _Optional[_Iterable[str]] = ...) -> None: ...

class SampleResult(_message.Message):
    __slots__ = ("modality", "model", "quality", "use", "error_reason")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    model: ModelRef
    quality: Quality
    use: SampleUse
    error_reason: str
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., quality: _Optional[_Union[Quality, _Mapping]] = ..., use: _Optional[_Union[SampleUse, str]] = ..., error_reason: _Optional[str] = ...) -> None: ...

class Threshold(_message.Message):
    __slots__ = ("target_fpir", "gallery_size", "fused_threshold", "target_not_met", "expected_fpir")
    TARGET_FPIR_FIELD_NUMBER: _ClassVar[int]
    GALLERY_SIZE_FIELD_NUMBER: _ClassVar[int]
    FUSED_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TARGET_NOT_MET_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FPIR_FIELD_NUMBER: _ClassVar[int]
    target_fpir: float
    gallery_size: int
    fused_threshold: float
    target_not_met: bool
    expected_fpir: float
    def __init__(self, target_fpir: _Optional[float] = ..., gallery_size: _Optional[int] = ..., fused_threshold: _Optional[float] = ..., target_not_met: _Optional[bool] = ..., expected_fpir: _Optional[float] = ...) -> None: ...

class ModalityScore(_message.Message):
    __slots__ = ("modality", "similarity", "llr")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    LLR_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    similarity: float
    llr: float
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., similarity: _Optional[float] = ..., llr: _Optional[float] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("reference_id", "partition", "fused", "scores")
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    FUSED_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    reference_id: str
    partition: str
    fused: float
    scores: _containers.RepeatedCompositeFieldContainer[ModalityScore]
    def __init__(self, reference_id: _Optional[str] = ..., partition: _Optional[str] = ..., fused: _Optional[float] = ..., scores: _Optional[_Iterable[_Union[ModalityScore, _Mapping]]] = ...) -> None: ...

class ModalityModel(_message.Message):
    __slots__ = ("modality", "model")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    model: ModelRef
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("reference_id", "partition", "status", "attributes", "models", "created", "updated")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    reference_id: str
    partition: str
    status: RecordStatus
    attributes: _containers.ScalarMap[str, str]
    models: _containers.RepeatedCompositeFieldContainer[ModalityModel]
    created: float
    updated: float
    def __init__(self, reference_id: _Optional[str] = ..., partition: _Optional[str] = ..., status: _Optional[_Union[RecordStatus, str]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., models: _Optional[_Iterable[_Union[ModalityModel, _Mapping]]] = ..., created: _Optional[float] = ..., updated: _Optional[float] = ...) -> None: ...

class InsertRequest(_message.Message):
    __slots__ = ("request_id", "reference_id", "samples", "partition", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    partition: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., partition: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class InsertResponse(_message.Message):
    __slots__ = ("request_id", "reference_id", "samples")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    samples: _containers.RepeatedCompositeFieldContainer[SampleResult]
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[SampleResult, _Mapping]]] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("request_id", "reference_id", "samples", "partition", "attributes", "target_fpir", "search_partition")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TARGET_FPIR_FIELD_NUMBER: _ClassVar[int]
    SEARCH_PARTITION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    partition: str
    attributes: _containers.ScalarMap[str, str]
    target_fpir: float
    search_partition: str
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., partition: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., target_fpir: _Optional[float] = ..., search_partition: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("request_id", "reference_id", "outcome", "candidates", "threshold", "samples")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    outcome: EnrollOutcome
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    threshold: Threshold
    samples: _containers.RepeatedCompositeFieldContainer[SampleResult]
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., outcome: _Optional[_Union[EnrollOutcome, str]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., threshold: _Optional[_Union[Threshold, _Mapping]] = ..., samples: _Optional[_Iterable[_Union[SampleResult, _Mapping]]] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("request_id", "samples", "reference_id", "max_results", "target_fpir", "partition", "reference_ids")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FPIR_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    reference_id: str
    max_results: int
    target_fpir: float
    partition: str
    reference_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., reference_id: _Optional[str] = ..., max_results: _Optional[int] = ..., target_fpir: _Optional[float] = ..., partition: _Optional[str] = ..., reference_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("request_id", "candidates", "threshold", "samples")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    threshold: Threshold
    samples: _containers.RepeatedCompositeFieldContainer[SampleResult]
    def __init__(self, request_id: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., threshold: _Optional[_Union[Threshold, _Mapping]] = ..., samples: _Optional[_Iterable[_Union[SampleResult, _Mapping]]] = ...) -> None: ...

class BatchIdentifyResponse(_message.Message):
    __slots__ = ("request_id", "result", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    result: IdentifyResponse
    error: _status_pb2.Status
    def __init__(self, request_id: _Optional[str] = ..., result: _Optional[_Union[IdentifyResponse, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("request_id", "reference_id", "samples", "target_fmr")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TARGET_FMR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    target_fmr: float
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., target_fmr: _Optional[float] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("request_id", "reference_id", "match", "fused", "scores", "threshold", "samples")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    FUSED_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    match: bool
    fused: float
    scores: _containers.RepeatedCompositeFieldContainer[ModalityScore]
    threshold: Threshold
    samples: _containers.RepeatedCompositeFieldContainer[SampleResult]
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., match: _Optional[bool] = ..., fused: _Optional[float] = ..., scores: _Optional[_Iterable[_Union[ModalityScore, _Mapping]]] = ..., threshold: _Optional[_Union[Threshold, _Mapping]] = ..., samples: _Optional[_Iterable[_Union[SampleResult, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("request_id", "reference_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("request_id", "reference_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ...) -> None: ...

class GetRecordRequest(_message.Message):
    __slots__ = ("request_id", "reference_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ...) -> None: ...

class GetRecordResponse(_message.Message):
    __slots__ = ("request_id", "record", "history")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    record: Record
    history: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, request_id: _Optional[str] = ..., record: _Optional[_Union[Record, _Mapping]] = ..., history: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class DecisionEntry(_message.Message):
    __slots__ = ("actor", "decision", "comment", "time", "mate_reference_id")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MATE_REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    actor: str
    decision: AdjudicationDecision
    comment: str
    time: float
    mate_reference_id: str
    def __init__(self, actor: _Optional[str] = ..., decision: _Optional[_Union[AdjudicationDecision, str]] = ..., comment: _Optional[str] = ..., time: _Optional[float] = ..., mate_reference_id: _Optional[str] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("event", "time", "actor", "decision", "mate_reference_id", "comment")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MATE_REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    event: str
    time: float
    actor: str
    decision: AdjudicationDecision
    mate_reference_id: str
    comment: str
    def __init__(self, event: _Optional[str] = ..., time: _Optional[float] = ..., actor: _Optional[str] = ..., decision: _Optional[_Union[AdjudicationDecision, str]] = ..., mate_reference_id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class PendingAdjudication(_message.Message):
    __slots__ = ("reference_id", "partition", "candidates", "decisions", "created")
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    reference_id: str
    partition: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    decisions: _containers.RepeatedCompositeFieldContainer[DecisionEntry]
    created: float
    def __init__(self, reference_id: _Optional[str] = ..., partition: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., decisions: _Optional[_Iterable[_Union[DecisionEntry, _Mapping]]] = ..., created: _Optional[float] = ...) -> None: ...

class ListPendingAdjudicationsRequest(_message.Message):
    __slots__ = ("request_id", "limit", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    limit: int
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListPendingAdjudicationsResponse(_message.Message):
    __slots__ = ("request_id", "items")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[PendingAdjudication]
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[PendingAdjudication, _Mapping]]] = ...) -> None: ...

class AdjudicateRequest(_message.Message):
    __slots__ = ("request_id", "reference_id", "decision", "comment", "mate_reference_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    MATE_REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    decision: AdjudicationDecision
    comment: str
    mate_reference_id: str
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., decision: _Optional[_Union[AdjudicationDecision, str]] = ..., comment: _Optional[str] = ..., mate_reference_id: _Optional[str] = ...) -> None: ...

class AdjudicateResponse(_message.Message):
    __slots__ = ("request_id", "record", "history")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    record: Record
    history: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, request_id: _Optional[str] = ..., record: _Optional[_Union[Record, _Mapping]] = ..., history: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("request_id", "total", "by_status", "by_partition", "by_modality", "models", "quarantined", "audit_problem", "last_backup_time", "last_backup_age_s")
    class ByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ByPartitionEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ByModalityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ModelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    BY_PARTITION_FIELD_NUMBER: _ClassVar[int]
    BY_MODALITY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    AUDIT_PROBLEM_FIELD_NUMBER: _ClassVar[int]
    LAST_BACKUP_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_BACKUP_AGE_S_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    total: int
    by_status: _containers.ScalarMap[str, int]
    by_partition: _containers.ScalarMap[str, int]
    by_modality: _containers.ScalarMap[str, int]
    models: _containers.ScalarMap[str, str]
    quarantined: int
    audit_problem: str
    last_backup_time: float
    last_backup_age_s: float
    def __init__(self, request_id: _Optional[str] = ..., total: _Optional[int] = ..., by_status: _Optional[_Mapping[str, int]] = ..., by_partition: _Optional[_Mapping[str, int]] = ..., by_modality: _Optional[_Mapping[str, int]] = ..., models: _Optional[_Mapping[str, str]] = ..., quarantined: _Optional[int] = ..., audit_problem: _Optional[str] = ..., last_backup_time: _Optional[float] = ..., last_backup_age_s: _Optional[float] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("token_id", "name", "role", "created", "last_used", "revoked")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    name: str
    role: str
    created: float
    last_used: float
    revoked: float
    def __init__(self, token_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., created: _Optional[float] = ..., last_used: _Optional[float] = ..., revoked: _Optional[float] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("request_id", "name", "role")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    role: str
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("request_id", "token", "secret")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    token: Token
    secret: str
    def __init__(self, request_id: _Optional[str] = ..., token: _Optional[_Union[Token, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("request_id", "tokens")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    def __init__(self, request_id: _Optional[str] = ..., tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("request_id", "token_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    token_id: str
    def __init__(self, request_id: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("request_id", "token_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    token_id: str
    def __init__(self, request_id: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class StartDedupRequest(_message.Message):
    __slots__ = ("request_id", "partition", "target_fpir", "fmr", "mode", "push_to_queue")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FPIR_FIELD_NUMBER: _ClassVar[int]
    FMR_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PUSH_TO_QUEUE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    partition: str
    target_fpir: float
    fmr: float
    mode: DedupMode
    push_to_queue: bool
    def __init__(self, request_id: _Optional[str] = ..., partition: _Optional[str] = ..., target_fpir: _Optional[float] = ..., fmr: _Optional[float] = ..., mode: _Optional[_Union[DedupMode, str]] = ..., push_to_queue: _Optional[bool] = ...) -> None: ...

class StartDedupResponse(_message.Message):
    __slots__ = ("request_id", "job_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job_id: str
    def __init__(self, request_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class DedupJobRequest(_message.Message):
    __slots__ = ("request_id", "job_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job_id: str
    def __init__(self, request_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class DedupProgress(_message.Message):
    __slots__ = ("job_id", "state", "stage", "done", "total", "candidates", "elapsed_s", "eta_s", "message", "queued")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    stage: str
    done: int
    total: int
    candidates: int
    elapsed_s: float
    eta_s: float
    message: str
    queued: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., candidates: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., eta_s: _Optional[float] = ..., message: _Optional[str] = ..., queued: _Optional[int] = ...) -> None: ...

class DedupStatusResponse(_message.Message):
    __slots__ = ("request_id", "progress")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    progress: DedupProgress
    def __init__(self, request_id: _Optional[str] = ..., progress: _Optional[_Union[DedupProgress, _Mapping]] = ...) -> None: ...

class GetDedupResultRequest(_message.Message):
    __slots__ = ("request_id", "job_id", "limit", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job_id: str
    limit: int
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., job_id: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class DedupMember(_message.Message):
    __slots__ = ("reference_id", "partition")
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    reference_id: str
    partition: str
    def __init__(self, reference_id: _Optional[str] = ..., partition: _Optional[str] = ...) -> None: ...

class DedupLink(_message.Message):
    __slots__ = ("reference_id_a", "reference_id_b", "fused", "threshold", "scores", "llrs")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LlrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REFERENCE_ID_A_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_B_FIELD_NUMBER: _ClassVar[int]
    FUSED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    LLRS_FIELD_NUMBER: _ClassVar[int]
    reference_id_a: str
    reference_id_b: str
    fused: float
    threshold: float
    scores: _containers.ScalarMap[str, float]
    llrs: _containers.ScalarMap[str, float]
    def __init__(self, reference_id_a: _Optional[str] = ..., reference_id_b: _Optional[str] = ..., fused: _Optional[float] = ..., threshold: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ..., llrs: _Optional[_Mapping[str, float]] = ...) -> None: ...

class DedupCluster(_message.Message):
    __slots__ = ("cluster", "risk", "chained", "missing_pairs", "members", "pairs", "weakest_link")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    CHAINED_FIELD_NUMBER: _ClassVar[int]
    MISSING_PAIRS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    WEAKEST_LINK_FIELD_NUMBER: _ClassVar[int]
    cluster: int
    risk: float
    chained: bool
    missing_pairs: int
    members: _containers.RepeatedCompositeFieldContainer[DedupMember]
    pairs: _containers.RepeatedCompositeFieldContainer[DedupLink]
    weakest_link: DedupLink
    def __init__(self, cluster: _Optional[int] = ..., risk: _Optional[float] = ..., chained: _Optional[bool] = ..., missing_pairs: _Optional[int] = ..., members: _Optional[_Iterable[_Union[DedupMember, _Mapping]]] = ..., pairs: _Optional[_Iterable[_Union[DedupLink, _Mapping]]] = ..., weakest_link: _Optional[_Union[DedupLink, _Mapping]] = ...) -> None: ...

class GetDedupResultResponse(_message.Message):
    __slots__ = ("request_id", "job_id", "summary_json", "total_clusters", "clusters")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job_id: str
    summary_json: str
    total_clusters: int
    clusters: _containers.RepeatedCompositeFieldContainer[DedupCluster]
    def __init__(self, request_id: _Optional[str] = ..., job_id: _Optional[str] = ..., summary_json: _Optional[str] = ..., total_clusters: _Optional[int] = ..., clusters: _Optional[_Iterable[_Union[DedupCluster, _Mapping]]] = ...) -> None: ...

class FetchDedupReportRequest(_message.Message):
    __slots__ = ("request_id", "job_id", "format")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job_id: str
    format: ReportFormat
    def __init__(self, request_id: _Optional[str] = ..., job_id: _Optional[str] = ..., format: _Optional[_Union[ReportFormat, str]] = ...) -> None: ...

class ReportChunk(_message.Message):
    __slots__ = ("data", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("request_id", "from_date", "to_date", "partition", "min_cell", "details")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    MIN_CELL_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    from_date: str
    to_date: str
    partition: str
    min_cell: int
    details: bool
    def __init__(self, request_id: _Optional[str] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., partition: _Optional[str] = ..., min_cell: _Optional[int] = ..., details: _Optional[bool] = ...) -> None: ...

class ReportFile(_message.Message):
    __slots__ = ("name", "content")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    content: bytes
    def __init__(self, name: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class GetReportResponse(_message.Message):
    __slots__ = ("request_id", "files")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    files: _containers.RepeatedCompositeFieldContainer[ReportFile]
    def __init__(self, request_id: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ReportFile, _Mapping]]] = ...) -> None: ...

class ListRecordsRequest(_message.Message):
    __slots__ = ("request_id", "partition", "status", "created_from", "created_to", "limit", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FROM_FIELD_NUMBER: _ClassVar[int]
    CREATED_TO_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    partition: str
    status: RecordStatus
    created_from: float
    created_to: float
    limit: int
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., partition: _Optional[str] = ..., status: _Optional[_Union[RecordStatus, str]] = ..., created_from: _Optional[float] = ..., created_to: _Optional[float] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListRecordsResponse(_message.Message):
    __slots__ = ("request_id", "records", "total")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    records: _containers.RepeatedCompositeFieldContainer[Record]
    total: int
    def __init__(self, request_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class ReopenCaseRequest(_message.Message):
    __slots__ = ("request_id", "reference_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReopenCaseResponse(_message.Message):
    __slots__ = ("request_id", "record", "history")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    record: Record
    history: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, request_id: _Optional[str] = ..., record: _Optional[_Union[Record, _Mapping]] = ..., history: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class UpdateBiometricsRequest(_message.Message):
    __slots__ = ("request_id", "reference_id", "sample", "verification", "target_fmr", "target_fpir")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FMR_FIELD_NUMBER: _ClassVar[int]
    TARGET_FPIR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    sample: Sample
    verification: _containers.RepeatedCompositeFieldContainer[Sample]
    target_fmr: float
    target_fpir: float
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., sample: _Optional[_Union[Sample, _Mapping]] = ..., verification: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., target_fmr: _Optional[float] = ..., target_fpir: _Optional[float] = ...) -> None: ...

class UpdateBiometricsResponse(_message.Message):
    __slots__ = ("request_id", "reference_id", "outcome", "verification", "candidates", "threshold", "samples")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reference_id: str
    outcome: UpdateOutcome
    verification: VerifyResponse
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    threshold: Threshold
    samples: _containers.RepeatedCompositeFieldContainer[SampleResult]
    def __init__(self, request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., outcome: _Optional[_Union[UpdateOutcome, str]] = ..., verification: _Optional[_Union[VerifyResponse, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., threshold: _Optional[_Union[Threshold, _Mapping]] = ..., samples: _Optional[_Iterable[_Union[SampleResult, _Mapping]]] = ...) -> None: ...

class CreateBackupRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class CreateBackupResponse(_message.Message):
    __slots__ = ("request_id", "file", "bytes", "seconds", "change_seq", "created", "manifest_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHANGE_SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    file: str
    bytes: int
    seconds: float
    change_seq: int
    created: str
    manifest_json: str
    def __init__(self, request_id: _Optional[str] = ..., file: _Optional[str] = ..., bytes: _Optional[int] = ..., seconds: _Optional[float] = ..., change_seq: _Optional[int] = ..., created: _Optional[str] = ..., manifest_json: _Optional[str] = ...) -> None: ...

class CheckIntegrityRequest(_message.Message):
    __slots__ = ("request_id", "full")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    full: bool
    def __init__(self, request_id: _Optional[str] = ..., full: _Optional[bool] = ...) -> None: ...

class CheckIntegrityResponse(_message.Message):
    __slots__ = ("request_id", "ok", "report_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ok: bool
    report_json: str
    def __init__(self, request_id: _Optional[str] = ..., ok: _Optional[bool] = ..., report_json: _Optional[str] = ...) -> None: ...

class RunMaintenanceRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class RunMaintenanceResponse(_message.Message):
    __slots__ = ("request_id", "report_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    report_json: str
    def __init__(self, request_id: _Optional[str] = ..., report_json: _Optional[str] = ...) -> None: ...

class ExportTransferRequest(_message.Message):
    __slots__ = ("request_id", "to_site", "since", "partition", "with_images")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TO_SITE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    WITH_IMAGES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    to_site: str
    since: int
    partition: str
    with_images: bool
    def __init__(self, request_id: _Optional[str] = ..., to_site: _Optional[str] = ..., since: _Optional[int] = ..., partition: _Optional[str] = ..., with_images: _Optional[bool] = ...) -> None: ...

class TransferChunk(_message.Message):
    __slots__ = ("data", "summary_json", "re_extract")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    RE_EXTRACT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    summary_json: str
    re_extract: bool
    def __init__(self, data: _Optional[bytes] = ..., summary_json: _Optional[str] = ..., re_extract: _Optional[bool] = ...) -> None: ...

class ImportTransferResponse(_message.Message):
    __slots__ = ("request_id", "sender", "packet", "summary", "counts_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    PACKET_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    COUNTS_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sender: str
    packet: int
    summary: str
    counts_json: str
    def __init__(self, request_id: _Optional[str] = ..., sender: _Optional[str] = ..., packet: _Optional[int] = ..., summary: _Optional[str] = ..., counts_json: _Optional[str] = ...) -> None: ...

class TransferStatusRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class TransferStatusResponse(_message.Message):
    __slots__ = ("request_id", "status_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    status_json: str
    def __init__(self, request_id: _Optional[str] = ..., status_json: _Optional[str] = ...) -> None: ...

class TrustPeerRequest(_message.Message):
    __slots__ = ("request_id", "public_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    public_json: str
    def __init__(self, request_id: _Optional[str] = ..., public_json: _Optional[str] = ...) -> None: ...

class RevokePeerRequest(_message.Message):
    __slots__ = ("request_id", "site_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    site_id: str
    def __init__(self, request_id: _Optional[str] = ..., site_id: _Optional[str] = ...) -> None: ...

class PeerResponse(_message.Message):
    __slots__ = ("request_id", "peer_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    peer_json: str
    def __init__(self, request_id: _Optional[str] = ..., peer_json: _Optional[str] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ListPeersResponse(_message.Message):
    __slots__ = ("request_id", "peers_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PEERS_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    peers_json: str
    def __init__(self, request_id: _Optional[str] = ..., peers_json: _Optional[str] = ...) -> None: ...
