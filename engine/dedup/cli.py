"""``nasname dedup``: run, resume, watch and cancel de-duplication jobs; re-render reports; queue.

    nasname dedup run [--data-dir D] [--partition P] [--against-manifest CSV [--batch-folder DIR] |
                      --against-gallery DIR] [--target-fpir X | --fmr F] [--mode exact|fast] --out JOB
    nasname dedup resume JOB          # after a kill / Ctrl-C / cancel: continues from the checkpoint
    nasname dedup status JOB          # JSON progress snapshot
    nasname dedup cancel JOB          # the running job stops at its next block (resumable)
    nasname dedup report JOB [--thumbnails]   # re-render report.html (thumbnails: kept images only)
    nasname dedup push JOB --actor NAME       # clusters -> adjudication queue (N:N: not while a server runs)
    nasname dedup scale --kind face|iris --n N [--mode exact|fast]   # synthetic timing (see scale.py)

``JOB`` is the job directory given as ``--out``. Progress bar and ETA on stderr (tqdm); results on
stdout as JSON. Exit status: 0 done, 1 error, 3 cancelled, 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.datadir import DataDir
from engine.dedup.jobs import DedupJob
from engine.dedup.queue import PushResult
from engine.dedup.sources import JobSpec
from engine.errors import NasnameError
from engine.jobs import JobCancelled, Progress

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nasname dedup", description="batch de-duplication jobs (N:N, batch vs gallery)"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="start a job")
    r.add_argument("--data-dir", type=Path,
                   help="the gallery's data directory (default $NASNAME_DATA_DIR, else the configured one)")
    r.add_argument("--config", type=Path, help="engine TOML file (key file location; default "
                   "$NASNAME_CONFIG)")
    r.add_argument("--partition", help="restrict the gallery to one partition")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--against-manifest", type=Path, help="CSV reference_id,modality,path[,attributes...]")
    src.add_argument("--against-gallery", type=Path, help="another nasname data directory")
    r.add_argument("--batch-folder", type=Path, help="folder of the manifest's images (default: the CSV's)")
    th = r.add_mutually_exclusive_group()
    th.add_argument(
        "--target-fpir", type=float, help="target FPIR at the compared gallery size (default 0.003)"
    )
    th.add_argument("--fmr", type=float, help="explicit per-comparison false match rate")
    r.add_argument("--mode", choices=("exact", "fast"), default="exact",
                   help="exact: every pair above the threshold; fast: approximate candidates (default exact)")
    r.add_argument(
        "--recall-sample",
        type=float,
        default=0.01,
        help="fast mode: share of probe rows also scored exactly to measure pair recall",
    )
    r.add_argument("--out", required=True, type=Path, help="job directory (created)")
    r.add_argument(
        "--thumbnails",
        action="store_true",
        help="face thumbnails in report.html (only if the gallery keeps images; "
        "for roles allowed to see them)",
    )
    r.add_argument("--push-to-queue", action="store_true", help="queue clusters for adjudication")
    r.add_argument("--actor", default="dedup-cli", help="actor recorded in the audit trail when pushing")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="compute pair blocks as Ray tasks (engine.dedup.distributed): on the cluster at "
                        "ADDRESS, or on a local Ray cluster when none is given (the [cluster] extra)")
    for name, text in (
        ("resume", "continue an interrupted or cancelled job"),
        ("status", "progress snapshot"),
        ("cancel", "ask a running job to stop"),
        ("report", "re-render report.html"),
        ("push", "queue a job's clusters for adjudication (batch records; N:N: all but the oldest member)"),
    ):
        q = sub.add_parser(name, help=text)
        q.add_argument("job", type=Path, help="job directory")
        if name in ("resume", "report"):
            q.add_argument("--thumbnails", action="store_true",
                           help="face thumbnails in report.html (kept images only)")
        if name == "resume":
            q.add_argument("--quiet", action="store_true", help="no progress bar")
            q.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                           help="compute the remaining pair blocks as Ray tasks (see run --ray)")
        if name in ("resume", "report", "push"):
            q.add_argument("--config", type=Path, help="engine TOML file (key file location)")
        if name == "push":
            q.add_argument("--actor", required=True, help="who queues (recorded in the audit trail)")
            q.add_argument(
                "--partition", help="partition of the queued records (default: the job's or 'default')"
            )
    s = sub.add_parser("scale", help="synthetic N:N timing of the pair kernels (no gallery needed)")
    from engine.dedup.scale import add_arguments

    add_arguments(s)
    return p


def _blocks(args: argparse.Namespace) -> Any:
    """``--ray``: pair blocks as Ray tasks; None: in this process."""
    address = getattr(args, "ray", None)
    if address is None:
        return None
    from engine.cluster.backend import connect
    from engine.dedup.distributed import RayBlocks

    connect(address)
    return RayBlocks()


class _Bar:
    """tqdm bar over comparison units, with ETA (stderr)."""

    def __init__(self, quiet: bool) -> None:
        self.bar: Any = None
        self.quiet = quiet

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=max(p.total, 1),
                unit="pair",
                unit_scale=True,
                file=sys.stderr,
                desc=f"dedup {p.job_id}",
                initial=min(p.done, max(p.total, 1)),
                disable=None,  # draw only on a terminal (no carriage-return flood in logs)
            )
        self.bar.update(max(0, p.done - self.bar.n))
        self.bar.set_postfix(stage=p.stage, candidates=p.candidates, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _open(data_dir: Path | str, config_file: Path | None) -> DataDir:
    """The gallery's data directory, shared (a server may be serving it: SQLite WAL lets this process
    read meanwhile), with the key its configuration names."""
    from engine.config import EngineConfig

    return DataDir.from_config(EngineConfig.load(config_file, data_dir=Path(data_dir)), exclusive=False)


def _sources(spec: JobSpec, config_file: Path | None) -> tuple[DataDir, DataDir | None]:
    source = _open(spec.data_dir, config_file)
    try:
        other = DataDir.open(Path(spec.against_gallery), exclusive=False) if spec.against_gallery else None
    except BaseException:
        source.close()
        raise
    return source, other


def _run(job: DedupJob, quiet: bool, thumbnails: bool, args: argparse.Namespace) -> int:
    bar = _Bar(quiet)
    try:
        summary = job.resume(on_progress=bar) if args.command == "resume" else job.run(on_progress=bar)
    except JobCancelled as exc:
        bar.close()
        print(f"{exc}; resume with: nasname dedup resume {job.dir}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted; resume with: nasname dedup resume {job.dir}", file=sys.stderr)
        return 130
    bar.close()
    if thumbnails:
        _render(job, True)
    if getattr(args, "push_to_queue", False):
        pushed = _push(job, args.actor, None, args.config)
        summary["queued"] = len(pushed.queued)
        summary["queue_skipped"] = pushed.skipped
    print(
        json.dumps(
            {
                "job": str(job.dir),
                **{
                    k: summary.get(k)
                    for k in (
                        "job_id",
                        "records",
                        "pairs",
                        "clusters",
                        "chained_clusters",
                        "pair_recall_sample",
                        "target_not_met",
                    )
                },
                "report": str(job.dir / "report.html"),
            },
            indent=1,
        )
    )
    return 0


def _render(job: DedupJob, thumbnails: bool) -> None:
    from engine.dedup.html import thumbnail_from_store
    from engine.dedup.report import render_html

    if not thumbnails:
        render_html(job.dir)
        return
    store = job.source.store
    if not store.keep_images:
        print("the gallery keeps no images: report without thumbnails", file=sys.stderr)
    render_html(job.dir, thumbnail_of=thumbnail_from_store(store))


def _push(job: DedupJob, actor: str, partition: str | None, config_file: Path | None) -> PushResult:
    """Batch jobs insert pending records through the job's store; N:N jobs move records to pending
    through the gallery, opened here exclusively (refused while a server serves it: push through the
    server then)."""
    from engine.dedup.queue import push_clusters

    if job.spec.kind != "nn":
        return push_clusters(job, actor=actor, partition=partition)
    from engine.config import EngineConfig
    from engine.gallery import Gallery

    job.source.close()  # the shared handle; the gallery below takes the directory exclusively
    with Gallery.open(EngineConfig.load(config_file, data_dir=Path(job.spec.data_dir))) as gallery:
        return push_clusters(job, actor=actor, partition=partition, gallery=gallery)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "run":
            if args.data_dir is None:
                from engine.config import EngineConfig

                # honours NASNAME_DATA_DIR / NASNAME_CONFIG
                args.data_dir = EngineConfig.load(args.config).data_dir
            spec = JobSpec(
                data_dir=str(args.data_dir),
                partition=args.partition,
                against_manifest=str(args.against_manifest) if args.against_manifest else None,
                batch_folder=str(args.batch_folder) if args.batch_folder else None,
                against_gallery=str(args.against_gallery) if args.against_gallery else None,
                target_fpir=args.target_fpir
                if args.target_fpir is not None
                else (None if args.fmr else 0.003),
                fmr=args.fmr,
                mode=args.mode,
                recall_sample=args.recall_sample,
            )
            source, other = _sources(spec, args.config)
            try:
                job = DedupJob.create(spec, args.out, source=source, other=other, checkpoint_every_s=2.0,
                                      blocks=_blocks(args))
                print(f"job {job.job_id} in {job.dir}", file=sys.stderr)
                return _run(job, args.quiet, args.thumbnails, args)
            finally:
                _close(source, other)
        if args.command == "scale":
            from engine.dedup.scale import run as run_scale

            print(json.dumps(run_scale(args), indent=1))
            return 0
        job = DedupJob.open(args.job, checkpoint_every_s=2.0)
        if args.command in ("resume", "report", "push"):
            source, other = _sources(job.spec, args.config)
            try:
                job = DedupJob.open(args.job, source=source, other=other, checkpoint_every_s=2.0,
                                    blocks=_blocks(args) if args.command == "resume" else None)
                return _with_sources(job, args)
            finally:
                _close(source, other)
        if args.command == "status":
            print(json.dumps(job.progress().to_json(), indent=1))
            return 0
        if args.command == "cancel":
            job.cancel()
            print(f"cancel requested for job {job.job_id}", file=sys.stderr)
            return 0
    except NasnameError as exc:
        print(f"error: {exc} [{exc.reason}]", file=sys.stderr)
        return 1
    return 2


def _with_sources(job: DedupJob, args: argparse.Namespace) -> int:
    if args.command == "resume":
        return _run(job, args.quiet, args.thumbnails, args)
    if args.command == "report":
        _render(job, args.thumbnails)
        print(str(job.dir / "report.html"))
        return 0
    pushed = _push(job, args.actor, args.partition, args.config)
    print(json.dumps({"queued": pushed.queued, "skipped": pushed.skipped}, indent=1))
    return 0


def _close(*dirs: DataDir | None) -> None:
    for d in dirs:
        if d is not None:
            d.close()
