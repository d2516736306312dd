"""Where the engine gets its extractors: one factory by template kind, imported lazily so that a
process that only matches templates never loads ONNX models."""

from __future__ import annotations

import importlib
import threading

from engine.errors import ConfigurationError, InvalidInput
from engine.extractor import Extractor

__all__ = ["KINDS", "load_extractor"]

# kind -> (module, class); each class offers ``default()`` which prepares its models on first use.
KINDS: dict[str, tuple[str, str]] = {
    "face": ("engine.face", "FaceExtractor"),
    "iris": ("engine.iris", "IrisExtractor"),
}

_cache: dict[str, Extractor] = {}
_lock = threading.Lock()


def load_extractor(kind: str) -> Extractor:
    """The default extractor of ``kind`` (``"face"`` or ``"iris"``), created once per process."""
    if kind not in KINDS:
        raise InvalidInput(f"no extractor for {kind!r}; known: {', '.join(KINDS)}", reason="UNKNOWN_MODALITY")
    with _lock:
        if kind not in _cache:
            module_name, class_name = KINDS[kind]
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except (ImportError, AttributeError) as exc:
                raise ConfigurationError(f"the {kind} extractor is not available: {exc}") from exc
            extractor = cls.default()
            if not isinstance(extractor, Extractor):
                raise ConfigurationError(f"{module_name}.{class_name} does not implement Extractor")
            _cache[kind] = extractor
        return _cache[kind]
