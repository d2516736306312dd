"""Transfer between sites: export of N records (face + two irises) from one site, import into another
that already holds M records, each incoming record de-duplicated 1:N with the engine's fused rule
(issue target: N = M = 100k in <= 2 min).

Through the product: real galleries (SQLite store, encrypted templates, exact indexes, the shipped
coarse default calibrations for the synthetic models), ``engine.transfer.export.export_to_file`` into
a real signed, encrypted packet, ``engine.transfer.importer.import_packet`` (checks, then the
resumable import job: blocks of ``--block`` records through ``Engine.enroll_many``, one batched search
per modality and one transaction per block). ``--baseline`` also imports the same packet one record
at a time (block 1: a search and a transaction per record) into a twin of the receiving site, in the
same run. 1% of the exported records are planted mates of people the receiving site already holds;
the run checks that exactly those land in adjudication. Building the galleries is set-up, not
measured.

    .venv/bin/pytest benchmarks/bench_transfer.py                     # CI size (2k -> 2k, with baseline)
    .venv/bin/python -m benchmarks.bench_transfer --records 10000 --gallery 10000 --baseline

Figures, and why the 100k -> 100k target is not met (the exact iris scan, N x M x 2 eyes, is the
floor; blocks remove only the per-record costs): docs/BENCHMARKS.md, "Transfer between sites".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import EngineConfig
from engine.engine import Engine
from engine.fusion import Fusion
from engine.store import NewRecord
from engine.transfer.export import export_to_file
from engine.transfer.importer import BLOCK, import_packet
from engine.transfer.site import load_site, trust
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template

FACE = ModelRef("bench_face", "1")
IRIS = ModelRef("bench_iris", "1")
DIM, NBYTES, COLUMNS = 128, 256, 256
MODELS = {Modality.FACE: FACE, Modality.IRIS_LEFT: IRIS, Modality.IRIS_RIGHT: IRIS}
_MASK = np.full(NBYTES, 255, dtype=np.uint8)


def person(rng: np.random.Generator) -> dict[Modality, Template]:
    v = rng.standard_normal(DIM).astype(np.float32)
    return {
        Modality.FACE: FaceTemplate(v / np.linalg.norm(v), FACE),
        **{
            m: IrisTemplate(rng.integers(0, 256, NBYTES, dtype=np.uint8), _MASK, COLUMNS, IRIS)
            for m in (Modality.IRIS_LEFT, Modality.IRIS_RIGHT)
        },
    }


def mate_of(t: dict[Modality, Template], rng: np.random.Generator) -> dict[Modality, Template]:
    """Another capture of the same person: face cosine ~0.8, irises with ~10% of bits flipped."""
    out: dict[Modality, Template] = {}
    for m, x in t.items():
        if isinstance(x, FaceTemplate):
            w = x.vector + rng.normal(scale=0.055, size=DIM).astype(np.float32)
            out[m] = FaceTemplate(w / np.linalg.norm(w), FACE)
        else:
            assert isinstance(x, IrisTemplate)
            flips = np.packbits(rng.random(NBYTES * 8) < 0.10)
            out[m] = IrisTemplate(x.code ^ flips, _MASK, COLUMNS, IRIS)
    return out


def _open(root: Path, name: str) -> Engine:
    cfg = EngineConfig(data_dir=root / name, snapshot_every=0, site_id=name)
    return Engine.open(cfg, fusion=Fusion.for_models(MODELS))


def run(
    records: int,
    gallery: int,
    work: Path,
    *,
    planted_share: float = 0.01,
    seed: int = 5,
    block: int = BLOCK,
    baseline: bool = False,
) -> dict[str, Any]:
    """Export ``records`` from camp-a, import them into camp-b (``gallery`` records) in blocks of
    ``block``; with ``baseline``, the same packet also into camp-b's twin one record at a time (block 1:
    a search and a transaction per record, as the import was before blocks), in the same run."""
    rng = np.random.default_rng(seed)
    names = ["camp-a", "camp-b"] + (["camp-b1"] if baseline else [])
    sites = {n: _open(work, n) for n in names}
    a = sites["camp-a"]
    try:
        for n in names[1:]:
            trust(a.datadir, load_site(sites[n].datadir).public, actor="bench")
            trust(sites[n].datadir, load_site(a.datadir).public, actor="bench")
        t0 = time.perf_counter()
        held, stored = [], []
        for i in range(gallery):
            t = person(rng)
            if i < records * planted_share:
                held.append(t)
            stored.append(NewRecord(t, ref_id=f"B{i}", partition="camp-b"))
        planted, sent = set(), []
        for i in range(records):
            if i < len(held):
                t, ref = mate_of(held[i], rng), f"A-dup-{i}"
                planted.add(ref)
            else:
                t, ref = person(rng), f"A{i}"
            sent.append(NewRecord(t, ref_id=ref, partition="camp-a", attributes={"household": f"HH{i}"}))
        fill = [(sites[n], stored) for n in names[1:]] + [(a, sent)]
        for engine, rows in fill:  # set-up: stored in chunks, no de-duplication
            for lo in range(0, len(rows), 5000):
                engine.gallery.insert_many(rows[lo : lo + 5000], actor="bench")
        setup_s = time.perf_counter() - t0
        print(f"  set-up {setup_s:.1f} s", file=sys.stderr)

        def imported(name: str, size: int) -> dict[str, Any]:
            t1 = time.perf_counter()
            exported = export_to_file(a.datadir, name, work / f"{name}.nastx")
            export_s = time.perf_counter() - t1
            t2 = time.perf_counter()
            summary = import_packet(sites[name], work / f"{name}.nastx", block=size)
            import_s = time.perf_counter() - t2
            with sites[name].datadir.store.db.read() as conn:
                pending = {
                    str(r) for (r,) in conn.execute("SELECT ref_id FROM records WHERE status = 'pending'")
                }
            return {
                "block": size,
                "export_s": round(export_s, 2),
                "import_s": round(import_s, 2),
                "total_s": round(export_s + import_s, 2),
                "import_per_record_ms": round(import_s / records * 1000, 2),
                "packet_bytes": exported.bytes,
                "summary": summary.text(),
                "planted_all_in_adjudication": planted <= pending,
                "others_in_adjudication": len(pending - planted),
            }

        rec: dict[str, Any] = {"records": records, "gallery": gallery, "planted": len(planted)}
        rec |= imported("camp-b", block)
        if baseline:
            one = imported("camp-b1", 1)
            rec["baseline_one_by_one"] = one
            rec["speed_up"] = round(one["import_s"] / max(rec["import_s"], 1e-9), 1)
        rec["setup_s"] = round(setup_s, 1)
        rec["load_average"] = [round(x, 2) for x in os.getloadavg()]
        return rec
    finally:
        for engine in sites.values():
            engine.close()


def test_transfer_export_import(benchmark: Any, tmp_path: Path) -> None:
    rec = run(2000, 2000, tmp_path, baseline=True)
    benchmark.extra_info.update(rec)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    for r in (rec, rec["baseline_one_by_one"]):
        assert r["planted_all_in_adjudication"] and r["others_in_adjudication"] == 0
    assert rec["summary"] == rec["baseline_one_by_one"]["summary"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_transfer", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--records", type=int, default=10_000, help="records exported (default 10k)")
    p.add_argument("--gallery", type=int, default=10_000, help="records already at the receiving site")
    p.add_argument("--work", type=Path, help="folder for the galleries (default: a temporary one)")
    p.add_argument("--block", type=int, default=BLOCK, help=f"records per import block (default {BLOCK})")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also import one record at a time into a twin of the receiving site (slow)",
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        rec = run(args.records, args.gallery, Path(tmp), block=args.block, baseline=args.baseline)
    print(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
