"""Migrations, the audit hash chain, API tokens, the adjudication queue."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from engine.crypto import KeyRing
from engine.errors import ConfigurationError, Conflict, InvalidInput, NotFound
from engine.store import RecordStatus, Store
from engine.store.schema import SCHEMA_VERSION, migrate, schema_version
from engine.types import Modality
from tests.unit.store.conftest import face


def test_version_1_file_migrates_and_keeps_its_records(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == 0
    conn.execute("INSERT INTO records (ref_id, partition, status, created, updated) "
                 "VALUES ('OLD-1', 'p', 'active', 0, 0)")
    conn.close()
    store = Store(path, keyring)
    with store.db.read() as c:
        assert schema_version(c) == SCHEMA_VERSION
    assert store.get("OLD-1", with_templates=False).partition == "p"
    store.create_token("ops", "admin")  # a version-2 table works
    store.close()
    again = Store(path, keyring)  # reopening an up-to-date file changes nothing
    assert again.count() == 1
    again.close()


def test_newer_schema_is_refused(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "new.db"
    Store(path, keyring).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(ConfigurationError):
        Store(path, keyring)


def test_audit_chain_records_operations_and_detects_edits(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    store = Store(path, keyring)
    store.insert({Modality.FACE: face(1)}, ref_id="A", actor="tok_1")
    store.insert({Modality.FACE: face(2)}, ref_id="B", actor="tok_1")
    store.delete("A", actor="tok_2")
    actions = [(e["action"], e["ref_id"], e["actor"]) for e in store.audit_entries()]
    assert ("insert", "A", "tok_1") in actions and actions[-1] == ("delete", "A", "tok_2")
    report = store.verify_audit()
    assert report.ok and report.rows == len(actions)
    with pytest.raises(Exception, match="append-only"), store.db.write() as conn:
        conn.execute("UPDATE audit SET actor = 'someone' WHERE seq = 2")
    store.close()
    # an attacker with the file drops the guard and edits a row: the chain shows where
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    target = conn.execute("SELECT seq FROM audit WHERE action = 'delete'").fetchone()[0]
    conn.execute("UPDATE audit SET actor = 'nobody' WHERE seq = ?", (target,))
    conn.close()
    store = Store(path, keyring)
    assert store.verify_audit().first_bad_seq == target
    store.close()


def test_audit_detects_a_removed_middle_row(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    store = Store(path, keyring)
    for i in range(4):
        store.insert({Modality.FACE: face(i)}, ref_id=f"R-{i}")
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_delete")
    seqs = [r[0] for r in conn.execute("SELECT seq FROM audit ORDER BY seq")]
    conn.execute("DELETE FROM audit WHERE seq = ?", (seqs[2],))
    conn.close()
    store = Store(path, keyring)
    assert store.verify_audit().first_bad_seq == seqs[3]
    store.close()


def test_tokens(store: Store) -> None:
    token_id, secret = store.create_token("station 1", "enroller")
    other_id, other_secret = store.create_token("ops", "admin")
    info = store.authenticate(secret)
    assert info is not None and (info.token_id, info.role, info.name) == (token_id, "enroller", "station 1")
    assert store.authenticate(secret + "x") is None and store.authenticate("") is None
    assert store.authenticate("nsk_" + "A" * 43) is None
    listed = {t.token_id: t for t in store.list_tokens()}
    assert set(listed) == {token_id, other_id} and listed[token_id].last_used is not None
    with store.db.read() as conn:  # only hashes are stored
        dump = "\n".join(conn.iterdump())
    assert secret not in dump and secret[4:20] not in dump
    store.revoke_token(token_id)
    assert store.authenticate(secret) is None
    assert store.authenticate(other_secret) is not None
    with pytest.raises(NotFound):
        store.revoke_token(token_id)
    with pytest.raises(InvalidInput):
        store.create_token("x", "Bad Role")
    revoked = {t.token_id: t for t in store.list_tokens()}[token_id]
    assert not revoked.active and revoked.revoked is not None and revoked.revoked <= time.time()


def test_adjudication_distinct_activates_same_erases(store: Store) -> None:
    store.insert({Modality.FACE: face(1)}, ref_id="MATE")
    cands = [{"ref_id": "MATE", "fused": 12.5, "scores": {"face": 0.91}}]
    p1 = store.insert({Modality.FACE: face(2)}, ref_id="P1", status=RecordStatus.PENDING, candidates=cands)
    store.insert({Modality.FACE: face(3)}, ref_id="P2", status=RecordStatus.PENDING, candidates=cands,
                 partition="other")
    with pytest.raises(InvalidInput):  # candidates belong to pending records only
        store.insert({Modality.FACE: face(4)}, ref_id="X", candidates=cands)
    assert [c.ref_id for c in store.pending()] == ["P1", "P2"]
    assert [c.ref_id for c in store.pending(partition="other")] == ["P2"]
    assert store.pending()[0].candidates == cands
    assert store.decide("P1", "distinct", actor="op1", comment="twins", final=False) is None
    w = store.decide("P1", "distinct", actor="op2")
    assert w is not None and w.label == p1.label
    assert store.get("P1", with_templates=False).status is RecordStatus.ACTIVE
    case = store.case("P1")
    assert case is not None and case.outcome == "distinct"
    assert [(d.actor, d.decision, d.comment) for d in case.decisions] == [
        ("op1", "distinct", "twins"), ("op2", "distinct", "")]
    with pytest.raises(Conflict):
        store.decide("P1", "same", actor="op3")
    store.decide("P2", "same", actor="op1")
    rec = store.get("P2")
    assert rec.status is RecordStatus.DELETED and rec.templates == {}
    assert store.pending() == [] and store.stats()["pending_cases"] == 0
    with pytest.raises(InvalidInput):
        store.decide("MATE", "maybe", actor="op1")
    with pytest.raises(NotFound):
        store.decide("P2", "same", actor="op1")
    assert store.verify_audit().ok
