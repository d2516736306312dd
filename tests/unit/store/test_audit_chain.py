"""Issue 18, item 9: the audit chain is keyed (an edit with a recomputed plain chain is caught), its head
is anchored outside the database (a deleted tail is caught), checked at open, and older plain chains
are migrated."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from engine.crypto import KeyRing
from engine.errors import IntegrityError
from engine.store import Store
from engine.store.audit import AuditAnchor
from engine.types import Modality
from tests.unit.store.conftest import face

F = Modality.FACE


def _fill(path: Path, keyring: KeyRing, n: int = 6) -> None:
    store = Store(path, keyring)
    for i in range(n):
        store.insert({F: face(i)}, ref_id=f"R{i}", actor="tok_station")
    store.close()


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return conn


def _plain_body(row: tuple) -> bytes:  # type: ignore[type-arg]
    seq, when, actor, action, ref_id, details = row
    return json.dumps([seq, repr(when), actor, action, ref_id, details], separators=(",", ":")).encode()


def _recompute_plain_chain(conn: sqlite3.Connection, up_to: int | None = None) -> None:
    """What an attacker who knows the old plain SHA-256 scheme does after editing rows."""
    prev = bytes(32)
    rows = conn.execute("SELECT seq, time, actor, action, ref_id, details FROM audit ORDER BY seq").fetchall()
    for row in rows:
        if up_to is not None and row[0] > up_to:
            break
        digest = hashlib.sha256(prev + _plain_body(row)).digest()
        conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, row[0]))
        prev = digest


def test_an_edit_with_a_recomputed_plain_chain_is_caught(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    _fill(path, keyring)
    conn = _raw(path)
    target = conn.execute("SELECT seq FROM audit WHERE ref_id = 'R3'").fetchone()[0]
    conn.execute("UPDATE audit SET actor = 'someone else' WHERE seq = ?", (target,))
    _recompute_plain_chain(conn)
    conn.close()
    store = Store(path, keyring)
    try:
        report = store.verify_audit()
        assert report.first_bad_seq == 1 and "edited" in report.problem  # every row was re-hashed
    finally:
        store.close()

    _fill(tmp_path / "b.db", keyring)  # edit one row only: that row is named
    conn = _raw(tmp_path / "b.db")
    conn.execute("UPDATE audit SET details = '{}' WHERE seq = ?", (target,))
    conn.close()
    store = Store(tmp_path / "b.db", keyring)
    try:
        report = store.verify_audit()
        assert (report.first_bad_seq, report.ok) == (target, False)
        assert f"first bad row seq {target}" in report.describe()
    finally:
        store.close()


def test_a_deleted_tail_is_caught_by_the_sequence_counter_and_by_an_anchor(tmp_path: Path,
                                                                          keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    _fill(path, keyring)
    store = Store(path, keyring)
    anchor = store.audit_head()
    assert anchor is not None and anchor.seq == 7  # set_model + 6 inserts
    assert store.verify_audit(anchor).ok and store.verify_audit(anchor, quick=True).ok
    store.close()
    conn = _raw(path)
    conn.execute("DELETE FROM audit WHERE seq > 5")
    conn.close()
    store = Store(path, keyring)
    try:
        report = store.verify_audit()
        assert report.first_bad_seq is None and report.missing_tail == (5, 7)
        assert "rows 6..7 are missing" in report.describe()
    finally:
        store.close()
    conn = _raw(path)  # a careful attacker also resets SQLite's counter: the anchor still tells
    conn.execute("UPDATE sqlite_sequence SET seq = 5 WHERE name = 'audit'")
    conn.close()
    store = Store(path, keyring)
    try:
        assert store.verify_audit().ok  # nothing left inside the file shows it ...
        report = store.verify_audit(anchor)  # ... the anchor kept outside does
        assert report.missing_tail == (5, 7) and not report.ok
        quick = store.verify_audit(anchor, quick=True)
        assert quick.first_bad_seq == 7 and "gone" in quick.problem
    finally:
        store.close()


def test_a_forged_anchor_head_does_not_match(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    _fill(path, keyring)
    store = Store(path, keyring)
    try:
        head = store.audit_head()
        assert head is not None
        report = store.verify_audit(AuditAnchor(head.seq, "00" * 32), quick=True)
        assert report.first_bad_seq == head.seq and "anchored" in report.problem
    finally:
        store.close()


def test_a_plain_chain_of_an_older_nasname_is_keyed_on_open_and_stays_pinned(tmp_path: Path,
                                                                             keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    _fill(path, keyring, 4)
    conn = _raw(path)  # make it what an older nasname wrote: plain SHA-256 rows, no chain state
    conn.execute("DELETE FROM meta WHERE key = 'audit.chain'")
    _recompute_plain_chain(conn)
    conn.close()

    store = Store(path, keyring)
    try:
        entries = store.audit_entries()
        assert entries[-1]["action"] == "audit_chain_keyed"
        assert entries[-1]["details"] == {"legacy_rows": 5, "legacy_first_bad_seq": None}
        report = store.verify_audit()
        assert report.ok and report.keyed_from == 6 and report.rows == 6
        store.insert({F: face(9)}, ref_id="NEW")
        assert store.verify_audit().ok
    finally:
        store.close()

    conn = _raw(path)  # edit a legacy row and recompute the plain chain of the legacy rows
    conn.execute("UPDATE audit SET actor = 'forged' WHERE seq = 2")
    _recompute_plain_chain(conn, up_to=5)
    conn.close()
    store = Store(path, keyring)
    try:
        report = store.verify_audit()
        assert report.first_bad_seq == 6 and "does not follow" in report.problem
    finally:
        store.close()


def test_an_edited_chain_state_refuses_to_open(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    _fill(path, keyring, 2)
    conn = _raw(path)
    state = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'audit.chain'").fetchone()[0])
    state["segments"] = [[99, state["segments"][0][1]]]  # every row "legacy": re-hashable without a key
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit.chain'", (json.dumps(state),))
    conn.close()
    with pytest.raises(IntegrityError) as err:
        Store(path, keyring)
    assert err.value.reason == "AUDIT_TAMPERED"


def test_the_chain_key_is_not_in_the_database_and_others_cannot_append(tmp_path: Path,
                                                                      keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    _fill(path, keyring, 2)
    _, key = keyring.derive("audit")
    dump = (path.read_bytes() + (tmp_path / "nasname.db-wal").read_bytes()
            if (tmp_path / "nasname.db-wal").exists() else path.read_bytes())
    assert key not in dump and key.hex().encode() not in dump
    from engine.store import audit

    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="no such function"):
        audit.append(conn, "intruder", "insert", "X")
    conn.close()

def test_key_rotation_starts_a_segment_and_an_old_key_leaving_the_ring_is_not_tampering(
        tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    path = tmp_path / "nasname.db"
    _fill(path, KeyRing(old), 3)
    store = Store(path, KeyRing(new, [old]))  # rotated: the old key kept for reading
    try:
        assert store.audit_entries()[-1]["action"] == "audit_chain_rekeyed"
        store.insert({F: face(7)}, ref_id="AFTER")
        report = store.verify_audit()
        assert report.ok and report.unverified_rows == 0 and report.keyed_from == 1
    finally:
        store.close()
    store = Store(path, KeyRing(new))  # the old key has left the ring: its rows are chained, uncheckable
    try:
        report = store.verify_audit()
        assert report.ok and report.unverified_rows == 4
    finally:
        store.close()
    conn = _raw(path)  # an edit in the new key's segment is still named
    conn.execute("UPDATE audit SET actor = 'x' WHERE ref_id = 'AFTER'")
    conn.close()
    store = Store(path, KeyRing(new))
    try:
        assert store.verify_audit().first_bad_seq == 6
    finally:
        store.close()


def test_logs_carry_seq_and_mac_only(tmp_path: Path, keyring: KeyRing,
                                     caplog: pytest.LogCaptureFixture) -> None:
    from engine.gallery import Gallery
    from tests.unit.gallery.conftest import QUIET, face_factory, face_loader

    with caplog.at_level(logging.INFO), Gallery(tmp_path / "g", keyring, face_factory, face_loader,
                                                config=QUIET) as g:
        g.insert({F: face(1)}, ref_id="PERSON-1", attributes={"camp": "north"})
        g.snapshot()
        head = g.store.audit_head()
    assert head is not None
    lines = [r.getMessage() for r in caplog.records if "audit chain head" in r.getMessage()]
    assert f"audit chain head seq {head.seq} mac {head.head}" in lines
    assert not any("PERSON-1" in r.getMessage() or "north" in r.getMessage() for r in caplog.records)
