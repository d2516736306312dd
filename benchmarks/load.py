"""Load generator: N concurrent client *processes* against a running nasname server, for a fixed time.

    python benchmarks/load.py --token $NASNAME_TOKEN --clients 32 --duration 30 --op identify
    python benchmarks/load.py --token $T --clients 32 --server-pid PID     # + server CPU-ms per call
    python benchmarks/load.py --token $T --op insert --clients 4 --count 100000      # populate a gallery
    python benchmarks/load.py --token $T --op enroll --face a.jpg --iris-left l.png --iris-right r.png

Loopback addresses only (this is a benchmark, not a weapon). Probes are random unit face templates of
``--dim`` dimensions made by ``--model`` (default: the face model reported by Stats, which needs an
investigator or admin token), or the given images. Prints one JSON object: throughput (successful
calls per second), p50/p90/p99 latency in milliseconds (successful calls, end to end through gRPC), and
the error count by status code. Warm-up calls (the first ``--warmup`` seconds) are not counted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.cpus import available_cpus  # noqa: E402
from engine.types import FaceTemplate, ModelRef  # noqa: E402
from server.client import Client, image_sample, template_sample  # noqa: E402
from server.config import is_loopback, split_address  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client(args: argparse.Namespace) -> Client:
    return Client(args.address, token=args.token, plaintext=args.plaintext, ca=args.ca, timeout=args.timeout,
                  retries=0)


def _face_model(args: argparse.Namespace) -> ModelRef:
    if args.model:
        model_id, _, version = args.model.partition("@")
        return ModelRef(model_id, version)
    with _client(args) as c:
        text = c.stats().models.get("face", "")
    if "@" not in text:
        raise SystemExit("cannot learn the face model from Stats; pass --model id@version")
    model_id, _, version = text.partition("@")
    return ModelRef(model_id, version)


def _worker(k: int, args: argparse.Namespace, model: ModelRef | None, ready: Any, go: Any, times: Any,
            out: Any) -> None:
    import grpc

    rng = np.random.default_rng(1000 + k)
    images = [(m, Path(p).read_bytes()) for m, p in (("face", args.face), ("iris_left", args.iris_left),
                                                        ("iris_right", args.iris_right)) if p]
    lat: list[float] = []
    errors: dict[str, int] = {}
    done = 0
    with _client(args) as c:
        c.health()  # connected before the clock starts
        ready.put(k)
        go.wait()
        warm_until, stop_at = times[0], times[1]
        i = 0
        while time.time() < stop_at and (args.count == 0 or done < args.count // args.clients):
            if images:
                samples = [image_sample(m, b) for m, b in images]
            else:
                assert model is not None
                v = rng.normal(size=args.dim).astype(np.float32)
                samples = [template_sample("face", FaceTemplate(v / np.linalg.norm(v), model))]
            t0 = time.perf_counter()
            try:
                if args.op == "identify":
                    c.identify(samples, max_results=args.max_results)
                elif args.op == "enroll":
                    c.enroll(samples)
                else:
                    c.insert(samples, reference_id=f"{args.prefix}{k}-{i}")
            except grpc.RpcError as exc:
                if time.time() >= warm_until:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
            else:
                done += 1
                if time.time() >= warm_until:
                    lat.append(time.perf_counter() - t0)
            i += 1
    out.put((lat, errors))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=os.environ.get("NASNAME_ADDRESS", "127.0.0.1:50051"))
    p.add_argument("--token", default=os.environ.get("NASNAME_TOKEN"))
    p.add_argument("--plaintext", action="store_true")
    p.add_argument("--ca", type=Path, help="server certificate to trust (TLS)")
    p.add_argument("--op", choices=("identify", "enroll", "insert"), default="identify")
    p.add_argument("--clients", type=int, default=32, help="client processes")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of measured load")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of uncounted load first")
    p.add_argument("--count", type=int, default=0, help="stop after this many successful calls in total")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--model", help="face model id@version of the templates (default: from Stats)")
    p.add_argument("--max-results", type=int, default=10)
    p.add_argument("--prefix", default=f"L{int(time.time())}-", help="reference id prefix for --op insert")
    p.add_argument("--face", type=Path)
    p.add_argument("--iris-left", type=Path)
    p.add_argument("--iris-right", type=Path)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    p.add_argument("--server-pid", type=int,
                   help="the server's process id: also report its CPU-ms per successful call over the "
                        "measured window (on a shared 2-core box the clients' own CPU use is visible)")
    args = p.parse_args(argv)
    host, _ = split_address(args.address)
    if not is_loopback(host):
        p.error("load tests run against loopback addresses only")
    if args.ca is not None:
        args.ca = args.ca.read_bytes()
    model = None if (args.face or args.iris_left or args.iris_right) else _face_model(args)
    ctx = mp.get_context("spawn")
    out, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    times = ctx.Array("d", 2)  # warm-up end, stop; set once every process is connected
    procs = [ctx.Process(target=_worker, args=(k, args, model, ready, go, times, out))
             for k in range(args.clients)]
    for proc in procs:
        proc.start()
    for _ in procs:  # process start-up (imports, connection) is not part of the measurement
        ready.get()
    warm_until = time.time() + args.warmup
    times[0], times[1] = warm_until, warm_until + args.duration
    go.set()
    cpu0 = None
    if args.server_pid:
        time.sleep(max(0.0, warm_until - time.time()))
        cpu0 = _cpu_seconds(args.server_pid)
    results = [out.get() for _ in procs]
    cpu1 = None if cpu0 is None else _cpu_seconds(args.server_pid)
    for proc in procs:
        proc.join()
    measured = min(args.duration, max(1e-9, time.time() - warm_until))
    lat = np.array([x for r in results for x in r[0]]) * 1000.0
    errors: dict[str, int] = {}
    for _, e in results:
        for code, n in e.items():
            errors[code] = errors.get(code, 0) + n
    report = {
        "op": args.op, "clients": args.clients, "seconds": round(measured, 2), "calls": int(lat.size),
        "throughput_per_s": round(lat.size / measured, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p90_ms": round(float(np.percentile(lat, 90)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "errors": sum(errors.values()), "errors_by_code": errors,
        "cpus": os.cpu_count(),
        "cpus_available": available_cpus(),
    }
    if cpu0 is not None and cpu1 is not None and lat.size:
        report["server_cpu_ms_per_call"] = round(1000.0 * (cpu1 - cpu0) / lat.size, 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
