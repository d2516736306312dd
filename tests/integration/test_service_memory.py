"""Server memory under a burst of large requests (issue 18, item 8), measured on a real `nasname serve`
process: anonymous callers cannot make the server buffer their bodies, and after authenticated large
requests the resident memory returns to near its baseline.

Before the fix, 16 anonymous clients sending three 60 MiB enrolls each took a server from 193 to 1,514
MiB resident, 1,346 MiB still held afterwards.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from server._gen.nasname.v1 import nasname_pb2 as pb
from server.client import Client, image_sample
from tests.integration.test_service_serve import serving

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
CLIENTS = 16
BODY = 28 * MIB  # just under the default limit (three 10 MiB images + 1 MiB)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class PeakWatcher:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _burst(address: str, token: str | None) -> list[grpc.StatusCode]:
    body = [image_sample("face", b"\x00" * (BODY // 3)), image_sample("iris_left", b"\x00" * (BODY // 3)),
            image_sample("iris_right", b"\x00" * (BODY // 3))]

    def one(_: int) -> list[grpc.StatusCode]:
        codes = []
        with Client(address, token=token, plaintext=True, retries=0, timeout=60) as c:
            for _ in range(3):
                try:
                    c.stub.Enroll(pb.EnrollRequest(samples=body), metadata=c.metadata, timeout=60)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
        return codes

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [code for codes in pool.map(one, range(CLIENTS)) for code in codes]


def _settled(pid: int, seconds: float = 3.0) -> float:
    time.sleep(seconds)
    return _rss_mib(pid)


def test_memory_returns_to_baseline_after_a_burst(tmp_path: Path) -> None:
    with serving(tmp_path / "data", "--allow-plaintext") as (proc, address, out):
        admin = next(line.split("=", 1)[1].strip() for line in out if "NASNAME_TOKEN=" in line)
        with Client(address, token=admin, plaintext=True) as c:
            station = c.create_token("station", "station").secret
        base = _settled(proc.pid)  # the console and background threads have started by then
        with PeakWatcher(proc.pid) as anon:
            codes = _burst(address, None)
        # refused: no token (or, past the failed-authentication burst, rate-limited)
        assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
        after_anon = _settled(proc.pid)
        with PeakWatcher(proc.pid) as auth:
            codes = _burst(address, station)
        assert grpc.StatusCode.OK not in codes  # zero bytes are no image: refused, nothing written
        after_auth = _settled(proc.pid)
        print(f"\nserver RSS MiB: baseline {base:.0f}; anonymous burst peak {anon.peak:.0f}, after "
              f"{after_anon:.0f}; authenticated burst peak {auth.peak:.0f}, after {after_auth:.0f} "
              f"({CLIENTS} clients x 3 requests of {BODY // MIB} MiB each)")
        # Bodies were not buffered: each is 28 MiB and 48 were sent (buffered, the peak was 1,321 MiB
        # over the baseline). What a refused stream still holds is its HTTP/2 flow-control window,
        # which gRPC's bandwidth probing grows with the transfer rate: quiet runs peak 30-40 MiB over
        # the baseline, one full-suite run on the loaded 2-core machine 150 MiB (~9 MiB a stream).
        assert anon.peak - base < 300
        assert after_anon - base < 50
        assert after_auth - base < 100  # the authenticated bodies were read, and given back
