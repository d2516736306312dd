"""The one small interface through which an extractor plugs into the engine.

An extractor turns the encoded image of one sample into a template of its modality kind. It never
decides policy: it reports quality (score, ok, reasons) and the engine applies the gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from engine.types import ModelRef, Quality, Template

__all__ = ["Extraction", "Extractor"]


@dataclass(frozen=True)
class Extraction:
    """What an extractor found. ``details`` holds small non-biometric facts for the response and for
    timing reports (``faces_found``, ``stage_ms`` ...), never pixels or landmarks of a person."""

    template: Template
    quality: Quality
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Extractor(Protocol):
    """``kind`` is ``"face"`` or ``"iris"`` (see ``Modality.kind``); ``model`` identifies the
    template space (templates of different models are never compared)."""

    @property
    def kind(self) -> str: ...

    @property
    def model(self) -> ModelRef: ...

    def extract(self, image: bytes | npt.NDArray[np.uint8]) -> Extraction:
        """Encoded image bytes (or an already decoded uint8 array) -> template + quality.

        Raises ``InvalidImage``/``ImageTooLarge`` for undecodable input and ``AcquisitionFailed``
        (with quality reasons) when no face / iris is found; never a bare library exception."""
        ...
