"""Read-only queries behind reports and data-quality checks (the SQL lives with the store).

Each function takes a read connection (``Store.db.read()``) and returns plain rows; nothing here
decrypts a template (``identical_templates`` takes the store's ``scan`` for that).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "adjudication_cases",
    "decisions",
    "growth",
    "identical_templates",
    "missing_modalities",
    "modalities_per_record",
    "records_by_status",
    "templates_below",
    "templates_by_model",
]


def _partition_clause(partition: str | None, alias: str = "r") -> tuple[str, list[Any]]:
    return ("", []) if partition is None else (f" AND {alias}.partition = ?", [partition])


def records_by_status(conn: sqlite3.Connection, partition: str | None) -> dict[str, int]:
    where, args = _partition_clause(partition)
    return {str(s): int(n) for s, n in conn.execute(
        f"SELECT r.status, COUNT(*) FROM records r WHERE 1 = 1{where} GROUP BY r.status", args)}


def modalities_per_record(conn: sqlite3.Connection, partition: str | None) -> dict[int, int]:
    """Active records by how many templates they hold: {1: n, 2: n, 3: n}."""
    where, args = _partition_clause(partition)
    return {int(k): int(n) for k, n in conn.execute(
        "SELECT k, COUNT(*) FROM (SELECT COUNT(t.modality) AS k FROM records r "
        "LEFT JOIN templates t ON t.record_id = r.id "
        f"WHERE r.status = 'active'{where} GROUP BY r.id) GROUP BY k", args)}


def templates_by_model(conn: sqlite3.Connection, partition: str | None) -> list[tuple[str, str, int]]:
    """(modality, model_id@version, active templates)."""
    where, args = _partition_clause(partition)
    return [(str(m), f"{i}@{v}", int(n)) for m, i, v, n in conn.execute(
        "SELECT t.modality, t.model_id, t.model_version, COUNT(*) FROM templates t "
        f"JOIN records r ON r.id = t.record_id WHERE r.status = 'active'{where} "
        "GROUP BY t.modality, t.model_id, t.model_version ORDER BY t.modality", args)]


def growth(conn: sqlite3.Connection, partition: str | None, end: float) -> list[tuple[float, str]]:
    """(created, status) of every record created before ``end``, in time order."""
    where, args = _partition_clause(partition)
    return [(float(c), str(s)) for c, s in conn.execute(
        f"SELECT r.created, r.status FROM records r WHERE r.created < ?{where} ORDER BY r.created",
        [end, *args])]


def adjudication_cases(conn: sqlite3.Connection, partition: str | None) -> list[dict[str, Any]]:
    """Every case: reference id, partition, created, outcome (None while open), resolved time."""
    where, args = _partition_clause(partition)
    return [{"ref_id": str(ref), "partition": str(p), "created": float(c), "outcome": o,
             "resolved": None if res is None else float(res)}
            for ref, p, c, o, res in conn.execute(
                "SELECT r.ref_id, r.partition, a.created, a.outcome, a.resolved FROM adjudication a "
                f"JOIN records r ON r.id = a.record_id WHERE 1 = 1{where} ORDER BY a.created", args)]


def decisions(conn: sqlite3.Connection, partition: str | None, start: float, end: float
              ) -> list[dict[str, Any]]:
    """Decisions taken in [start, end): decision, time, and the case's creation time."""
    where, args = _partition_clause(partition)
    return [{"decision": str(d), "time": float(t), "created": float(c)}
            for d, t, c in conn.execute(
                "SELECT d.decision, d.time, a.created FROM decisions d "
                "JOIN adjudication a ON a.id = d.case_id JOIN records r ON r.id = a.record_id "
                f"WHERE d.time >= ? AND d.time < ?{where} ORDER BY d.time", [start, end, *args])]


def missing_modalities(conn: sqlite3.Connection, expected: Iterable[str], partition: str | None
                       ) -> dict[str, list[str]]:
    """For each expected modality, the active records that have no template of it."""
    where, args = _partition_clause(partition)
    out: dict[str, list[str]] = {}
    for modality in expected:
        out[modality] = [str(r) for (r,) in conn.execute(
            "SELECT r.ref_id FROM records r WHERE r.status = 'active' AND NOT EXISTS "
            "(SELECT 1 FROM templates t WHERE t.record_id = r.id AND t.modality = ?)"
            f"{where} ORDER BY r.id", [modality, *args])]
    return out


def templates_below(conn: sqlite3.Connection, floor: dict[str, float], partition: str | None
                    ) -> list[tuple[str, str, float]]:
    """(ref id, modality, quality) of active templates whose recorded quality is under its floor."""
    where, args = _partition_clause(partition)
    rows = conn.execute(
        "SELECT r.ref_id, t.modality, t.quality FROM templates t JOIN records r ON r.id = t.record_id "
        f"WHERE r.status = 'active' AND t.quality IS NOT NULL{where} ORDER BY r.id", args)
    return [(str(r), str(m), float(q)) for r, m, q in rows if float(q) < floor.get(str(m), 0.0)]


def identical_templates(pages: Iterable[Sequence[Any]],
                        ref_ids_of: Callable[[list[int]], dict[int, str]]) -> list[list[str]]:
    """Groups of reference ids whose templates of one modality are bit-for-bit identical (a data-entry
    error: the same capture filed twice; twins never give identical templates). ``pages``: the
    records with decrypted templates (``Store.pages``; only active ones carry templates)."""
    seen: dict[tuple[str, bytes], list[int]] = {}
    for states in pages:
        for state in states:
            for modality, template in state.templates.items():
                digest = hashlib.sha256(template.to_bytes()).digest()
                seen.setdefault((modality.value, digest), []).append(int(state.label))
    groups = [sorted(set(labels)) for labels in seen.values() if len(set(labels)) > 1]
    names = ref_ids_of(sorted({label for g in groups for label in g}))
    unique = {tuple(names[label] for label in g) for g in groups}
    return [list(g) for g in sorted(unique)]
