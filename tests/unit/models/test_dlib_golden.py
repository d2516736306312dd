"""The converted dlib models reproduce the golden values (models/make_golden_face.py regenerates them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.scripts import model_script

ROOT = Path(__file__).resolve().parents[3]


def _script() -> ModuleType:
    return model_script("make_golden_face")


@pytest.fixture(scope="module")
def results() -> tuple[dict[str, object], dict[str, object]]:
    golden = json.loads((ROOT / "models" / "golden" / "dlib_face.json").read_text())
    return golden, _script().compute()


def test_recognizer_outputs_are_pinned(results: tuple[dict, dict]) -> None:
    golden, now = results
    want = np.asarray(golden["recognizer"]["outputs"])
    got = np.asarray(now["recognizer"]["outputs"])
    assert want.shape == (3, 128)
    assert np.abs(got - want).max() < 2e-5
    # raw (unnormalised) dlib descriptors have norms well away from 1
    assert np.all(np.linalg.norm(got, axis=1) > 0.5)


def test_detector_scores_are_pinned(results: tuple[dict, dict]) -> None:
    golden, now = results
    assert now["detector"]["shape"] == golden["detector"]["shape"]
    diff = np.asarray(now["detector"]["scores"]) - np.asarray(golden["detector"]["scores"])
    assert np.abs(diff).max() < 1e-4


def test_landmarks_and_chip_are_pinned(results: tuple[dict, dict]) -> None:
    golden, now = results
    assert now["landmarks"]["points"] == golden["landmarks"]["points"]
    assert now["chip_sha256"] == golden["chip_sha256"]
    assert hashlib.sha256(b"").hexdigest() != now["chip_sha256"]
