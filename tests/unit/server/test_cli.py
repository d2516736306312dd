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
    args = ("enroll", "--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.STATION],
            "--face", str(tmp_path / "a.jpg"), "--iris-left", str(tmp_path / "l.png"), "--id", "R-cli",
            "--partition", "camp-a")
    code, out, _ = _run(capsys, *args)
    assert code == 0 and out.startswith("POSSIBLE DUPLICATE (pending adjudication): R-cli")
    assert "R-mate" in out and "threshold 7.50" in out
    code, out, _ = _run(capsys, *args, "--json")
    reply = json.loads(out)
    assert reply["reference_id"] == "R-cli" and reply["outcome"] == "ENROLL_OUTCOME_PENDING_ADJUDICATION"
    assert reply["candidates"][0]["reference_id"] == "R-mate"
    _, (_, samples, kw) = fresh.engine.calls[-1]
    assert [s.image for s in samples] == [b"face bytes", b"iris bytes"] and kw["partition"] == "camp-a"


def test_repeated_image_options_send_every_frame(fresh: Running, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("f1", "f2", "f3", "l1", "l2"):
        (tmp_path / name).write_bytes(name.encode())
    conn = ("--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.STATION])
    frames = ("--face", str(tmp_path / "f1"), "--iris-left", str(tmp_path / "l1"),
              "--face", str(tmp_path / "f2"), "--iris-left", str(tmp_path / "l2"),
              "--face", str(tmp_path / "f3"))
    assert _run(capsys, "enroll", *conn, *frames)[0] == 0
    _, (_, samples, _) = fresh.engine.calls[-1]
    assert [(s.modality.value, s.image) for s in samples] == [
        ("face", b"f1"), ("face", b"f2"), ("face", b"f3"), ("iris_left", b"l1"), ("iris_left", b"l2")]
    assert _run(capsys, "verify", *conn, "--id", "R-1", *frames)[0] == 0
    assert len(fresh.engine.calls[-1][1][1]) == 5
    code, _, err = _run(capsys, "recapture", *conn, "--id", "R-1", "--face", str(tmp_path / "f1"),
                        "--face", str(tmp_path / "f2"))
    assert code == 2 and "exactly one new sample" in err


def test_identify_verify_get_stats_pending_adjudicate_delete(
        fresh: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.jpg").write_bytes(b"face")
    monkeypatch.setenv("NASNAME_TOKEN", fresh.secrets[Role.ADMIN])
    conn = ("--address", fresh.address, "--plaintext")
    code, out, _ = _run(capsys, "identify", *conn, "--face", str(tmp_path / "a.jpg"), "--max-results", "3")
    assert code == 0 and out.startswith("MATCH: 1 candidate(s)")
    assert fresh.engine.calls[-1][1][1]["max_results"] == 3
    assert _run(capsys, "identify", *conn, "--id", "R-1", "--restrict", "a", "b")[0] == 0
    assert fresh.engine.calls[-1][1][1]["reference_ids"] == ["a", "b"]
    code, out, _ = _run(capsys, "verify", *conn, "--id", "R-1", "--face", str(tmp_path / "a.jpg"))
    assert code == 0 and out.startswith("MATCH: R-1, fused score 12.50 >= threshold 7.50")
    code, out, _ = _run(capsys, "verify", *conn, "--id", "R-1", "--face", str(tmp_path / "a.jpg"), "--json")
    assert json.loads(out)["match"] is True
    got = json.loads(_run(capsys, "get", *conn, "--id", "R-3", "--json")[1])
    assert got["record"]["reference_id"] == "R-3"
    assert "status     ACTIVE" in _run(capsys, "get", *conn, "--id", "R-3")[1]
    assert json.loads(_run(capsys, "stats", *conn, "--json")[1])["total"] == 3  # a number, not "3"
    assert json.loads(_run(capsys, "pending", *conn, "--json")[1])["items"][0]["reference_id"] == "R-p"
    assert "R-p" in _run(capsys, "pending", *conn)[1]
    assert _run(capsys, "adjudicate", *conn, "--id", "R-p", "--decision", "same", "--mate", "R-mate")[0] == 0
    assert fresh.engine.calls[-2][0] == "adjudicate"
    assert _run(capsys, "delete", *conn, "--id", "R-9")[0] == 0
    name, (ref, kw) = fresh.engine.calls[-1]
    assert (name, ref, kw["actor"]) == ("delete", "R-9", "tok_4") and kw["request_id"]  # retry-safe
    assert _run(capsys, "health", *conn)[1].strip() == "SERVING"


def test_failure_prints_code_and_reason(fresh: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "delete", "--address", fresh.address, "--plaintext",
                        "--token", fresh.secrets[Role.STATION], "--id", "R-1")
    assert code == 1 and "PERMISSION_DENIED [PERMISSION_DENIED]" in err
    code, _, err = _run(capsys, "stats", "--address", fresh.address, "--plaintext", "--token", "")
    assert code == 1 and "UNAUTHENTICATED [MISSING_TOKEN]" in err and "--token" in err


def test_usage_mistakes_exit_2_with_the_fix(fresh: Running, capsys: pytest.CaptureFixture[str]) -> None:
    conn = ("--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.ADMIN])
    code, _, err = _run(capsys, "identify", *conn)
    assert code == 2 and "either" in err
    code, _, err = _run(capsys, "adjudicate", *conn, "--id", "R-p", "--decision", "same")
    assert code == 2 and "--mate" in err
    assert not any(c[0] == "adjudicate" for c in fresh.engine.calls)


def test_refused_sample_says_what_to_do(fresh: Running, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.errors import QualityRejected

    (tmp_path / "a.jpg").write_bytes(b"face")
    fresh.engine.fail = QualityRejected("face failed", reasons=["BLURRED", "TOO_DARK"],
                                        details={"modality": "face"})
    code, _, err = _run(capsys, "enroll", "--address", fresh.address, "--plaintext", "--token",
                        fresh.secrets[Role.STATION], "--face", str(tmp_path / "a.jpg"))
    assert code == 1
    assert err.startswith("REFUSED: face: blurred: hold the camera still and focus; too dark: add light")


def test_no_server_says_how_to_reach_one(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = _run(capsys, "stats", "--address", f"127.0.0.1:{port}", "--plaintext", "--token", "x",
                        "--timeout", "3")
    assert code == 1 and "UNAVAILABLE" in err and "nasname serve" in err


def test_remote_token_commands(fresh: Running, capsys: pytest.CaptureFixture[str]) -> None:
    conn = ("--remote", "--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.ADMIN])
    code, out, _ = _run(capsys, "token", "create", "station 5", "--role", "station", *conn, "--json")
    made = json.loads(out)
    assert code == 0 and made["secret"].startswith("nsk_") and made["token"]["role"] == "station"
    listed = json.loads(_run(capsys, "token", "list", *conn, "--json")[1])["tokens"]
    assert made["token"]["token_id"] in {t["token_id"] for t in listed}
    assert made["token"]["token_id"] in _run(capsys, "token", "list", *conn)[1]
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


def test_cli_retries_a_lost_enroll_with_the_same_request_id(fresh: Running, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from engine.errors import Unavailable

    (tmp_path / "a.jpg").write_bytes(b"face bytes")
    conn = ("--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.STATION])
    fresh.engine.fail, fresh.engine.fail_times = Unavailable("link down", reason="INJECTED"), 1
    code, out, _ = _run(capsys, "enroll", *conn, "--face", str(tmp_path / "a.jpg"), "--json")
    assert code == 0
    ids = [kw["request_id"] for name, (_, _, kw) in fresh.engine.calls if name == "enroll"]
    assert len(ids) == 2 and ids[0] == ids[1] == json.loads(out)["request_id"]
    fresh.engine.calls.clear()
    assert _run(capsys, "enroll", *conn, "--face", str(tmp_path / "a.jpg"), "--request-id", "st-1:9")[0] == 0
    assert fresh.engine.calls[-1][1][2]["request_id"] == "st-1:9"


def test_get_shows_history_records_reopen_recapture(fresh: Running, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f.jpg").write_bytes(b"new face")
    (tmp_path / "l.png").write_bytes(b"iris")
    admin = ("--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.ADMIN])
    out = _run(capsys, "get", *admin, "--id", "R-p")[1]
    assert "history:" in out and "R-mate" in out and "same scar" in out and "tok_9" in out
    code, out, _ = _run(capsys, "records", *admin, "--partition", "camp-a", "--status", "active",
                        "--created-from", "2026-01-01", "--limit", "5")
    assert code == 0 and "1 of 7 record(s)" in out and "R-1" in out
    kw = fresh.engine.calls[-1][1]
    assert kw["partition"] == "camp-a" and kw["status"].value == "active" and kw["created_from"] > 1.7e9
    assert _run(capsys, "records", *admin, "--created-from", "yesterday")[0] == 2
    code, out, _ = _run(capsys, "reopen", *admin, "--id", "R-d", "--reason", "complaint")
    assert code == 0 and out.startswith("REOPENED: R-d") and fresh.engine.calls[-2] == (
        "reopen", ("R-d", {"actor": "tok_4", "reason": "complaint"}))
    station = ("--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.STATION])
    code, out, _ = _run(capsys, "recapture", *station, "--id", "R-1", "--face", str(tmp_path / "f.jpg"),
                        "--verify-iris-left", str(tmp_path / "l.png"))
    assert code == 0 and out.startswith("UPDATED: R-1") and "1:1 check: MATCH" in out
    [(_, (ref, sample, kw))] = [c for c in fresh.engine.calls if c[0] == "update_biometrics"]
    assert ref == "R-1" and sample.image == b"new face" and [s.image for s in kw["verification"]] == [b"iris"]
    assert _run(capsys, "recapture", *station, "--id", "R-1")[0] == 2  # no new sample
    code, _, err = _run(capsys, "reopen", *station, "--id", "R-d", "--reason", "x")
    assert code == 1 and "PERMISSION_DENIED" in err


def test_every_option_of_every_command_has_help_text() -> None:
    import argparse
    import importlib

    from server.cli import _parser
    from server.cli_dedup import _remote_parser

    missing: list[str] = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(a, argparse._HelpAction) and not a.help:
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")

    walk(_parser(), "nasname")
    walk(_remote_parser(), "nasname dedup (server)")
    for module, name in (("engine.dedup.cli", "dedup"), ("engine.evaluate", "evaluate"),
                         ("engine.bench.cli", "bench"), ("engine.models.cli", "models"),
                         ("server.cli_report", "report")):
        walk(importlib.import_module(module)._parser(), f"nasname {name}")
    assert missing == []


def test_unmet_target_fpir_is_said_in_the_reply_and_in_words(fresh: Running, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from engine.records import Threshold

    (tmp_path / "a.jpg").write_bytes(b"face")
    conn = ("--address", fresh.address, "--plaintext", "--token", fresh.secrets[Role.STATION])
    code, out, err = _run(capsys, "identify", *conn, "--face", str(tmp_path / "a.jpg"), "--json")
    assert code == 0 and json.loads(out)["threshold"]["target_not_met"] is False and "warning" not in err
    fresh.engine.threshold = Threshold(1e-9, 5_000_000, 41.1, target_met=False, expected_fpir=0.0042)
    code, out, err = _run(capsys, "identify", *conn, "--face", str(tmp_path / "a.jpg"), "--json")
    reply = json.loads(out)["threshold"]
    assert code == 0 and reply["target_not_met"] is True and reply["expected_fpir"] == pytest.approx(0.0042)
    assert "target FPIR 1e-09 cannot be met for a gallery of 5000000 records" in err
