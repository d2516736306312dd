"""Online backup and restore (engine.ops): the restore drill with enrollments streaming in, and clear,
all-or-nothing refusals of damaged archives and wrong keys."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from engine.crypto import KeyRing
from engine.errors import Conflict, IntegrityError, InvalidInput
from engine.ops.backup import create_backup, prune_backups
from engine.ops.check import run_check
from engine.ops.keys import write_export
from engine.ops.restore import key_source, restore_backup, verify_archive
from engine.types import Modality
from tests.unit.ops.conftest import config_of, face, fill, open_gallery, templates


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-snapshot", "latest-snapshot"])
def test_restore_drill_with_enrollments_streaming_in(tmp_path: Path, fresh: bool) -> None:
    root = tmp_path / "live"
    gallery = open_gallery(root)
    acked: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()
    fill(gallery, 50)
    gallery.snapshot()

    def enroll(worker: int) -> None:
        i = 0
        while not stop.is_set():
            n = 1000 + worker * 100_000 + i
            result = gallery.insert(templates(n), ref_id=f"R{n}", partition="camp-a")
            with lock:
                acked.append((f"R{n}", result.seq))
            i += 1

    threads = [threading.Thread(target=enroll, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        while len(acked) < 60:  # enrollments are flowing before the backup starts
            threading.Event().wait(0.01)
        result = create_backup(gallery, tmp_path / "backups", config=config_of(root), fresh_snapshot=fresh)
        seen = len(acked)
        while len(acked) < seen + 30:  # and go on after it
            threading.Event().wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    gallery.close()
    seq = result.manifest["change_seq"]
    assert result.path.suffix == ".nasbak" and result.path.stat().st_mode & 0o777 == 0o600
    assert result.manifest["site_id"] == "camp-test" and "nasname.db" in result.manifest["members"]
    before = [ref for ref, s in acked if s <= seq]
    after = [ref for ref, s in acked if s > seq]
    assert before and after, "the backup was not taken mid-stream"

    if fresh:
        assert result.manifest["index_seq"] == seq
    else:
        assert result.manifest["index_seq"] < seq  # the snapshot taken before the stream, replayed on open
    restored = restore_backup(result.path, tmp_path / "new", key_source(root / "nasname.key", None),
                              check=run_check)
    assert restored.key_file is None and restored.check["ok"]  # the key file given stays the key
    g = open_gallery(tmp_path / "new", KeyRing.from_file(root / "nasname.key"))
    try:
        stats = g.store.stats()
        assert stats["last_seq"] == seq
        assert stats["records"] == result.manifest["records"]
        assert stats["templates"] == result.manifest["templates"]
        assert g.count() == 50 + len(before)
        for ref in ["R0", "R49", *before]:
            n = int(ref[1:])
            hits = g.search(Modality.FACE, face(n), 1)
            assert hits and hits[0].ref_id == ref, ref  # present and its own top-1
        present = g.store.labels_of(after, status=None)
        assert not present, f"enrolled after the backup yet restored: {sorted(present)[:5]}"
    finally:
        g.close()


@pytest.fixture()
def backup(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "live"
    with open_gallery(root) as gallery:
        fill(gallery, 30)
        path = create_backup(gallery, tmp_path / "backups", config=config_of(root)).path
    return path, root / "nasname.key"


def test_archive_never_holds_the_key_or_a_template_in_clear(backup: tuple[Path, Path]) -> None:
    path, key = backup
    data = path.read_bytes()
    raw_key = KeyRing.from_file(key).active_key
    assert raw_key not in data and key.read_bytes().strip() not in data
    assert face(3).vector.tobytes()[:32] not in data
    assert b"nasname.db" not in data  # even member names are inside the encryption


def test_restore_refuses_a_non_empty_directory_and_a_wrong_key(backup: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    path, key = backup
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(Conflict, match="not empty"):
        restore_backup(path, busy, key_source(key, None))
    other = tmp_path / "other.key"
    KeyRing.from_file(other)
    with pytest.raises(IntegrityError, match="sealed with key id") as err:
        restore_backup(path, tmp_path / "new", key_source(other, None))
    assert err.value.reason == "WRONG_KEY" and not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", ["middle", "end", "appended"])
def test_a_damaged_archive_is_refused_naming_the_member_and_nothing_is_left(
        backup: tuple[Path, Path], tmp_path: Path, where: str) -> None:
    path, key = backup
    data = bytearray(path.read_bytes())
    if where == "middle":
        data[len(data) // 2] ^= 0x01
    elif where == "end":
        data = data[: len(data) - 100]  # truncated
    else:
        data += b"\x00" * 64  # something after the last chunk
    bad = tmp_path / "bad.nasbak"
    bad.write_bytes(bytes(data))
    target = tmp_path / "new"
    target.mkdir()
    with pytest.raises(IntegrityError, match="backup member") as err:
        restore_backup(bad, target, key_source(key, None))
    assert err.value.reason in ("ARCHIVE_CORRUPT", "ARCHIVE_TRUNCATED")
    assert err.value.details["member"]
    assert list(target.iterdir()) == []  # nothing half-restored


def test_passphrase_restore_from_the_archive_or_an_export(backup: tuple[Path, Path], tmp_path: Path) -> None:
    path, key = backup
    with pytest.raises(InvalidInput, match="does not hold the key"):
        restore_backup(path, tmp_path / "a", key_source(None, "correct horse battery"))
    export = tmp_path / "key.export"
    write_export(KeyRing.from_file(key), "correct horse battery", export)
    assert KeyRing.from_file(key).active_key not in export.read_bytes()
    with pytest.raises(Exception, match="passphrase does not open"):
        restore_backup(path, tmp_path / "b", key_source(export, "wrong horse battery"))
    done = restore_backup(path, tmp_path / "c", key_source(export, "correct horse battery"))
    assert done.key_file == tmp_path / "c" / "nasname.key"
    with open_gallery(tmp_path / "c") as g:  # opens with the key written there
        assert g.count() == 30


def test_backup_with_a_passphrase_restores_with_the_passphrase_alone(tmp_path: Path) -> None:
    root = tmp_path / "live"
    with open_gallery(root) as gallery:
        fill(gallery, 5)
        path = create_backup(gallery, tmp_path / "b", config=config_of(root),
                             passphrase="long enough phrase").path
    manifest = verify_archive(path, key_source(None, "long enough phrase"))
    assert manifest["records"]["active"] == 5
    restore_backup(path, tmp_path / "new", key_source(None, "long enough phrase"))
    with open_gallery(tmp_path / "new") as g:
        assert g.search(Modality.FACE, face(2), 1)[0].ref_id == "R2"


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    d = tmp_path / "b"
    d.mkdir()
    for i in range(5):
        p = d / f"nasname-2026010{i}T000000Z-seq{i}.nasbak"
        p.write_bytes(b"x")
        os.utime(p, (1000 + i, 1000 + i))
    removed = prune_backups(d, 2)
    assert sorted(p.name for p in d.iterdir()) == ["nasname-20260103T000000Z-seq3.nasbak",
                                                   "nasname-20260104T000000Z-seq4.nasbak"]
    assert len(removed) == 3


def test_cli_backup_restore_and_key_export_import(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from server import cli

    root = tmp_path / "live"
    with open_gallery(root) as gallery:
        fill(gallery, 12)
    monkeypatch.delenv("NASNAME_CONFIG", raising=False)
    assert cli.main(["backup", "create", "--data-dir", str(root), "--to", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "backup written:" in out and "NOT in the archive" in out
    archive = next((tmp_path / "b").glob("*.nasbak"))
    key = str(root / "nasname.key")
    assert cli.main(["backup", "verify", str(archive), "--key-file", key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["records"] == {"active": 12, "pending": 0,
                                                                          "deleted": 0}
    monkeypatch.setenv("NASNAME_PASSPHRASE", "a long passphrase")
    assert cli.main(["key", "export", "--data-dir", str(root), "--to", str(tmp_path / "k.export"),
                     "--passphrase"]) == 0
    capsys.readouterr()
    assert cli.main(["backup", "restore", str(archive), "--data-dir", str(tmp_path / "new"),
                     "--key-file", str(tmp_path / "k.export"), "--passphrase", "--json"]) == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["check"]["ok"] and restored["key_file"] == str(tmp_path / "new" / "nasname.key")
    assert cli.main(["check", "--data-dir", str(tmp_path / "new")]) == 0
    assert cli.main(["key", "import", str(tmp_path / "k.export"), "--to", str(tmp_path / "k2.key")]) == 0
    assert (tmp_path / "k2.key").read_text() == (root / "nasname.key").read_text()
    assert cli.main(["backup", "restore", str(archive), "--data-dir", str(tmp_path / "new")]) == 1
    assert "not empty" in capsys.readouterr().err


def test_verification_runs_as_a_job_with_progress_cancel_and_resume(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.jobs import JobCancelled
    from engine.ops import verify

    root = tmp_path / "live"
    with open_gallery(root) as gallery:
        fill(gallery, 300)
        path = create_backup(gallery, tmp_path / "b", config=config_of(root)).path
    monkeypatch.setattr(verify, "_EVERY_S", 0.0)  # a report on every read of this small archive
    job = verify.VerifyJob.create(tmp_path / "job", path, key_source(root / "nasname.key", None))
    seen: list[int] = []

    def cancel_midway(p: verify.Progress) -> None:
        seen.append(p.done)
        if len(seen) == 2:
            job.cancel()

    with pytest.raises(JobCancelled):
        job.run(on_progress=cancel_midway)
    p = job.progress()
    assert p.state == "cancelled" and 0 < p.done <= p.total and p.eta_s is not None
    manifest = job.resume()
    p = job.progress()
    assert (p.state, p.stage, p.done, p.eta_s) == ("done", "done", p.total, 0.0)
    assert p.found == len(manifest["members"]) > 2


def test_backups_are_operation_events(tmp_path: Path) -> None:
    """Issue 13: a backup leaves an event (outcome, duration, records) for the registration report."""
    from engine.events import EventFilter

    root = tmp_path / "g"
    gallery = open_gallery(root)
    try:
        fill(gallery, 7)
        create_backup(gallery, tmp_path / "backups", config=config_of(root))
        [event] = list(gallery.datadir.events.select(EventFilter(op="backup")))
        assert (event.outcome, event.count, event.error) == ("ok", 7, "")
        assert event.latency_ms > 0
    finally:
        gallery.close()
