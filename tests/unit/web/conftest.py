"""The console tests' gallery: ``tests.web_support``'s seeded engine with one account per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.engine import Engine
from tests.web_support import add_users, open_engine, seed_gallery


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = open_engine(tmp_path / "data")
    seed_gallery(eng)
    add_users(eng)
    yield eng
    eng.close()
