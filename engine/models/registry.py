"""Named models, converted on first use into ``engine.models.manifest.model_dir()``.

A model is registered once, by name, with a function that builds it (converts the source weights
into the model directory and writes its manifest). ``ensure_model(name)`` returns the manifest and the
verified model file, converting first if needed (one log line, a file lock so two processes do not
convert at once). Built-in models are registered by the modules ``engine/models/*_models.py``, which
the registry imports on first lookup; adding a model is one ``register(ModelSpec(...))`` call in such
a module::

    register(ModelSpec(name="my_face_model", kind="face_embedding", description="...",
                       build=my_build_function, default=False))
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigurationError
from engine.models.manifest import ModelManifest, model_dir

__all__ = ["ModelSpec", "ensure_model", "get_spec", "register", "registered"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """``build(directory) -> ModelManifest`` writes the model file(s) and the saved manifest into
    ``directory``; ``available()`` says whether its source weights are installed (for ``list``);
    ``default``: converted by ``nasname models convert`` without a name."""

    name: str
    kind: str
    description: str
    build: Callable[[Path], ModelManifest]
    available: Callable[[], bool] = lambda: True
    default: bool = True


_REGISTRY: dict[str, ModelSpec] = {}
_LOCK = threading.Lock()
_loaded = False


def register(spec: ModelSpec) -> None:
    """Add a model. Registering a different spec under a taken name is a configuration error."""
    old = _REGISTRY.get(spec.name)
    if old is not None and old != spec:
        raise ConfigurationError(f"model name {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module("engine.models")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.endswith("_models"):
            importlib.import_module(f"engine.models.{info.name}")


def registered() -> list[ModelSpec]:
    _load_builtins()
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


def get_spec(name: str) -> ModelSpec:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ConfigurationError(f"unknown model {name!r} (registered: {known})") from None


def _converted(directory: Path, name: str) -> bool:
    """A readable manifest and its model file exist (a half-deleted model is converted again;
    an altered one fails verification instead)."""
    path = directory / f"{name}.json"
    if not path.is_file():
        return False
    try:
        return ModelManifest.load(path).onnx_path(directory).is_file()
    except ConfigurationError:
        return False


def ensure_model(name: str, directory: Path | None = None) -> tuple[ModelManifest, Path]:
    """Manifest and sha256-verified model file of ``name``, converting it on first use."""
    spec = get_spec(name)
    directory = directory or model_dir()
    manifest_path = directory / f"{name}.json"
    with _LOCK:
        if not _converted(directory, name):
            directory.mkdir(parents=True, exist_ok=True)
            with (directory / ".convert.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting right now
                try:
                    if not _converted(directory, name):
                        log.info("converting model %s into %s (first use)", name, directory)
                        built = spec.build(directory)
                        if built.name != name:
                            raise ConfigurationError(f"model {name!r} built a manifest named {built.name!r}")
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
    manifest = ModelManifest.load(manifest_path)
    return manifest, manifest.verify(directory)
