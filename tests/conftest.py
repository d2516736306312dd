"""Fixtures shared by every test. Real data comes from ../shared/data (or $NASNAME_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("NASNAME_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()

# Converted models are cached between runs here (git-ignored), so only the first run pays conversion.
os.environ.setdefault("NASNAME_MODEL_DIR", str(ROOT / "models" / "build"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared real-image data set; skips the test (with the reason) when it is absent."""
    if not (SHARED_DATA / "MANIFEST.csv").is_file():
        pytest.skip(
            f"real images not found at {SHARED_DATA} (set NASNAME_SHARED_DATA to the shared/data folder)"
        )
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _no_user_client_settings(tmp_path_factory: pytest.TempPathFactory,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Client commands read the user's `nasname login` settings: tests get an empty config home."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    monkeypatch.delenv("NASNAME_CLIENT_CONFIG", raising=False)
