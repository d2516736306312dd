"""A full disk at shutdown (issue 18, item 12): `nasname serve` on a real, small tmpfs that fills up
while it runs. The index snapshot written at shutdown fails; the server says so in words (no
traceback), exits 1, and loses nothing: the next start finds every acknowledged record.

Needs permission to mount a tmpfs (root in a container that allows it); skipped otherwise.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.extractors import template_model
from engine.types import FaceTemplate
from server.client import Client, template_sample

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _serve(data: Path, log: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = dict(os.environ, NASNAME_DATA_DIR=str(data), NASNAME_MODALITIES="face", NASNAME_CONFIG="",
               NASNAME_SERVER_LOG_FORMAT="text")
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--address", "127.0.0.1:0",
                             "--allow-plaintext"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True)
    token, address = "", ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if "NASNAME_TOKEN=" in line:
            token = line.split("=", 1)[1].strip()
        m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        if m:
            address = m.group(1)
            break
    assert address, log.read_text()[-2000:]
    return proc, address, token


def _fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # until not even one byte fits
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_full_disk_at_shutdown_is_a_clean_message_and_loses_nothing(small_disk: Path, tmp_path: Path) -> None:
    data, log = small_disk / "data", tmp_path / "serve.log"
    proc, address, token = _serve(data, log)
    try:
        rng = np.random.default_rng(0)
        model = template_model("face")  # the server's face model (it accepts no unknown one)
        with Client(address, token=token, plaintext=True, timeout=20) as c:
            refs = [c.insert([template_sample("face", FaceTemplate(rng.normal(size=128).astype(np.float32),
                                                                    model))]).reference_id
                    for _ in range(20)]
        _fill(small_disk)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    err = log.read_text()
    assert code == 1, err[-2000:]
    assert "could not save the index snapshot at shutdown" in err and "No acknowledged write is lost" in err
    assert "Traceback" not in err
    (small_disk / "filler").unlink()
    proc, address, _ = _serve(data, tmp_path / "serve2.log")
    try:
        with Client(address, token=token, plaintext=True, timeout=20) as c:
            assert c.stats().total == len(refs)
            assert c.get_record(refs[-1]).record.reference_id == refs[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        time.sleep(0.1)
