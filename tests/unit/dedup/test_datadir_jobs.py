"""Dedup jobs take store and key from the engine's open data directory: with the key file kept outside
the data directory (as production should), a job neither creates a second key nor fails to decrypt;
and everything under the data directory, job outputs included, is private (0600 / 0700)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.dedup.runner import JobRunner
from engine.dedup.sources import JobSpec
from engine.engine import Engine
from engine.fusion import Fusion
from engine.records import Sample
from engine.types import Modality
from tests.unit.dedup.conftest import at_cosine, face_t, unit_rows


@pytest.fixture()
def loose_umask() -> Iterator[None]:
    """A permissive umask (the nasname CLI narrows it; the engine's writers must not rely on that)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_job_uses_the_engines_key_kept_elsewhere_and_writes_private_files(
        tmp_path: Path, fusion: Fusion, loose_umask: None) -> None:
    data, keys = tmp_path / "data", tmp_path / "keys"
    config = EngineConfig(data_dir=data, key_file=keys / "camp.key", modalities=("face",))
    rng = np.random.default_rng(4)
    x = unit_rows(rng, 40)
    x[39] = at_cosine(rng, x[7], 0.95)
    engine = Engine.open(config, fusion=fusion)
    try:
        for i in range(40):
            engine.insert(f"R{i}", [Sample(Modality.FACE, template=face_t(x[i]))])
        engine.gallery.snapshot()
        runner = JobRunner(engine.datadir.jobs_dir("dedup"), source=engine.datadir, fusion=fusion)
        try:
            job_id = runner.start(JobSpec(data_dir=str(data)))
            runner.wait(job_id, timeout=120)
            result = runner.result(job_id)
        finally:
            runner.close()
        open_files = _modes(data)  # while the engine holds it: the WAL and shared-memory files too
        assert {"nasname.db-wal", "nasname.db-shm"} <= {p.name for p in open_files}
    finally:
        engine.close()
    assert result.summary["clusters"] == 1 and {"pairs.csv", "clusters.csv"} <= set(result.files)
    assert (keys / "camp.key").is_file() and not (data / "nasname.key").exists()
    checked = _modes(data)
    assert len(checked) > 10 and any(p.name == "candidates.bin" for p in checked)


def _modes(data: Path) -> list[Path]:
    """Every entry under ``data``, each asserted private (folders 0700, files 0600)."""
    seen = []
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path.relative_to(data)} is {mode:04o}"
        seen.append(path)
    return seen
