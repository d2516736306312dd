"""The site / transfer commands of the CLI on two local data directories (empty galleries: the import
itself is covered by test_transfer.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli import main as cli_main


def test_site_and_transfer_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opts = {}
    for name in ("camp-a", "camp-b"):
        (tmp_path / f"{name}.toml").write_text(f'[engine]\nsite_id = "{name}"\nmodalities = ["face"]\n')
        opts[name] = ["--data-dir", str(tmp_path / name), "--config", str(tmp_path / f"{name}.toml")]
    a, b = opts["camp-a"], opts["camp-b"]
    assert cli_main(["site", "show", *a, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["site_id"] == "camp-a" and len(shown["sign_fingerprint"]) == 39
    for name in ("camp-a", "camp-b"):
        assert cli_main(["site", "export-public", *opts[name], "--out", str(tmp_path / f"{name}.pub")]) == 0
    assert cli_main(["site", "trust", str(tmp_path / "camp-b.pub"), *a]) == 0
    # exporting for a site that is not trusted yet is refused with the fix in the message
    assert cli_main(["transfer", "export", "--to", "camp-a", "--out", str(tmp_path / "x.nastx"), *b]) == 1
    assert "nasname site trust FILE" in capsys.readouterr().err
    assert cli_main(["site", "trust", str(tmp_path / "camp-a.pub"), *b]) == 0
    assert cli_main(["transfer", "export", "--to", "camp-b", "--out", str(tmp_path / "p1.nastx"), *a]) == 0
    assert "packet 1 for camp-b" in capsys.readouterr().out
    # --re-extract only matters when the models differ (test_batched_enroll.py); here they do not
    assert cli_main(["transfer", "import", str(tmp_path / "p1.nastx"), "--re-extract", *b]) == 0
    assert capsys.readouterr().out.strip() == (
        "packet 1 from camp-a: 0 new, 0 sent to adjudication, 0 erasures applied"
    )
    assert cli_main(["transfer", "import", str(tmp_path / "p1.nastx"), *b]) == 1
    assert "[PACKET_REPLAYED]" in capsys.readouterr().err
    assert cli_main(["transfer", "status", *b, "--json"]) == 0
    [peer] = json.loads(capsys.readouterr().out)["peers"]
    assert peer["site_id"] == "camp-a" and peer["last_received_packet"] == 1
    assert cli_main(["site", "revoke", "camp-a", *b]) == 0
    assert cli_main(["site", "peers", *b]) == 0
    assert "REVOKED" in capsys.readouterr().out
