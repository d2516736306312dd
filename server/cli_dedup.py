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
import os
import sys
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from server import output
from server.cli_client import UsageError
from server.client import Client

__all__ = ["add_dedup_command"]

ACTIONS = ("start", "watch", "status", "cancel", "resume", "result", "report")


def _run(c: Client, a: argparse.Namespace) -> Message | str:
    if a.action == "start":
        return c.start_dedup(partition=a.partition or "", target_fpir=a.target_fpir, fmr=a.fmr,
                             fast=a.fast, push_to_queue=a.push_to_queue)
    if not a.job:
        raise UsageError(f"dedup-remote {a.action} needs a job id")
    if a.action == "watch":
        return _watch(c, a.job)
    if a.action == "result":
        return c.get_dedup_result(a.job, limit=a.limit, offset=a.offset)
    if a.action == "report":
        if a.out is None:
            raise UsageError("dedup-remote report needs --out FILE")
        data = c.fetch_dedup_report(a.job, a.format)
        # the report names people's reference ids and may hold face thumbnails: owner-only, like
        # the local job's files
        fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(a.out, 0o600)
        return f"wrote {len(data)} bytes to {a.out}"
    method = {"status": c.get_dedup, "cancel": c.cancel_dedup, "resume": c.resume_dedup}[a.action]
    return method(a.job)


def _watch(c: Client, job: str) -> Message | str:
    """Progress on stderr: one redrawn line on a terminal; elsewhere a line per state or stage change."""
    last: Message | str = "no progress received"
    tty = sys.stderr.isatty()
    seen = ("", "")
    for p in c.watch_dedup(job):
        if tty:
            print("\r" + output.progress_text(p).splitlines()[0], end="", file=sys.stderr, flush=True)
        elif (p.state, p.stage) != seen:
            print(output.progress_text(p), file=sys.stderr, flush=True)
        seen, last = (p.state, p.stage), p
    if tty:
        print(file=sys.stderr)
    return last


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
    p.add_argument("--offset", type=int, default=0, help="result: clusters to skip (paging; default 0)")
    p.add_argument("--format", default="json", choices=("json", "csv", "pairs_csv", "html"),
                   help="report: file format (default json)")
    p.add_argument("--out", type=Path, help="report: file to write")
