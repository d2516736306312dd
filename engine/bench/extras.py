"""Bench parts that need real components: extraction time per stage (real images) and gallery open
time. Each is recorded as "not available" with the reason when its component or data is missing."""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from engine.errors import NasnameError
from engine.evaluation.extraction import extract_files
from engine.evaluation.manifest import read_manifest

__all__ = ["default_image_dir", "extraction_records", "gallery_records"]

log = logging.getLogger(__name__)

MANIFESTS = {"face": "face_lfw.csv", "iris": "iris_casia1.csv"}


def default_image_dir() -> Path | None:
    """$NASNAME_SHARED_DATA, else ../shared/data from the working directory, if it exists."""
    env = os.environ.get("NASNAME_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [Path.cwd().parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


def extraction_records(image_dir: Path | None, n_images: int, progress: bool) -> list[dict[str, Any]]:
    out = []
    for kind, name in MANIFESTS.items():
        rec: dict[str, Any] = {"type": "extraction", "kind": kind, "images": 0, "note": ""}
        manifest = image_dir / name if image_dir else None
        if manifest is None or not manifest.is_file():
            out.append({**rec, "status": "not available",
                        "note": f"no image manifest {name} (pass --images DIR or set NASNAME_SHARED_DATA)"})
            continue
        try:
            factory: Any = importlib.import_module("engine.extractors")
            t = time.perf_counter()
            extractor = factory.load_extractor(kind)
            load_s = time.perf_counter() - t
            paths = [s.path for s in read_manifest(manifest, kind)][: n_images + 1]
            extract_files(extractor, paths[:1], apply_quality_gate=False, progress=False)  # warm-up
            run = extract_files(extractor, paths[1:], apply_quality_gate=False, progress=progress,
                                label=f"extract {kind}")
        except (ImportError, NasnameError) as exc:
            out.append({**rec, "status": "not available", "note": f"{type(exc).__name__}: {exc}"})
            continue
        out.append({**rec, "status": "ok", "images": len(paths) - 1, "model_load_s": load_s,
                    "stage_ms": run.stage_ms, "total_ms": run.total_ms, "failures": dict(run.failures),
                    "source": name})
    return out


def gallery_records(sizes: tuple[int, ...], dim: int, progress: bool) -> list[dict[str, Any]]:
    """Durable enroll throughput through ``engine.gallery.Gallery`` (SQLite commit + encryption +
    index update per record) and gallery open time, from a snapshot and by rebuilding from the store,
    for face galleries of each size (synthetic templates, temporary directory)."""
    try:
        gallery_mod: Any = importlib.import_module("engine.gallery")
        crypto: Any = importlib.import_module("engine.crypto")
    except ImportError as exc:
        return [{"type": "gallery", "status": "not available", "note": f"{type(exc).__name__}: {exc}"}]
    out = []
    for size in sizes:
        rec: dict[str, Any] = {"type": "gallery", "size": size, "note": ""}
        try:
            rec.update(_gallery_once(gallery_mod, crypto, size, dim, progress), status="ok")
        except (ImportError, NasnameError) as exc:
            rec.update(status="not available", note=f"{type(exc).__name__}: {exc}")
        out.append(rec)
    return out


def _gallery_once(gallery_mod: Any, crypto: Any, size: int, dim: int, progress: bool) -> dict[str, Any]:
    import shutil
    import sys
    import tempfile

    from tqdm import tqdm

    from engine.bench.contenders import BENCH_MODEL
    from engine.bench.synthetic import face_data
    from engine.types import FaceTemplate, Modality

    xb = face_data(size, 1, dim, seed=size).xb
    keyring = crypto.KeyRing.generate()
    config = gallery_mod.GalleryConfig(snapshot_every=0, snapshot_interval_s=0.0, snapshot_on_close=True)

    def open_gallery(directory: Path) -> Any:
        return gallery_mod.Gallery(directory, keyring, gallery_mod.default_index_factory(),
                                   gallery_mod.load_index, config=config)

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gallery"
        g = open_gallery(directory)
        t = time.perf_counter()
        for v in tqdm(xb, desc=f"  gallery enroll N={size:,}", unit="rec", file=sys.stderr, leave=False,
                      disable=None if progress else True):
            g.insert({Modality.FACE: FaceTemplate(v, BENCH_MODEL)})
        insert_s = time.perf_counter() - t
        t = time.perf_counter()
        g.close()  # writes the snapshot
        close_s = time.perf_counter() - t
        db_bytes = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
        t = time.perf_counter()
        g = open_gallery(directory)
        open_snapshot_s = time.perf_counter() - t
        config_no_snap = gallery_mod.GalleryConfig(snapshot_every=0, snapshot_interval_s=0.0,
                                                   snapshot_on_close=False)
        g.close()
        shutil.rmtree(directory / "snapshots", ignore_errors=True)
        t = time.perf_counter()
        g = gallery_mod.Gallery(directory, keyring, gallery_mod.default_index_factory(),
                                gallery_mod.load_index, config=config_no_snap)
        open_rebuild_s = time.perf_counter() - t
        g.close()
    return {"insert_s": insert_s, "close_snapshot_s": close_s, "open_snapshot_s": open_snapshot_s,
            "open_rebuild_s": open_rebuild_s, "disk_bytes": db_bytes, "dim": dim}
