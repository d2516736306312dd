"""Value objects the store hands out (plain frozen dataclasses; no SQLite types leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.errors import InvalidInput
from engine.types import Modality, Template

__all__ = [
    "AuditReport",
    "CaseEvent",
    "Decision",
    "PendingCase",
    "Quarantined",
    "Record",
    "RecordStatus",
    "TokenInfo",
    "UserInfo",
    "WriteResult",
]


class RecordStatus(StrEnum):
    """Only ``ACTIVE`` records are searchable (present in the indexes)."""

    ACTIVE = "active"
    PENDING = "pending"  # suspected duplicate waiting for adjudication: kept, not searchable
    DELETED = "deleted"  # biometrics erased; the row stays for the audit trail

    @classmethod
    def parse(cls, value: str) -> RecordStatus:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInput(f"unknown record status {value!r}", reason="UNKNOWN_STATUS") from None


@dataclass(frozen=True)
class Quarantined:
    """An ACTIVE record kept out of every index because a stored template of it cannot be read
    (flipped bits, a key the ring lacks, a stored template that fails validation). It stays in the
    store for an admin to restore (from a backup, or by reopening with the missing old key) or to
    erase (delete works on it); every open retries it."""

    label: int
    unreadable: dict[Modality, str]  # modality -> reason code (DECRYPTION_FAILED, UNKNOWN_KEY, ...)
    modalities: tuple[Modality, ...]  # every modality the record holds, readable or not


@dataclass(frozen=True)
class WriteResult:
    """What a committed (acknowledged) write produced: the record's ``ref_id`` and int64 ``label``
    (the id used by every index), and the change-log sequence number of the write."""

    ref_id: str
    label: int
    seq: int


@dataclass(frozen=True)
class Record:
    """A subject. ``templates`` is empty for deleted records and when not requested."""

    ref_id: str
    label: int
    partition: str
    status: RecordStatus
    attributes: dict[str, Any]
    created: float  # unix seconds (UTC)
    updated: float
    templates: dict[Modality, Template] = field(default_factory=dict)
    modalities: tuple[Modality, ...] = ()  # modalities that hold a template (known without decrypting)


@dataclass(frozen=True)
class Decision:
    """One adjudicator's verdict on a pending record: ``decision`` is ``"same"`` or ``"distinct"``."""

    actor: str
    decision: str
    comment: str
    time: float
    mate: str = ""  # for "same": the reference id the record duplicates


@dataclass(frozen=True)
class CaseEvent:
    """One step of a record's adjudication history: ``kind`` is "opened", "reopened" (``comment`` is
    the reason) or "decided" (``decision`` "same"/"distinct", ``mate`` for "same")."""

    kind: str
    time: float
    actor: str
    decision: str = ""
    mate: str = ""
    comment: str = ""


@dataclass(frozen=True)
class PendingCase:
    """A record waiting for adjudication with the candidates that made it suspicious (as given by the
    engine: JSON-compatible dicts, e.g. ``{"ref_id", "score", "scores": {modality: similarity}}``)."""

    ref_id: str
    label: int
    partition: str
    created: float
    candidates: list[dict[str, Any]]
    decisions: list[Decision]
    outcome: str | None  # None while open; "same" / "distinct" once resolved


@dataclass(frozen=True)
class TokenInfo:
    """An API token's public facts (the secret is never stored, only its hash)."""

    token_id: str
    name: str
    role: str
    created: float
    last_used: float | None
    revoked: float | None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True)
class AuditReport:
    """Result of checking the keyed audit chain (``engine.store.audit.verify``).

    ``first_bad_seq``: the first row whose stored MAC does not match its content and predecessor
    (None when intact), with ``problem`` saying how in words (edited row, rows missing before it);
    ``missing_tail``: ``(last seq present, seq that existed)`` when the newest rows were removed
    (known from an anchor or SQLite's sequence counter). ``rows`` checked; ``keyed_from``: the first
    keyed seq (older rows: plain SHA-256 of an older nasname, pinned by the keyed row after them);
    ``anchor_seq``: the anchor compared with, if any; ``last_seq``: the newest row present."""

    rows: int
    first_bad_seq: int | None
    problem: str = ""
    missing_tail: tuple[int, int] | None = None
    keyed_from: int | None = None
    anchor_seq: int | None = None
    last_seq: int = 0
    unverified_rows: int = 0  # keyed with a data key no longer in the ring: chained, MAC not checkable

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None and self.missing_tail is None

    def describe(self) -> str:
        """One sentence for logs and check output (no personal data: seqs only)."""
        if self.ok:
            return f"audit chain intact ({self.rows} rows checked, last seq {self.last_seq})"
        parts = []
        if self.first_bad_seq is not None:
            parts.append(f"first bad row seq {self.first_bad_seq}: {self.problem}")
        if self.missing_tail is not None:
            parts.append(f"rows {self.missing_tail[0] + 1}..{self.missing_tail[1]} are missing at the end "
                         "(deleted tail, or a database restored from an older backup under newer snapshots)")
        return "audit chain TAMPERED: " + "; ".join(parts)


@dataclass(frozen=True)
class UserInfo:
    """A console account's public facts (the password hash never leaves ``engine.store.users``).
    ``user_id`` is what the audit log records as the actor."""

    user_id: str
    username: str
    role: str
    created: float
    password_set: float
    last_login: float | None
    disabled: float | None

    @property
    def active(self) -> bool:
        return self.disabled is None
