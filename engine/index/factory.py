"""Index construction by modality kind: the one place that knows which index class serves which
template kind, used by the engine to give the gallery its index factory and snapshot loader."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import ModelMismatch
from engine.index.base import TemplateIndex
from engine.types import Modality, ModelRef

__all__ = ["IndexSpec", "load_index", "make_index"]


class IndexSpec:
    """Template shape and index option name per modality: ``face`` needs ``dim``; ``iris`` needs
    ``nbytes`` and ``columns``. ``kind`` is the configured option (``exact``, ``fp16``, ...)."""

    def __init__(self, kind: str = "exact", **shape: int) -> None:
        self.kind = kind
        self.shape = dict(shape)

    def __repr__(self) -> str:
        return f"IndexSpec({self.kind!r}, {self.shape})"


def make_index(modality: Modality, model: ModelRef, spec: IndexSpec) -> TemplateIndex:
    if modality.kind == "face":
        from engine.index.face import FaceIndex, FaceIndexOptions

        return FaceIndex(model, int(spec.shape["dim"]), FaceIndexOptions(kind=spec.kind))  # type: ignore[arg-type]
    iris: Any = importlib.import_module("engine.index.iris")
    options = iris.IrisIndexOptions(**({} if spec.kind == "exact" else {"kind": spec.kind}))
    nbytes, columns = int(spec.shape["nbytes"]), int(spec.shape["columns"])
    index: TemplateIndex = iris.IrisIndex(model, nbytes, columns, options)
    return index


def load_index(modality: Modality, model: ModelRef, path: Path | BinaryIO) -> TemplateIndex:
    if modality.kind == "face":
        from engine.index.face import FaceIndex

        index: TemplateIndex = FaceIndex.load(path)
    else:
        iris: Any = importlib.import_module("engine.index.iris")
        index = iris.IrisIndex.load(path)
    if index.model != model:
        raise ModelMismatch(f"index snapshot holds {index.model}, the gallery uses {model}")
    return index
