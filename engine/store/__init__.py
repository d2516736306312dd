"""The durable store of record (SQLite, WAL): records, encrypted templates, change log, adjudication
queue, audit log, API tokens and console users. ``Store`` is the entry point; see ``engine.store.store``."""

from engine.store.store import NewRecord, RecordState, Store
from engine.store.values import (
    AuditReport,
    Decision,
    PendingCase,
    Quarantined,
    Record,
    RecordStatus,
    TokenInfo,
    UserInfo,
    WriteResult,
)

__all__ = [
    "AuditReport",
    "Decision",
    "NewRecord",
    "PendingCase",
    "Quarantined",
    "Record",
    "RecordState",
    "RecordStatus",
    "Store",
    "TokenInfo",
    "UserInfo",
    "WriteResult",
]
