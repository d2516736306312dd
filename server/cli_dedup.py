"""``nasname dedup-remote ACTION``: de-duplication jobs on a running server (``server.client``).

    nasname dedup-remote start [--partition P] [--target-fpir X | --fmr X] [--fast] [--push-to-queue]
    nasname dedup-remote watch|status|cancel|resume JOB
    nasname dedup-remote result JOB [--limit N] [--offset N]
    nasname dedup-remote report JOB --format json|csv|pairs_csv|html --out FILE

Only N:N over the server's own gallery: a batch from a folder + manifest, or against another data
directory, needs files on the machine and stays with the local ``nasname dedup`` command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from server.client import Client

__all__ = ["add_dedup_command"]

ACTIONS = ("start", "watch", "status", "cancel", "resume", "result", "report")


def _run(c: Client, a: argparse.Namespace) -> Message | str:
    if a.action == "start":
        return c.start_dedup(partition=a.partition or "", target_fpir=a.target_fpir, fmr=a.fmr,
                             fast=a.fast, push_to_queue=a.push_to_queue)
    if not a.job:
        raise SystemExit(f"dedup-remote {a.action} needs a job id")
    if a.action == "watch":
        last: Message | str = "no progress received"
        for p in c.watch_dedup(a.job):
            print(json.dumps(json_format.MessageToDict(p, preserving_proto_field_name=True)),
                  file=sys.stderr, flush=True)
            last = p
        return last
    if a.action == "result":
        return c.get_dedup_result(a.job, limit=a.limit, offset=a.offset)
    if a.action == "report":
        if a.out is None:
            raise SystemExit("dedup-remote report needs --out FILE")
        data = c.fetch_dedup_report(a.job, a.format)
        a.out.write_bytes(data)
        return f"wrote {len(data)} bytes to {a.out}"
    method = {"status": c.get_dedup, "cancel": c.cancel_dedup, "resume": c.resume_dedup}[a.action]
    return method(a.job)


def add_dedup_command(command: Any) -> None:
    """``command(name, help, run)`` is ``add_client_commands``'s registrar (connection options added)."""
    p: argparse.ArgumentParser = command(
        "dedup-remote", "de-duplication jobs (N:N of the gallery) on a running server", _run)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("job", nargs="?", help="job id (all actions but start)")
    p.add_argument("--partition", help="start: only this partition (default: the whole gallery)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-fpir", type=float, help="start: target FPIR at the gallery size (default 0.003)")
    g.add_argument("--fmr", type=float, help="start: explicit per-comparison false match rate")
    p.add_argument("--fast", action="store_true", help="start: approximate candidates (recall is measured)")
    p.add_argument("--push-to-queue", action="store_true",
                   help="start: queue every cluster member but the oldest for adjudication when done")
    p.add_argument("--limit", type=int, default=0, help="result: clusters per page (default 100)")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--format", default="json", choices=("json", "csv", "pairs_csv", "html"))
    p.add_argument("--out", type=Path, help="report: file to write")
