"""Fakes passed to the server through its constructor: an in-memory token store and a scripted engine.

The fake engine answers every operation with a fixed, recognisable result (or raises the error it was
told to), so the server's translation, auth and error mapping can be tested without models or a store.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from engine.errors import NotFound
from engine.records import (
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
    UpdateOutcome,
    UpdateResult,
    VerifyResult,
)
from engine.store.values import CaseEvent, TokenInfo
from engine.types import Modality, ModelRef, Quality, QualityReason

MODEL = ModelRef("fake-face", "1")
THRESHOLD = Threshold(target_fpir=0.003, gallery_size=42, fused_threshold=7.5)
CANDIDATE = Candidate("R-mate", 12.5, {Modality.FACE: 0.81}, {Modality.FACE: 12.5}, "camp-a")


class FakeTokens:
    def __init__(self) -> None:
        self._tokens: dict[str, tuple[TokenInfo, str]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def create_token(self, name: str, role: str, *, actor: str = "system", key: object = None
                     ) -> tuple[str, str]:
        with self._lock:
            n = next(self._ids)
            token_id, secret = f"tok_{n}", f"nsk_secret{n}"
            self._tokens[token_id] = (TokenInfo(token_id, name, role, time.time(), None, None), secret)
            return token_id, secret

    def authenticate(self, secret: str) -> TokenInfo | None:
        for info, s in self._tokens.values():
            if s == secret and info.revoked is None:
                return info
        return None

    def list_tokens(self) -> list[TokenInfo]:
        return [info for info, _ in self._tokens.values()]

    def revoke_token(self, token_id: str, *, actor: str = "system", key: object = None) -> None:
        if token_id not in self._tokens or self._tokens[token_id][0].revoked is not None:
            raise NotFound(f"no active token {token_id}", reason="TOKEN_NOT_FOUND")
        info, s = self._tokens[token_id]
        self._tokens[token_id] = (TokenInfo(info.token_id, info.name, info.role, info.created, None,
                                            time.time()), s)


def _sample_results(samples: Any) -> list[SampleResult]:
    out = []
    for s in samples or ():
        quality = (None if s.template is not None
                   else Quality(0.9, True, (QualityReason.BLURRED,), {"sharp": 3.0}))
        out.append(SampleResult(s.modality, MODEL, quality))
    return out


@dataclass
class FakeEngine:
    """Records each call (method name, args); raises ``fail`` when set."""

    fail: Exception | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    delay: float = 0.0

    fail_times: int = 0  # 0: ``fail`` is raised every time
    threshold: Threshold = THRESHOLD  # what identify reports
    active: int = 0
    max_active: int = 0  # most calls seen inside the engine at once
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, name: str, args: Any) -> None:
        self.calls.append((name, args))
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
        finally:
            with self._lock:
                self.active -= 1
        if self.fail is not None:
            exc = self.fail
            if self.fail_times > 0:  # fail only this many more times, then succeed
                self.fail_times -= 1
                if self.fail_times == 0:
                    self.fail = None
            raise exc

    def insert(self, reference_id: str | None, samples: list[Sample], **kw: Any) -> InsertResult:
        self._enter("insert", (reference_id, samples, kw))
        return InsertResult(reference_id or "R-gen", _sample_results(samples))

    def enroll(self, reference_id: str | None, samples: list[Sample], **kw: Any) -> EnrollResult:
        self._enter("enroll", (reference_id, samples, kw))
        return EnrollResult(reference_id or "R-gen", EnrollOutcome.PENDING_ADJUDICATION, [CANDIDATE],
                            THRESHOLD, _sample_results(samples))

    def identify(self, samples: list[Sample] | None = None, **kw: Any) -> IdentifyResult:
        self._enter("identify", (samples, kw))
        return IdentifyResult([CANDIDATE], self.threshold, _sample_results(samples))

    def verify(self, reference_id: str, samples: list[Sample], **kw: Any) -> VerifyResult:
        self._enter("verify", (reference_id, samples, kw))
        return VerifyResult(reference_id, True, 12.5, {Modality.FACE: 0.81}, {Modality.FACE: 12.5},
                            THRESHOLD, _sample_results(samples))

    def delete(self, reference_id: str, **kw: Any) -> None:
        self._enter("delete", (reference_id, kw))

    def get(self, reference_id: str) -> RecordView:
        self._enter("get", reference_id)
        return RecordView(reference_id, "camp-a", RecordStatus.ACTIVE, {"site": "x"},
                          {Modality.FACE: MODEL}, 1.0, 2.0)

    def stats(self) -> GalleryStats:
        self._enter("stats", None)
        return GalleryStats(3, {"active": 2, "pending": 1}, {"camp-a": 3}, {"face": 3},
                            {"face": str(MODEL)}, quarantined=1,
                            audit_problem="audit chain TAMPERED: first bad row seq 4: row 4 was edited")

    def list_pending(self, **kw: Any) -> list[AdjudicationItem]:
        self._enter("list_pending", kw)
        return [AdjudicationItem("R-p", "camp-a", [CANDIDATE],
                                 [{"actor": "tok_9", "decision": "same", "comment": "c", "time": 5.0}], 3.0)]

    def report_files(self, period: Any, **kw: Any) -> dict[str, bytes]:
        self._enter("report_files", (period, kw))
        return {"report.json": b"{}"}

    def adjudicate(self, reference_id: str, decision: Any, **kw: Any) -> RecordView:
        self._enter("adjudicate", (reference_id, decision, kw))
        return RecordView(reference_id, "camp-a", RecordStatus.ACTIVE, {}, {}, 1.0, 2.0)

    def history(self, reference_id: str) -> list[CaseEvent]:
        self._enter("history", reference_id)
        return [CaseEvent("opened", 3.0, "tok_1"),
                CaseEvent("decided", 5.0, "tok_9", "same", "R-mate", "same scar")]

    def reopen(self, reference_id: str, **kw: Any) -> RecordView:
        self._enter("reopen", (reference_id, kw))
        return RecordView(reference_id, "camp-a", RecordStatus.PENDING, {}, {}, 1.0, 2.0)

    def list_records(self, **kw: Any) -> tuple[list[RecordView], int]:
        self._enter("list_records", kw)
        return [RecordView("R-1", "camp-a", RecordStatus.ACTIVE, {}, {Modality.FACE: MODEL}, 1.0, 2.0)], 7

    def update_biometrics(self, reference_id: str, sample: Sample, **kw: Any) -> UpdateResult:
        self._enter("update_biometrics", (reference_id, sample, kw))
        check = self.verify(reference_id, list(kw.get("verification") or [sample]))
        return UpdateResult(reference_id, UpdateOutcome.UPDATED, check, [], THRESHOLD,
                            _sample_results([sample]))
