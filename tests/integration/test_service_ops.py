"""Operations over gRPC against a real server on 127.0.0.1:0: admin-only backup (with retention),
integrity check and maintenance; the last good backup in Stats; the CLI's --remote forms; and the
backup schedule of ``nasname serve`` (a failure is logged at ERROR)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine.ops.schedule import BackupScheduler, BackupSettings, last_good_backup
from engine.types import FaceTemplate, Modality
from server.auth import Role
from server.cli import main as cli_main
from tests.integration.test_service_support import (
    MODEL,
    Service,
    make_fusion,
    open_engine,
    start_service,
    unit,
)

SC = grpc.StatusCode


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("ops")
    s = start_service(open_engine(root / "data", make_fusion(root / "cal")),
                      backup=BackupSettings(keep=2, dir=root / "backups"))
    rng = np.random.default_rng(3)
    for i in range(25):
        s.engine.gallery.insert({Modality.FACE: FaceTemplate(unit(rng), MODEL)}, ref_id=f"R{i}")
    yield s
    s.stop()


def test_backup_check_and_maintenance_are_admin_only(service: Service) -> None:
    for role in (Role.STATION, Role.INVESTIGATOR, Role.ADJUDICATOR):
        c = service.client(role)
        for call in (c.create_backup, c.check_integrity, c.run_maintenance):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == SC.PERMISSION_DENIED


def test_backups_with_retention_and_the_last_good_one_in_stats(service: Service) -> None:
    admin = service.client(Role.ADMIN)
    assert admin.stats().last_backup_time == 0.0
    files = []
    for _ in range(3):
        reply = admin.create_backup()
        files.append(reply.file)
        assert reply.bytes > 0 and reply.change_seq >= 25 and json.loads(reply.manifest_json)["records"]
    folder = service.engine.datadir.root.parent / "backups"
    assert sorted(p.name for p in folder.glob("*.nasbak")) == sorted(files[1:])  # keep = 2
    stats = admin.stats()
    assert stats.last_backup_time > 0 and 0 <= stats.last_backup_age_s < 30


def test_remote_check_and_maintenance(service: Service) -> None:
    admin = service.client(Role.ADMIN)
    report = json.loads(admin.check_integrity(full=True).report_json)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]
    done = json.loads(admin.run_maintenance().report_json)
    assert done["database"]["bytes_after"] > 0 and done["snapshot_seq"] >= 25


def test_cli_remote_forms(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    conn = ["--remote", "--plaintext", "--address", service.address, "--token", service.secrets[Role.ADMIN]]
    assert cli_main(["check", *conn]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert cli_main(["backup", "create", *conn]) == 0
    assert "backup written on the server" in capsys.readouterr().out


def test_scheduled_backups_and_a_failure_logged_at_error(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    engine = open_engine(tmp_path / "data", make_fusion(tmp_path / "cal"))
    try:
        template = FaceTemplate(unit(np.random.default_rng(1)), MODEL)
        engine.gallery.insert({Modality.FACE: template}, ref_id="A")
        results: list[bool] = []
        settings = BackupSettings(every="1s", keep=3, dir=tmp_path / "b")
        scheduler = BackupScheduler(engine.gallery, engine.config, settings, on_result=results.append)
        scheduler.start()
        deadline = time.monotonic() + 30
        while len(list((tmp_path / "b").glob("*.nasbak"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        scheduler.stop()
        assert len(list((tmp_path / "b").glob("*.nasbak"))) >= 2 and results and all(results)
        assert last_good_backup(engine.datadir) is not None
        (tmp_path / "file").write_text("not a folder")
        broken = BackupScheduler(engine.gallery, engine.config,
                                 BackupSettings(every="1s", dir=tmp_path / "file" / "b"))
        with caplog.at_level(logging.ERROR, logger="engine.ops.schedule"):
            engine.datadir.store.set_meta("backup.last_good", json.dumps({"time": 0}))  # overdue: run now
            broken.start()
            deadline = time.monotonic() + 20
            while not any("scheduled backup FAILED" in r.message for r in caplog.records) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            broken.stop()
        assert any(r.levelno == logging.ERROR and "scheduled backup FAILED" in r.message
                   for r in caplog.records)
    finally:
        engine.close()
