"""The nasname command: parsing, client commands against a real server (fake engine), pass-through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.auth import Role
from server.cli import main
from tests.unit.server.conftest import Running


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_enroll_with_two_image_files(fresh: Running, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.jpg").write_bytes(b"face bytes")
    (tmp_path / "l.png").write_bytes(b"iris bytes")
    code, out, _ = _run(capsys, "enroll", "--address", fresh.address, "--plaintext",
                        "--token", fresh.secrets[Role.STATION], "--face", str(tmp_path / "a.jpg"),
                        "--iris-left", str(tmp_path / "l.png"), "--id", "R-cli", "--partition", "camp-a")
    assert code == 0
    reply = json.loads(out)
    assert reply["reference_id"] == "R-cli" and reply["outcome"] == "ENROLL_OUTCOME_PENDING_ADJUDICATION"
    assert reply["candidates"][0]["reference_id"] == "R-mate"
    _, (_, samples, kw) = fresh.engine.calls[-1]
    assert [s.image for s in samples] == [b"face bytes", b"iris bytes"] and kw["partition"] == "camp-a"


def test_identify_verify_get_stats_pending_adjudicate_delete(
        fresh: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.jpg").write_bytes(b"face")
    monkeypatch.setenv("NASNAME_TOKEN", fresh.secrets[Role.ADMIN])
    conn = ("--address", fresh.address, "--plaintext")
    assert _run(capsys, "identify", *conn, "--face", str(tmp_path / "a.jpg"), "--max-results", "3")[0] == 0
    assert fresh.engine.calls[-1][1][1]["max_results"] == 3
    assert _run(capsys, "identify", *conn, "--id", "R-1", "--restrict", "a", "b")[0] == 0
    assert fresh.engine.calls[-1][1][1]["reference_ids"] == ["a", "b"]
    code, out, _ = _run(capsys, "verify", *conn, "--id", "R-1", "--face", str(tmp_path / "a.jpg"))
    assert code == 0 and json.loads(out)["match"] is True
    assert json.loads(_run(capsys, "get", *conn, "--id", "R-3")[1])["record"]["reference_id"] == "R-3"
    assert json.loads(_run(capsys, "stats", *conn)[1])["total"] == "3"  # uint64 -> JSON string
    assert json.loads(_run(capsys, "pending", *conn)[1])["items"][0]["reference_id"] == "R-p"
    assert _run(capsys, "adjudicate", *conn, "--id", "R-p", "--decision", "same", "--mate", "R-mate")[0] == 0
    assert fresh.engine.calls[-1][0] == "adjudicate"
    assert _run(capsys, "delete", *conn, "--id", "R-9")[0] == 0
    assert fresh.engine.calls[-1] == ("delete", ("R-9", {"actor": "tok_4"}))
    assert _run(capsys, "health", *conn)[1].strip() == "SERVING"


def test_failure_prints_code_and_reason(fresh: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "delete", "--address", fresh.address, "--plaintext",
                        "--token", fresh.secrets[Role.STATION], "--id", "R-1")
    assert code == 1 and "PERMISSION_DENIED [PERMISSION_DENIED]" in err
    code, _, err = _run(capsys, "stats", "--address", fresh.address, "--plaintext", "--token", "")
    assert code == 1 and "UNAUTHENTICATED [MISSING_TOKEN]" in err


def test_identify_needs_exactly_one_probe(fresh: Running, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="either"):
        main(["identify", "--address", fresh.address, "--plaintext", "--token", "x"])


def test_remote_token_commands(fresh: Running, capsys: pytest.CaptureFixture[str]) -> None:
    conn = ("--remote", "--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.ADMIN])
    code, out, _ = _run(capsys, "token", "create", "station 5", "--role", "station", *conn)
    made = json.loads(out)
    assert code == 0 and made["secret"].startswith("nsk_") and made["token"]["role"] == "station"
    listed = json.loads(_run(capsys, "token", "list", *conn)[1])["tokens"]
    assert made["token"]["token_id"] in {t["token_id"] for t in listed}
    assert _run(capsys, "token", "revoke", made["token"]["token_id"], *conn)[0] == 0


def test_pass_through_reports_missing_tools(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import server.cli as cli

    monkeypatch.setitem(cli.PASS_THROUGH, "dedup", ("engine.no_such_tool_yet", "x"))
    code, _, err = _run(capsys, "dedup", "--anything")
    assert code == 2 and "not available" in err


def test_pass_through_hands_over_arguments(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    import server.cli as cli

    seen: list[list[str]] = []
    fake = types.ModuleType("fake_tool")
    fake.main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_tool", fake)
    monkeypatch.setitem(cli.PASS_THROUGH, "bench", ("fake_tool", "x"))
    assert main(["bench", "--quick", "--sizes", "1000"]) == 7
    assert seen == [["--quick", "--sizes", "1000"]]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("serve", "token", "enroll", "identify", "verify", "adjudicate", "models", "evaluate",
                 "bench", "dedup"):
        assert name in out


def test_unmet_target_fpir_is_said_in_the_reply_and_in_words(fresh: Running, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from engine.records import Threshold

    (tmp_path / "a.jpg").write_bytes(b"face")
    conn = ("--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.STATION])
    code, out, err = _run(capsys, "identify", *conn, "--face", str(tmp_path / "a.jpg"))
    assert code == 0 and "target_not_met" not in json.loads(out)["threshold"] and "warning" not in err
    fresh.engine.threshold = Threshold(1e-9, 5_000_000, 41.1, target_met=False, expected_fpir=0.0042)
    code, out, err = _run(capsys, "identify", *conn, "--face", str(tmp_path / "a.jpg"))
    reply = json.loads(out)["threshold"]
    assert code == 0 and reply["target_not_met"] is True and reply["expected_fpir"] == pytest.approx(0.0042)
    assert "target FPIR 1e-09 cannot be met for a gallery of 5000000 records" in err
