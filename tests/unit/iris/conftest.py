"""Shared fixtures of the iris unit tests: one extractor (encoder built once into the model dir)
and a small cached set of synthetic captures."""

from __future__ import annotations

import pytest

from engine.iris.extractor import IrisExtractor
from engine.iris.synthetic import SyntheticEyes


@pytest.fixture(scope="session")
def iris_extractor() -> IrisExtractor:
    return IrisExtractor.default()


@pytest.fixture(scope="session")
def eyes() -> SyntheticEyes:
    return SyntheticEyes()
