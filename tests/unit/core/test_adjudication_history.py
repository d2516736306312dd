"""Traceable adjudication (history with mate, actor, reason, time; reopen), records listing, and
re-capture (1:1 first, then 1:N, each step audited) on a real gallery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.crypto import KeyRing
from engine.engine import Engine
from engine.errors import Conflict, InvalidInput
from engine.records import AdjudicationDecision, RecordStatus, UpdateOutcome
from engine.store.schema import _V6_ADJUDICATION_HISTORY, MIGRATIONS, migrate
from engine.store.store import Store
from engine.types import Modality
from tests.unit.core.conftest import MODEL, face, mate


def test_same_needs_the_mate_and_history_shows_who_decided_what(
        engine: Engine, people: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(40)
    engine.enroll("N1", face(mate(people["P010"], rng)), actor="station-1")
    with pytest.raises(InvalidInput) as no_mate:
        engine.adjudicate("N1", AdjudicationDecision.SAME, actor="adj-1")
    assert no_mate.value.reason == "MISSING_MATE"
    engine.adjudicate("N1", AdjudicationDecision.SAME, actor="adj-1", comment="same scar",
                      mate_reference_id="P010")
    [opened, decided] = engine.history("N1")
    assert (opened.kind, opened.actor) == ("opened", "station-1")
    assert (decided.kind, decided.decision, decided.mate, decided.actor, decided.comment) == (
        "decided", "same", "P010", "adj-1", "same scar")
    assert decided.time >= opened.time > 0
    assert engine.history("P011") == []  # never adjudicated


def test_admin_reopens_a_distinct_decision_with_a_reason(engine: Engine,
                                                         people: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(41)
    engine.enroll("N2", face(mate(people["P020"], rng)))
    engine.adjudicate("N2", AdjudicationDecision.DISTINCT, actor="adj-1", comment="twins")
    assert engine.get("N2").status is RecordStatus.ACTIVE
    with pytest.raises(InvalidInput):
        engine.reopen("N2", actor="admin-1", reason=" ")
    view = engine.reopen("N2", actor="admin-1", reason="complaint: twins claim was false")
    assert view.status is RecordStatus.PENDING and "N2" in [p.reference_id for p in engine.list_pending()]
    assert "N2" not in [c.reference_id for c in engine.identify(face(people["P020"])).candidates]
    kinds = [(e.kind, e.actor, e.comment) for e in engine.history("N2")]
    assert kinds[-1] == ("reopened", "admin-1", "complaint: twins claim was false")
    with pytest.raises(Conflict) as open_again:
        engine.reopen("N2", actor="admin-1", reason="again")
    assert open_again.value.reason == "CASE_OPEN"
    engine.adjudicate("N2", AdjudicationDecision.SAME, actor="adj-2", mate_reference_id="P020")
    with pytest.raises(Conflict) as erased:
        engine.reopen("N2", actor="admin-1", reason="mistake")
    assert erased.value.reason == "BIOMETRICS_ERASED"
    assert [e.kind for e in engine.history("N2")] == ["opened", "decided", "reopened", "decided"]


def test_list_records_pages_and_filters(engine: Engine, people: dict[str, np.ndarray]) -> None:
    page, total = engine.list_records(partition="camp-a", limit=10)
    assert total == 100 and len(page) == 10 and all(r.partition == "camp-a" for r in page)
    assert page[0].models == {Modality.FACE: MODEL}
    second, _ = engine.list_records(partition="camp-a", limit=10, offset=10)
    assert not {r.reference_id for r in page} & {r.reference_id for r in second}
    engine.delete("P001")
    deleted, n = engine.list_records(status=RecordStatus.DELETED)
    assert n == 1 and deleted[0].reference_id == "P001" and deleted[0].models == {}
    assert engine.list_records(created_from=page[0].created + 10_000)[1] == 0
    with pytest.raises(InvalidInput):
        engine.list_records(limit=0)


def test_recapture_verifies_then_deduplicates_then_stores(engine: Engine,
                                                          people: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(42)
    audit_before = len(engine.gallery.store.audit_entries(limit=10_000))
    wrong = engine.update_biometrics("P060", face(people["P061"])[0], actor="station-2")
    assert wrong.outcome is UpdateOutcome.NOT_VERIFIED and not wrong.verification.match
    # Q was inserted (no de-duplication) as a near copy of P062: a new sample of that person passes
    # Q's 1:1 check, then the 1:N search finds P062, so nothing is stored
    engine.insert("Q", face(mate(people["P062"], rng)))
    dup = engine.update_biometrics("Q", face(mate(people["P062"], rng))[0], actor="station-2")
    assert dup.outcome is UpdateOutcome.POSSIBLE_DUPLICATE and dup.verification.match
    assert [c.reference_id for c in dup.candidates] == ["P062"]
    new = mate(people["P060"], rng)
    ok = engine.update_biometrics("P060", face(new)[0], actor="station-2")
    assert ok.outcome is UpdateOutcome.UPDATED and ok.verification.match and ok.candidates == []
    found = engine.identify(face(new)).candidates
    assert found[0].reference_id == "P060" and found[0].scores[Modality.FACE] > 0.99  # the new template
    actions = [e["action"] for e in engine.gallery.store.audit_entries(limit=10_000)[audit_before:]]
    assert actions.count("recapture_refused") == 2 and actions[-1] == "replace_template"


def test_recapture_needs_an_active_record(engine: Engine, people: dict[str, np.ndarray]) -> None:
    engine.enroll("N7", face(mate(people["P072"], np.random.default_rng(43))))  # held: pending
    with pytest.raises(Conflict) as pending:
        engine.update_biometrics("N7", face(people["P072"])[0])
    assert pending.value.reason == "NOT_ACTIVE"


def test_migration_keeps_existing_cases_and_decisions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=MIGRATIONS.index(_V6_ADJUDICATION_HISTORY))  # the schema before it
    conn.execute("INSERT INTO records (id, ref_id, partition, status, created, updated) "
                 "VALUES (1, 'X', 'p', 'active', 1, 2)")
    conn.execute("INSERT INTO adjudication (record_id, candidates, created, outcome, resolved) "
                 "VALUES (1, '[{\"ref_id\": \"Y\"}]', 1, 'distinct', 2)")
    conn.execute("INSERT INTO decisions (record_id, actor, decision, comment, time) "
                 "VALUES (1, 'adj', 'distinct', 'twins', 2)")
    conn.close()
    store = Store(path, KeyRing.generate())
    try:
        assert [(e.kind, e.decision, e.actor, e.comment) for e in store.history("X")] == [
            ("opened", "", "", ""), ("decided", "distinct", "adj", "twins")]
        store.reopen("X", actor="admin", reason="check again")
        case = store.case("X")
        assert case is not None and case.outcome is None and case.candidates == [{"ref_id": "Y"}]
    finally:
        store.close()
