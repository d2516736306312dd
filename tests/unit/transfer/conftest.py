"""Sites for the transfer tests: real galleries (SQLite + index) of synthetic 128-d face templates with a
calibration that describes exactly those templates (those of tests/unit/core/test_engine.py), so the
fused rule's decisions are meaningful: a planted mate (cosine ~0.8) is a match, strangers are not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.fusion import Fusion
from engine.transfer.site import PublicSite, load_site, trust
from engine.types import Modality
from tests.unit.core.conftest import DIM, MODEL, face, mate, unit, write_calibration

__all__ = ["DIM", "MODEL", "Sites", "face", "mate", "site_config", "unit"]


@pytest.fixture(scope="session")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_calibration(tmp_path_factory.mktemp("cal"))


@pytest.fixture(scope="session")
def fusion(calibration_dir: Path) -> Fusion:
    return Fusion.for_models({Modality.FACE: MODEL}, calibration_dir)


def site_config(root: Path, name: str) -> EngineConfig:
    return EngineConfig(data_dir=root / name, modalities=("face",), snapshot_every=0, site_id=name)


class Sites:
    """Opens engines by site name under one folder; closes them all at the end."""

    def __init__(self, root: Path, fusion: Fusion) -> None:
        self.root = root
        self.fusion = fusion
        self.open: dict[str, Engine] = {}

    def __getitem__(self, name: str) -> Engine:
        if name not in self.open:
            self.open[name] = Engine.open(site_config(self.root, name), fusion=self.fusion)
        return self.open[name]

    def close(self, name: str) -> None:
        self.open.pop(name).close()

    def pair(self, a: str, b: str) -> None:
        """a and b trust each other (each imports the other's public file)."""
        for x, y in ((a, b), (b, a)):
            public = PublicSite.from_json(json.loads(json.dumps(load_site(self[y].datadir).public.to_json())))
            trust(self[x].datadir, public, actor="test")


@pytest.fixture()
def sites(tmp_path: Path, fusion: Fusion) -> Iterator[Sites]:
    s = Sites(tmp_path, fusion)
    yield s
    for engine in s.open.values():
        engine.close()
