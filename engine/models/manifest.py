"""Model manifests and the model directory.

Every ONNX model nasname runs has a small JSON manifest next to it, ``<name>.json`` beside
``<name>.onnx``. The manifest, never the graph, says how to feed the model and what comes out, so a
site can drop in another model (an ArcFace-style face model, a different Gabor bank) without code.

Where models live: ``$NASNAME_MODEL_DIR`` if set, else ``<data dir>/models`` (``$NASNAME_DATA_DIR``,
default ``~/.local/share/nasname``). Converted files are build products, never committed to git.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigurationError, IntegrityError
from engine.fsutil import write_atomic
from engine.types import ModelRef

__all__ = ["ModelManifest", "default_data_dir", "model_dir", "sha256_file", "write_atomic"]

MANIFEST_FORMAT = 1


def default_data_dir() -> Path:
    env = os.environ.get("NASNAME_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nasname"


def model_dir() -> Path:
    env = os.environ.get("NASNAME_MODEL_DIR")
    return Path(env).expanduser() if env else default_data_dir() / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    """What a model is and how to run it.

    ``kind``: ``face_detector``, ``face_embedding``, ``face_landmarks``, ``iris_encoder``.
    ``input``: e.g. ``{"width": 150, "height": 150, "channels": "RGB", "mean": [..], "scale": 1/256}``.
    ``alignment``: e.g. ``{"method": "dlib_chip", "padding": 0.25}`` or
    ``{"method": "similarity", "template": [[x, y], ...], "points": "eyes_nose"}``.
    ``output``: e.g. ``{"dim": 128, "normalise": true}``.
    ``source``: where the weights came from (file name, sha256, licence) for provenance.
    ``onnx_sha256``: checked on load; a mismatch means the file was altered or half-written.
    """

    name: str
    model_id: str
    version: str
    kind: str
    onnx_file: str
    onnx_sha256: str
    input: dict[str, Any] = field(default_factory=dict)
    alignment: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.model_id, self.version)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def save(self, directory: Path) -> Path:
        path = directory / f"{self.name}.json"
        write_atomic(path, self.to_json().encode())
        return path

    @classmethod
    def load(cls, path: Path) -> ModelManifest:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigurationError(f"model manifest {path} not found") from exc
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"model manifest {path} is unreadable: {exc}") from exc
        if raw.get("format") != MANIFEST_FORMAT:
            raise ConfigurationError(f"model manifest {path} has unsupported format {raw.get('format')!r}")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigurationError(f"model manifest {path} has unexpected fields: {exc}") from exc

    def onnx_path(self, directory: Path) -> Path:
        return directory / self.onnx_file

    def verify(self, directory: Path) -> Path:
        """Return the ONNX path after checking its sha256 against the manifest."""
        path = self.onnx_path(directory)
        if not path.is_file():
            raise ConfigurationError(f"model file {path} is missing")
        digest = sha256_file(path)
        if digest != self.onnx_sha256:
            raise IntegrityError(
                f"model file {path} does not match its manifest (sha256 {digest[:12]}.. != "
                f"{self.onnx_sha256[:12]}..); delete it to have it converted again"
            )
        return path
