"""`nasname serve` runs the console beside the gRPC service: HTTPS with the service's certificate on its
own (here: free) port, first-start admin account, /metrics from loopback with the RPC counters."""

from __future__ import annotations

import re
import signal
import ssl
import time
import urllib.request
from pathlib import Path

from server.client import Client
from tests.integration.test_service_serve import serving


def test_serve_runs_the_console(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(data) as (proc, address, out):
        cert = (data / "tls" / "server.crt").read_bytes()
        assert Client(address, ca=cert, timeout=20).health() == "SERVING"
        deadline = time.monotonic() + 20
        while not any("web console on" in line for line in out) and time.monotonic() < deadline:
            time.sleep(0.1)  # the console's line follows the gRPC one
        url = next(re.search(r"(https://\S+)", line).group(1)  # type: ignore[union-attr]
                   for line in out if "web console on" in line)
        assert any("password:" in line for line in out)  # first start: the admin account, once
        ctx = ssl.create_default_context(cadata=cert.decode())
        with urllib.request.urlopen(url + "login", context=ctx, timeout=20) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        with urllib.request.urlopen(url + "metrics", context=ctx, timeout=20) as r:
            text = r.read().decode()
        assert 'nasname_rpc_requests_total{code="OK",rpc="Check"}' in text
        assert "nasname_gallery_records" in text and "nasname_uptime_seconds" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
