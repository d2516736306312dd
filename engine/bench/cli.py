"""``nasname bench``: identify latency/throughput scale curves against baselines, enroll throughput,
memory per template, snapshot open time, extraction time per stage; one Markdown report.

    nasname bench [--quick] [--sizes 1e3,1e4,1e5,1e6] [--iris-sizes ...] [--family face,iris] [--out DIR]
                  [--report docs/BENCHMARKS.md] [--images DIR]
    nasname bench --from-raw DIR/bench_raw.json --out DIR      # recompute figures and report only
    nasname bench ... --compare OLD/bench_figures.json         # add a what-changed table
    nasname bench --cluster --sizes 1e5                        # Ray-sharded: 1, 2, 4 local shards
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.bench.analysis import compute_figures
from engine.bench.compare import compare_rows, compare_section
from engine.bench.extras import default_image_dir, extraction_records, gallery_records
from engine.bench.grids import CLUSTER_FACE, GRIDS, Grid
from engine.bench.machine import machine_info
from engine.bench.report import markdown, plots, terminal_table
from engine.bench.runner import run_grid
from engine.cpus import set_threads
from engine.errors import InvalidInput, NasnameError

__all__ = ["main"]


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(float(s)) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --sizes {text!r}; expected e.g. 1e3,1e4,1e5") from None
    if not sizes or min(sizes) < 10:
        raise argparse.ArgumentTypeError("sizes must be >= 10")
    return sizes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasname bench", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small grid that runs in under a minute")
    p.add_argument("--sizes", type=_sizes, help="gallery sizes, comma separated (e.g. 1e3,1e4,1e5,1e6)")
    p.add_argument("--iris-sizes", type=_sizes, help="iris gallery sizes when they differ from --sizes")
    p.add_argument("--family", default="face,iris", help="face, iris or face,iris")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "nasname-bench",
                   help="output directory (default: <tmp>/nasname-bench, outside any source tree)")
    p.add_argument("--report", type=Path, help="also write the report here (docs/BENCHMARKS.md)")
    p.add_argument("--images", type=Path, help="folder of face_lfw.csv, iris_casia1.csv")
    p.add_argument("--from-raw", type=Path, help="bench_raw.json to re-report")
    p.add_argument("--accuracy", type=Path, action="append", default=[],
                   help="metrics.json of a 'nasname evaluate' run to include in the report (repeatable)")
    p.add_argument("--compare", type=Path, help="earlier bench_figures.json: what changed")
    p.add_argument("--budget", type=float, help="seconds per contender, size and phase (default: grid's)")
    p.add_argument("--queries", type=int, help="single-request queries per contender and size")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they draw only on a terminal anyway)")
    p.add_argument("--cluster", action="store_true",
                   help="face only: the Ray-sharded index with 1, 2 and 4 local shards against single-node "
                        "(needs the [cluster] extra)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for every contender (default: the CPUs available to the process)")
    return p


def _grid(args: argparse.Namespace) -> Grid:
    grid = GRIDS["quick" if args.quick else "full"]
    if args.budget is not None:
        grid = replace(grid, budget_s=args.budget)
    if args.queries is not None:
        grid = replace(grid, queries=args.queries)
    if args.sizes:
        grid = grid.with_sizes(args.sizes)
    if args.iris_sizes:
        grid = replace(grid, iris_sizes=args.iris_sizes)
    if args.cluster:
        grid = replace(grid, face=CLUSTER_FACE, extraction_images=0, gallery_sizes=())
    return grid


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = "nasname bench " + " ".join(shlex.quote(a) for a in argv)
    try:
        raw = _load_raw(args.from_raw) if args.from_raw else _measure(args, command)
    except NasnameError as exc:
        print(f"nasname bench: {exc}", file=sys.stderr)
        return 2
    if args.accuracy:
        raw["accuracy"] = [_accuracy_doc(p) for p in args.accuracy]
    args.out.mkdir(parents=True, exist_ok=True)
    figures = compute_figures(raw)
    (args.out / "bench_figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        (args.report.parent / "bench_figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    names = [p.name for p in plots(figures, args.out)]
    text = markdown(raw, figures, raw.get("command", command), names)
    if args.compare:
        old = _load_raw(args.compare)
        figures["compared_with"] = {"source": str(args.compare), "rows": compare_rows(old, figures)}
        text += "\n".join(compare_section(figures["compared_with"]["rows"], f"`{args.compare}`")) + "\n"
        (args.out / "bench_figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    (args.out / "BENCHMARKS.md").write_text(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        # plots are referenced relative to the report: copy them next to it
        for name in names:
            (args.report.parent / name).write_bytes((args.out / name).read_bytes())
        args.report.write_text(text)
    print(terminal_table(figures))
    print(f"wrote {args.out}/bench_raw.json, bench_figures.json, BENCHMARKS.md, plots")
    return 0


def _accuracy_doc(path: Path) -> dict[str, Any]:
    """The parts of an evaluate metrics.json that the report shows (no curves)."""
    doc = _load_raw(path)
    keep = ("inputs", "verification_accuracy", "definitions")
    return {**{k: doc[k] for k in keep if k in doc}, "per_modality": doc.get("per_modality", {}),
            "source": str(path)}


def _load_raw(path: Path) -> dict[str, Any]:
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    return raw


def _measure(args: argparse.Namespace, command: str) -> dict[str, Any]:
    grid = _grid(args)
    set_threads(args.threads)
    families = ("face",) if args.cluster else tuple(f for f in args.family.split(",") if f)
    if not set(families) <= {"face", "iris"}:
        raise InvalidInput(f"--family must name face and/or iris, got {args.family!r}")
    progress = not args.no_progress
    started = time.time()
    raw: dict[str, Any] = {
        "format": 1,
        "command": command,
        "out": str(args.out),
        "started_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "grid": {"name": grid.name, "face_sizes": grid.face_sizes, "iris_sizes": grid.iris_sizes,
                 "queries": grid.queries, "concurrent_queries": grid.concurrent_queries,
                 "callers": grid.callers, "k": grid.k, "budget_s": grid.budget_s,
                 "face_dim": grid.face_dim, "iris_nbytes": grid.iris_nbytes,
                 "iris_columns": grid.iris_columns, "reference": [list(r) for r in grid.reference]},
    }
    records = run_grid(grid, families, progress)
    if grid.extraction_images:
        records += extraction_records(args.images or default_image_dir(), grid.extraction_images, progress)
    if grid.gallery_sizes:
        records += gallery_records(grid.gallery_sizes, grid.face_dim, progress)
    raw["records"] = records
    raw["seconds"] = time.time() - started
    raw["load_average_at_end"] = machine_info()["load_average_at_start"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_raw.json").write_text(json.dumps(raw) + "\n")
    return raw
