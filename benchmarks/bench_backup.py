"""Online backup while enrollments continue (issue target: 1M face templates + 200k iris pairs backed up
in <= 60 s, enroll p99 during the backup <= 2x its baseline).

Through the product: a real gallery (SQLite store, encrypted templates, exact indexes, snapshot),
``engine.ops.backup.create_backup`` into a real archive, and enrollments through ``Gallery.insert``
(durable commit + index update) from writer threads. Enroll latency is measured over a baseline
window of the same length right before the backup, then during it; medians and p99 are reported side
by side, for a backup with a fresh index snapshot (writers wait while indexes are saved) and one
that takes the latest snapshot as it is.

    .venv/bin/pytest benchmarks/bench_backup.py                 # CI size (20k faces + 4k iris pairs)
    .venv/bin/python -m benchmarks.bench_backup --faces 1000000 --iris-pairs 200000

The gallery is built in bulk (one transaction per 20k records, through the store's connection and
codec), which is set-up, not what is measured.

Measured 2026-12-04 on the shared 2-core machine (other engineers' jobs running; medians of one run
each, so read them as indications), full size, 2 enrolling threads:

    latest snapshot: backup 53.7 s, source 1.86 GB -> archive 1.41 GB; enroll p99 29.5 -> 65.6 ms (2.23x)
    fresh snapshot:  backup 53.2 s, source 1.89 GB -> archive 1.44 GB; enroll p99 35.4 -> 58.6 ms (1.66x)

The 60 s target is met; the p99 ratio sits around the 2x target (one run above, one below).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import EngineConfig
from engine.crypto import KeyRing
from engine.datadir import DataDir
from engine.gallery import Gallery, GalleryConfig, default_index_factory, load_index
from engine.ops.backup import create_backup
from engine.store import audit, codec
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef

FACE = ModelRef("bench_face", "1")
IRIS = ModelRef("bench_iris", "1")
DIM, NBYTES, COLUMNS = 128, 256, 256
_BATCH = 20_000


def _faces(rng: np.random.Generator, n: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def build(root: Path, ring: KeyRing, faces: int, iris_pairs: int, *, seed: int = 7) -> None:
    """A gallery of ``faces`` face-only records then ``iris_pairs`` records with both irises."""
    rng = np.random.default_rng(seed)
    with DataDir.open(root, keyring=ring) as d:
        store, ring = d.store, d.keyring
        for m, model in ((Modality.FACE, FACE), (Modality.IRIS_LEFT, IRIS), (Modality.IRIS_RIGHT, IRIS)):
            store.set_model(m, model)
        mask = np.full(NBYTES, 255, dtype=np.uint8)
        done = 0
        total = faces + iris_pairs
        while done < total:
            n = min(_BATCH, total - done)
            vectors = _faces(rng, n) if done < faces else None
            with store.db.write() as conn:
                now = time.time()
                for j in range(n):
                    i = done + j
                    cur = conn.execute("INSERT INTO records (ref_id, partition, status, attributes, "
                                       "created, updated) VALUES (?, 'camp', 'active', '{}', ?, ?)",
                                       (f"B{i}", now, now))
                    label = int(cur.lastrowid or 0)
                    templates: dict[Modality, Any] = {}
                    if vectors is not None:
                        templates[Modality.FACE] = FaceTemplate(vectors[j], FACE)
                    else:
                        for m in (Modality.IRIS_LEFT, Modality.IRIS_RIGHT):
                            code = rng.integers(0, 256, NBYTES, dtype=np.uint8)
                            templates[m] = IrisTemplate(code, mask, COLUMNS, IRIS)
                    for m, t in templates.items():
                        conn.execute("INSERT INTO templates (record_id, modality, model_id, model_version, "
                                     "key_id, blob) VALUES (?, ?, ?, ?, ?, ?)",
                                     (label, m.value, t.model.model_id, t.model.version, ring.key_id,
                                      codec.seal_template(ring, label, m, t)))
                        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                                     (f"shape.{m.value}", codec.shape_of(m, t)))
                    conn.execute("INSERT INTO changes (record_id, op, time) VALUES (?, 'upsert', ?)",
                                 (label, now))
                audit.append(conn, "bench", "bulk_load", None, {"records": n})
            done += n
            print(f"  built {done:,}/{total:,}", file=sys.stderr, end="\r")
    print(file=sys.stderr)


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def measure(root: Path, ring: KeyRing, out: Path, *, fresh_snapshot: bool, writers: int = 2,
            seed: int = 11) -> dict[str, Any]:
    """Open the gallery, enroll from ``writers`` threads for a baseline window, back up while they go
    on, and report backup time and size and enroll latency before / during."""
    gallery = Gallery(root, ring, default_index_factory(), load_index,
                      config=GalleryConfig(snapshot_every=0, snapshot_interval_s=0))
    try:
        gallery.snapshot()
        phase = {"name": "warm"}
        lat: dict[str, list[float]] = {"base": [], "backup": []}
        stop = threading.Event()
        lock = threading.Lock()

        def enroll(w: int) -> None:
            rng = np.random.default_rng(seed + w)
            i = 0
            while not stop.is_set():
                v = _faces(rng, 1)[0]
                t = time.perf_counter()
                gallery.insert({Modality.FACE: FaceTemplate(v, FACE)}, ref_id=f"W{seed}-{w}-{i}")
                dt = time.perf_counter() - t
                with lock:
                    if phase["name"] in lat:
                        lat[phase["name"]].append(dt)
                i += 1

        threads = [threading.Thread(target=enroll, args=(w,), daemon=True) for w in range(writers)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        # the baseline window lasts as long as the backup will (estimated from the file sizes, >= 5 s)
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        window = max(5.0, size / 150e6)
        phase["name"] = "base"
        time.sleep(window)
        phase["name"] = "backup"
        result = create_backup(gallery, out, config=EngineConfig(data_dir=root, site_id="bench"),
                               model_dir=out / "no-models", fresh_snapshot=fresh_snapshot)
        phase["name"] = "after"
        stop.set()
        for t in threads:
            t.join()
        m = result.manifest
        return {
            "fresh_snapshot": fresh_snapshot,
            "backup_s": round(result.seconds, 2),
            "archive_bytes": result.bytes,
            "source_bytes": size,
            "throughput_MBps": round(size / result.seconds / 1e6, 1),
            "records": m["records"], "templates": m["templates"],
            "enroll_base_n": len(lat["base"]), "enroll_backup_n": len(lat["backup"]),
            "enroll_base_p50_ms": round(_p(lat["base"], 50), 2),
            "enroll_base_p99_ms": round(_p(lat["base"], 99), 2),
            "enroll_backup_p50_ms": round(_p(lat["backup"], 50), 2),
            "enroll_backup_p99_ms": round(_p(lat["backup"], 99), 2),
            "p99_ratio": round(_p(lat["backup"], 99) / _p(lat["base"], 99), 2),
        }
    finally:
        gallery.close()


def run(faces: int, iris_pairs: int, work: Path) -> list[dict[str, Any]]:
    root = work / "gallery"
    ring = KeyRing.generate()
    t = time.perf_counter()
    build(root, ring, faces, iris_pairs)
    built = time.perf_counter() - t
    out = []
    for k, fresh in enumerate((False, True)):
        rec = measure(root, ring, work / f"backups-{fresh}", fresh_snapshot=fresh, seed=11 + 100 * k)
        rec.update(faces=faces, iris_pairs=iris_pairs, build_s=round(built, 1))
        out.append(rec)
        shutil.rmtree(work / f"backups-{fresh}", ignore_errors=True)
    return out


def test_backup_while_enrolling(benchmark: Any, tmp_path: Path) -> None:
    records = run(20_000, 4_000, tmp_path)
    for rec in records:
        benchmark.extra_info[f"{'fresh' if rec['fresh_snapshot'] else 'latest'}"] = rec
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert all(r["backup_s"] > 0 for r in records)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=1_000_000)
    p.add_argument("--iris-pairs", type=int, default=200_000)
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nasname-bench-backup-", dir=args.work))
    try:
        for rec in run(args.faces, args.iris_pairs, work):
            print(json.dumps(rec))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
