"""The scripts in ``models/`` (calibration, golden files) loaded as modules, so tests can call their
functions: they are run as files, not imported as a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def model_script(name: str) -> ModuleType:
    """``models/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "models" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
