"""Registers the opt-in MobileFaceNet embedding (``engine.models.mobilefacenet``) with the registry.

Never a default: ``nasname models convert`` skips it unless named, and its build refuses to run until
the licence is accepted (``NASNAME_MOBILEFACENET_ACCEPT_LICENCE=yes`` or ``nasname models mobilefacenet
--accept-licence``). The source package is looked up locally only (see ``mobilefacenet.find_source``).
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import ConfigurationError
from engine.models import mobilefacenet
from engine.models.manifest import ModelManifest, model_dir
from engine.models.registry import ModelSpec, register

__all__: list[str] = []


def _build(directory: Path) -> ModelManifest:
    return mobilefacenet.build(directory)


def _available() -> bool:
    try:
        return mobilefacenet.find_source(model_dir()).exists()
    except ConfigurationError:
        return False


register(ModelSpec(mobilefacenet.MODEL_NAME, "face_embedding",
                   "MobileFaceNet 112x112 -> 192-d (TFJS -> ONNX); OPT-IN, weights licence unclear",
                   _build, _available, default=False))
