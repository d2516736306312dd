"""pytest-benchmark suites live in ``bench_*.py`` files here (kept out of the unit-test run).

    .venv/bin/pytest benchmarks/ -m "not slow"      # CI-sized: N = 10k
    .venv/bin/pytest benchmarks/                    # N = 10k and 100k
Full-scale figures come from the commands, e.g. ``python -m benchmarks.identify_scale --n 1000000``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    # Files named on the command line are collected by pytest itself; this adds bench_*.py when a
    # directory is given (pytest's python_files pattern is test_*.py for the unit tests).
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(
        file_path
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
