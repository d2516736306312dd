"""``nasname dedup``: one command group for de-duplication jobs, on this machine or on a server.

    nasname dedup run|resume|status|cancel|report|push|scale ...   # local: a job directory (engine.dedup.cli)
    nasname dedup start [--partition P] [--target-fpir X | --fmr X] [--fast] [--push-to-queue]   # server
    nasname dedup watch|result JOB                                                              # server
    nasname dedup status|cancel|resume JOB --remote                                             # server
    nasname dedup report JOB --remote --format json|csv|pairs_csv|html --out FILE               # server

``start``, ``watch`` and ``result`` only exist on a server; the other actions act on a local job
directory unless ``--remote`` is given (then JOB is the server's job id). On a server only N:N over its
own gallery runs: a batch from a folder + manifest, or against another data directory, needs files on
the machine and stays local.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from google.protobuf.message import Message

from server import output
from server.cli_client import UsageError, add_connection_options, run_client
from server.client import Client

__all__ = ["main"]

REMOTE_ONLY = ("start", "watch", "result")
ACTIONS = (*REMOTE_ONLY, "status", "cancel", "resume", "report")
LOCAL_MODULE = "engine.dedup.cli"


def _run(c: Client, a: argparse.Namespace) -> Message | str:
    if a.action == "start":
        return c.start_dedup(partition=a.partition or "", target_fpir=a.target_fpir, fmr=a.fmr,
                             fast=a.fast, push_to_queue=a.push_to_queue)
    if not a.job:
        raise UsageError(f"dedup {a.action} needs a job id")
    if a.action == "watch":
        return _watch(c, a.job)
    if a.action == "result":
        return c.get_dedup_result(a.job, limit=a.limit, offset=a.offset)
    if a.action == "report":
        if a.out is None:
            raise UsageError("dedup report --remote needs --out FILE")
        data = c.fetch_dedup_report(a.job, a.format)
        # the report names people's reference ids and may hold face thumbnails: owner-only, like
        # the local job's files
        fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(a.out, 0o600)
        return f"wrote {len(data):,} bytes to {a.out}"
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


def _remote_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nasname dedup", description="de-duplication jobs (N:N of the gallery) on a running server",
        epilog=output.EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=ACTIONS, help="what to do with the server's job")
    p.add_argument("job", nargs="?", help="job id (all actions but start)")
    p.add_argument("--remote", action="store_true",
                   help="act on a server's job (implied by start, watch and result)")
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
    p.add_argument("--out", type=Path, help="report: file to write (mode 0600)")
    add_connection_options(p)
    return p


def main(argv: Sequence[str], local_main: Callable[[list[str]], int]) -> int:
    """Route to the server (``--remote`` or a server-only action) or to the local job tool."""
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print((__doc__ or "").strip().replace("``", "`"))
        print("\nlocal job directory actions:")
        with contextlib.suppress(SystemExit):  # argparse's --help exits
            local_main(["--help"])
        print("\nserver actions: `nasname dedup start --help` (start, watch, result; others with --remote)")
        return output.EXIT_OK
    if "--remote" in argv or argv[0] in REMOTE_ONLY:
        args = _remote_parser().parse_args(argv)
        args.command = "dedup"
        return run_client(_run, args)
    return local_main(argv)
