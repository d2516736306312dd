"""`nasname serve` as a real process: fresh data directory, first admin token printed once, SIGTERM
drains in-flight calls (no acknowledged enroll lost), restart with auto TLS finds everything."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.extractors import template_model
from engine.types import FaceTemplate
from server.cli import main
from server.client import Client, template_sample

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(data_dir: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    env = dict(os.environ, NASNAME_DATA_DIR=str(data_dir), NASNAME_MODALITIES="face",
               NASNAME_SERVER_LOG_FORMAT="json", NASNAME_CONFIG="",
               NASNAME_WEB_ADDRESS="127.0.0.1:0")  # the console too on a free port, never a fixed one
    log = (data_dir.parent / "serve.log").open("a")  # a file: a full stderr pipe would block the server
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--address", "127.0.0.1:0", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or ()], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None:
                    log.flush()
                    text = (data_dir.parent / "serve.log").read_text()[-3000:]
                    raise AssertionError(f"serve exited: {text}") from None
                continue
            seen.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                yield proc, f"127.0.0.1:{m.group(1)}", seen
                break
        else:
            raise AssertionError(f"serve did not start: {seen}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_serve_fresh_then_sigterm_then_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    acked: list[str] = []
    with serving(data, "--allow-plaintext") as (proc, address, out):
        secrets = [line.split("=", 1)[1].strip() for line in out if "NASNAME_TOKEN=" in line]
        assert len(secrets) == 1, out  # first start: one admin token, printed once
        admin = Client(address, token=secrets[0], plaintext=True, retries=0, timeout=20)
        assert admin.health() == "SERVING"
        model = template_model("face")  # the server's face model (it accepts no unknown one)
        stop = threading.Event()
        codes: list[grpc.StatusCode] = []

        def station(k: int) -> None:
            rng = np.random.default_rng(k)
            c = Client(address, token=secrets[0], plaintext=True, retries=0, timeout=20)
            i = 0
            while not stop.is_set():
                v = rng.normal(size=128).astype(np.float32)
                v /= np.linalg.norm(v)
                try:
                    r = c.insert([template_sample("face", FaceTemplate(v, model))], reference_id=f"S{k}-{i}")
                except grpc.RpcError as exc:
                    codes.append(exc.code())
                    return
                acked.append(r.reference_id)
                i += 1

        threads = [threading.Thread(target=station, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        while len(acked) < 15 and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        stop.set()
        for t in threads:
            t.join(20)
        # calls that arrive while the server stops are refused (UNAVAILABLE) or cut (CANCELLED): never
        # acknowledged, so they may or may not have been stored; acknowledged ones must all be there
        assert set(codes) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, codes
        assert (data / "nasname.key").exists() or any(data.rglob("*.key"))
    assert len(acked) >= 15
    with serving(data) as (_, address, out):  # default: TLS with the auto certificate
        assert not [line for line in out if "NASNAME_TOKEN=" in line]  # not a first start any more
        cert = (data / "tls" / "server.crt").read_bytes()
        admin = Client(address, token=secrets[0], ca=cert, timeout=20)
        for ref in acked:
            assert admin.get_record(ref).record.reference_id == ref
        assert len(acked) <= int(admin.stats().by_status["active"]) <= len(acked) + len(codes)
        # the CLI finds the auto certificate of a loopback server in the data directory by itself
        monkeypatch.setenv("NASNAME_DATA_DIR", str(data))
        capsys.readouterr()
        assert main(["stats", "--address", address, "--token", secrets[0], "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["by_status"]["active"] >= len(acked)


def test_local_token_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Without a server the operator manages tokens on the data directory; with one, --remote."""
    mp, cap = monkeypatch, capsys
    data = tmp_path / "data"
    mp.setenv("NASNAME_MODALITIES", "face")
    mp.setenv("NASNAME_DATA_DIR", str(data))  # --data-dir sets it too; monkeypatch restores it afterwards
    assert main(["token", "create", "station 1", "--role", "station", "--data-dir", str(data)]) == 0
    out = cap.readouterr().out
    token_id = re.search(r"CREATED token (\S+)", out).group(1)  # type: ignore[union-attr]
    assert "nsk_" in out
    assert main(["token", "list", "--data-dir", str(data), "--json"]) == 0
    [row] = json.loads(cap.readouterr().out)["tokens"]
    assert (row["token_id"], row["role"], row["revoked"]) == (token_id, "station", 0)
    assert main(["token", "list", "--data-dir", str(data)]) == 0
    assert "station 1" in cap.readouterr().out
    assert main(["token", "revoke", token_id, "--data-dir", str(data)]) == 0
    cap.readouterr()
    engine = Engine.open(EngineConfig.load(None))  # holds the data directory, as a running server does
    try:
        assert main(["token", "list", "--data-dir", str(data)]) == 1
        assert "--remote" in cap.readouterr().err
    finally:
        engine.close()


def test_serve_mistakes_are_one_line_each_before_anything_is_created(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "new-data"
        env = dict(os.environ, NASNAME_DATA_DIR=str(data), NASNAME_CONFIG="")
        done = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--address", f"127.0.0.1:{port}",
                               "--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(tmp_path / "k")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert any(f"port {port} on 127.0.0.1 is in use" in x and "--address" in x for x in lines), lines
    assert any("--tls-cert" in x and "cannot be read" in x for x in lines), lines
    assert not data.exists() and "NASNAME_TOKEN" not in done.stdout  # nothing created, no token shown
    engine = Engine.open(EngineConfig(data_dir=tmp_path / "busy", modalities=("face",)))
    try:
        env["NASNAME_DATA_DIR"] = str(tmp_path / "busy")
        done = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--address", "127.0.0.1:0"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "is in use by another nasname process" in done.stderr
    finally:
        engine.close()
