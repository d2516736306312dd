"""Issue 18, item 9: the gallery checks the audit chain at open against the anchor in the snapshot
sidecar and names the tampered seq (loudly in the log, and in stats), and full verification is one call."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from engine.types import Modality
from tests.unit.gallery.conftest import OpenGallery, face

F = Modality.FACE


def _tamper(directory: Path, sql: str) -> None:
    conn = sqlite3.connect(directory / "nasname.db", isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    conn.execute(sql)
    conn.execute("UPDATE sqlite_sequence SET seq = (SELECT MAX(seq) FROM audit) WHERE name = 'audit'")
    conn.close()


def _fill(open_gallery: OpenGallery, directory: Path) -> int:
    g = open_gallery(directory=directory)
    for i in range(6):
        g.insert({F: face(i)}, ref_id=f"R{i}")
    head = g.store.audit_head()
    assert head is not None and g.stats()["audit_ok"]
    g.close()  # the snapshot written at close anchors the head
    return head.seq


def test_an_edited_row_after_the_anchor_is_named_at_open(tmp_path: Path, open_gallery: OpenGallery,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "g"
    anchored = _fill(open_gallery, directory)
    g = open_gallery(directory=directory)
    g.insert({F: face(9)}, ref_id="AFTER")
    g.close()  # anchor now at the newest row; add rows after it without a snapshot
    _tamper(directory, f"UPDATE audit SET actor = 'forged' WHERE seq = {anchored + 1}")
    with caplog.at_level(logging.INFO):
        g = open_gallery(directory=directory)
    assert "audit chain TAMPERED: first bad row seq" in caplog.text
    stats = g.stats()
    assert not stats["audit_ok"] and f"seq {anchored + 1}" in stats["audit_problem"]
    assert g.verify_audit().first_bad_seq == anchored + 1
    assert g.count() == 7  # still serving


def test_a_deleted_tail_is_named_at_open(tmp_path: Path, open_gallery: OpenGallery,
                                         caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "g"
    anchored = _fill(open_gallery, directory)
    _tamper(directory, f"DELETE FROM audit WHERE seq > {anchored - 2}")
    with caplog.at_level(logging.INFO):
        g = open_gallery(directory=directory)
    assert "audit chain TAMPERED" in caplog.text and f"seq {anchored}" in caplog.text
    report = g.verify_audit()
    assert report.missing_tail == (anchored - 2, anchored)
    assert f"rows {anchored - 1}..{anchored} are missing at the end" in report.describe()


def test_an_intact_chain_is_checked_quickly_from_the_anchor(tmp_path: Path, open_gallery: OpenGallery,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "g"
    anchored = _fill(open_gallery, directory)
    with caplog.at_level(logging.INFO):
        g = open_gallery(directory=directory)
    expected = f"audit chain intact (1 rows checked, last seq {anchored}) from anchor seq {anchored}"
    assert expected in caplog.text
    assert g.stats()["audit_ok"] and g.verify_audit().ok and g.verify_audit().rows == anchored
