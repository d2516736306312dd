#!/usr/bin/env python3
"""One-command setup for a fresh machine that has only Python (>= 3.11).

    python3 dev.py serve [nasname serve options]   # venv + install + run the service
    python3 dev.py test  [pytest options]          # venv + install + ruff + mypy + pytest

The virtual environment lives in ./.venv and is reused; `pip install` is re-run each time so the
environment follows pyproject.toml (it is quick when nothing changed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def _setup(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        sys.exit(f"nasname needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
        _run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", f".{extras}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "serve":
            _setup("")
            os.execv(str(BIN / "nasname"), [str(BIN / "nasname"), "serve", *rest])
        _setup("[test]")
        _run(BIN / "ruff", "check", ".")
        _run(BIN / "mypy")
        _run(BIN / "python", "-m", "pytest", *rest)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
