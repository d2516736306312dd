"""Every ``nasname`` command the README shows answers ``--help`` in the installed environment, without
the ``[test]`` extra (its packages are hidden from the child process), as right after
``python3 dev.py serve``."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", ROOT / "docs" / "USER-GUIDE.md"]

# Hides the test extra's packages, then runs `nasname ARGS`; argparse's --help exits 0.
_CHILD = """
import importlib.abc, sys
hidden = set(sys.argv[1].split(","))
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (test extra hidden)", name=name)
        return None
sys.meta_path.insert(0, Hide())
from server.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _test_extra_modules() -> list[str]:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    names = [re.split(r"[<>=~!\[; ]", req, maxsplit=1)[0].lower().replace("-", "_") for req in extra]
    stubs = {"types_protobuf", "grpc_stubs"}  # type stubs: nothing imports them at run time
    return [n for n in names if n not in stubs]


def readme_commands() -> list[list[str]]:
    """The sub-command words of each ``nasname`` line in the documents' shell blocks."""
    out: list[list[str]] = []
    for doc in DOCS:
        if not doc.is_file():
            continue
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.splitlines():
                words = shlex.split(line.split("#", 1)[0])
                if not words or not words[0].endswith("nasname"):
                    continue
                command = []
                for w in words[1:]:
                    if w.startswith("-") or "<" in w or "/" in w or "." in w:
                        break
                    command.append(w)
                if command not in out:
                    out.append(command)
    return out


def test_the_readme_shows_the_main_commands() -> None:
    shown = {" ".join(c) for c in readme_commands()}
    assert {"enroll", "identify", "verify", "evaluate", "bench"} <= shown


@pytest.mark.parametrize("command", readme_commands(), ids=lambda c: " ".join(c) or "nasname")
def test_documented_command_answers_help_without_the_test_extra(command: list[str]) -> None:
    hidden = ",".join(_test_extra_modules())
    done = subprocess.run([sys.executable, "-c", _CHILD, hidden, *command, "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
