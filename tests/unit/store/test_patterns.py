"""Validation patterns match the whole value: ``re.match`` with ``$`` let ``"camp\\n"`` through (issue 18)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.dedup.runner import JobRunner
from engine.errors import InvalidInput
from engine.store import Store
from engine.types import Modality
from tests.unit.store.conftest import face


@pytest.mark.parametrize("write", [
    lambda s: s.insert({Modality.FACE: face(1)}, ref_id="R-1\n"),
    lambda s: s.insert({Modality.FACE: face(1)}, ref_id="R-1", partition="camp\n"),
    lambda s: s.create_token("station 1\n", "station"),
    lambda s: s.create_token("station 1", "station\n"),
])
def test_trailing_newline_is_refused(store: Store, write: Callable[[Store], Any]) -> None:
    with pytest.raises(InvalidInput):
        write(store)
    assert store.count(status=None) == 0 and store.list_tokens() == []


def test_dedup_job_id_trailing_newline(tmp_path: Path) -> None:
    from engine.crypto import KeyRing
    from engine.datadir import DataDir

    datadir = DataDir.open(tmp_path / "data", keyring=KeyRing.generate())
    runner = JobRunner(tmp_path / "jobs", source=datadir)
    try:
        with pytest.raises(InvalidInput):
            runner.progress("0123456789ab\n")
    finally:
        runner.close()
        datadir.close()
