"""``nasname check``: a sound gallery passes (exit 0); a flipped byte in the database, in a snapshot or
in a template blob, a deleted audit row and a stray file are each found and named (exit 1); the
service refuses a damaged database with the restore command."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.errors import IntegrityError
from server import cli
from tests.unit.ops.conftest import fill, open_gallery


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "g"
    with open_gallery(root) as g:
        fill(g, 40)
    return root


def _check(root: Path, capsys: pytest.CaptureFixture[str], *extra: str
           ) -> tuple[int, dict[str, dict[str, object]]]:
    code = cli.main(["check", "--data-dir", str(root), "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in report["checks"]}


def _failed(checks: dict[str, dict[str, object]]) -> list[str]:
    return [name for name, c in checks.items() if not c["ok"]]


def test_a_sound_gallery_passes_every_check(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks = _check(root, capsys, "--full")
    assert code == 0 and not _failed(checks)
    assert set(checks) == {"database", "schema", "audit_chain", "templates", "snapshot", "index_vs_store",
                           "orphan_files", "pending_cases"}
    assert cli.main(["check", "--data-dir", str(root)]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_flipped_byte_in_the_database_is_found_and_the_service_refuses(
        root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytearray((root / "nasname.db").read_bytes())
    at = raw.find(b"R17")
    assert at > 0
    raw[at + 2] ^= 0x01  # R17 -> R16 in one b-tree: the table and its unique index disagree
    (root / "nasname.db").write_bytes(bytes(raw))
    code, checks = _check(root, capsys)
    assert code == 1 and _failed(checks) == ["database"]
    assert "missing from index" in str(checks["database"]["problems"])


def test_the_service_refuses_a_damaged_database_with_the_restore_command(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.app import serve

    raw = bytearray((root / "nasname.db").read_bytes())
    page = 4096
    raw[len(raw) - page] = 0x07  # the last page's b-tree type byte: no such page type
    (root / "nasname.db").write_bytes(bytes(raw))
    monkeypatch.delenv("NASNAME_CONFIG", raising=False)
    monkeypatch.setenv("NASNAME_DATA_DIR", str(root))
    with pytest.raises(IntegrityError, match="nasname backup restore ARCHIVE") as err:
        serve(None, address="127.0.0.1:0", allow_plaintext=True)
    assert err.value.reason == "STORE_CORRUPT"


def test_flipped_byte_in_a_snapshot_is_named_and_rebuilt(root: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    face = next((root / "snapshots").glob("face-*.idx"))
    raw = bytearray(face.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    face.write_bytes(bytes(raw))
    code, checks = _check(root, capsys)
    assert code == 1 and _failed(checks) == ["snapshot"]
    assert face.name in str(checks["snapshot"]["problems"])
    code, checks = _check(root, capsys)  # the open rebuilt it from the store
    assert code == 0, _failed(checks)


def test_flipped_byte_in_a_template_blob_is_named(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(root / "nasname.db") as conn:
        label, blob = conn.execute(
            "SELECT t.record_id, t.blob FROM templates t JOIN records r ON r.id = t.record_id "
            "WHERE r.ref_id = 'R5' AND t.modality = 'face'").fetchone()
        bad = bytearray(blob)
        bad[-5] ^= 0x01
        conn.execute("UPDATE templates SET blob = ? WHERE record_id = ? AND modality = 'face'",
                     (bytes(bad), label))
    code, checks = _check(root, capsys)
    assert code == 1 and "templates" in _failed(checks)
    assert "record R5 face template: DECRYPTION_FAILED" in str(checks["templates"]["problems"])


def test_deleted_audit_row_is_named(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(root / "nasname.db") as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit WHERE seq = 7")
    code, checks = _check(root, capsys)
    assert code == 1 and _failed(checks) == ["audit_chain"]
    assert "rows 7..7 are missing" in str(checks["audit_chain"]["problems"])


def test_stray_files_are_orphans(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "copy-of-db.sqlite").write_bytes(b"x")
    (root / "snapshots" / "face-3.idx").write_bytes(b"x")
    code, checks = _check(root, capsys)
    assert code == 1 and _failed(checks) == ["orphan_files"]
    assert len(checks["orphan_files"]["problems"]) == 2  # type: ignore[arg-type]
    assert EngineConfig(data_dir=root).data_dir == root


def test_the_model_directory_in_the_data_directory_is_not_an_orphan(
        root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`dev.py serve` with no NASNAME_MODEL_DIR keeps the models in <data dir>/models: a fresh
    installation's check must pass; the same folder is a stray one when the models live elsewhere."""
    (root / "models").mkdir()
    monkeypatch.setenv("NASNAME_MODEL_DIR", str(root / "models"))
    code, checks = _check(root, capsys)
    assert code == 0 and checks["orphan_files"]["ok"]
    monkeypatch.setenv("NASNAME_MODEL_DIR", str(root.parent / "elsewhere"))
    code, checks = _check(root, capsys)
    assert code == 1 and _failed(checks) == ["orphan_files"]


def test_maintenance_vacuums_snapshots_and_prunes_old_jobs(root: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from engine.jobs import JobFiles

    old = JobFiles.create(root / "jobs" / "dedup" / "0123456789ab", "dedup")
    old.set_state("done")
    meta = json.loads((old.dir / "job.json").read_text())
    meta["updated"] = 1.0  # finished long ago
    (old.dir / "job.json").write_text(json.dumps(meta))
    live = JobFiles.create(root / "jobs" / "dedup" / "ba9876543210", "dedup")
    live.set_state("cancelled")  # recent: kept
    with sqlite3.connect(root / "nasname.db") as conn:
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.execute("INSERT INTO filler VALUES (zeroblob(2000000))")
        conn.execute("DROP TABLE filler")
    assert cli.main(["maintenance", "--data-dir", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["jobs_removed"] == ["dedup/0123456789ab"] and live.exists and not old.exists
    assert report["database"]["bytes_after"] < report["database"]["bytes_before"] - 1_000_000
    assert os.path.getsize(root / "nasname.db") == report["database"]["bytes_after"]
    assert cli.main(["check", "--data-dir", str(root)]) == 0
