"""The one exception tree of nasname.

Every failure the engine reports is a ``NasnameError`` with a stable, machine-readable ``reason``
(an UPPER_SNAKE code that callers may switch on) and a human message. ``server/errors.py`` maps each
class to exactly one gRPC status code; nothing else in the code base decides status codes.

    NasnameError
    ├── InvalidInput                 malformed request: bad field, unknown modality, bad template
    │   ├── InvalidImage             bytes are not a decodable image (empty, truncated, unsupported)
    │   └── ImageTooLarge            header dimensions above the configured limit (refused before decode)
    ├── SampleRejected               a valid image that gives no usable sample
    │   ├── AcquisitionFailed        failure to acquire: no face / no iris found
    │   └── QualityRejected          found, but below the quality gate (``reasons`` say why)
    ├── NotFound                     unknown reference id / job / token
    ├── AlreadyExists                reference id already enrolled
    ├── ModelMismatch                template made by another model (or version) than the gallery's
    ├── Conflict                     operation not valid in the record's current state
    ├── Unauthenticated              missing or unknown credentials
    ├── PermissionDenied             authenticated, but the role may not do this
    ├── ResourceExhausted            queue full, rate limit, size limit
    ├── Unavailable                  shutting down / not ready
    ├── IntegrityError               stored data fails authentication or consistency checks
    └── ConfigurationError           bad configuration, missing model file, bad key file

Lower-layer exceptions (sqlite3, onnxruntime, PIL, cryptography) are caught at the one place that
calls them and re-raised as one of these, chained with ``from``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AcquisitionFailed",
    "AlreadyExists",
    "ConfigurationError",
    "Conflict",
    "ImageTooLarge",
    "IntegrityError",
    "InvalidImage",
    "InvalidInput",
    "ModelMismatch",
    "NasnameError",
    "NotFound",
    "PermissionDenied",
    "QualityRejected",
    "ResourceExhausted",
    "SampleRejected",
    "Unauthenticated",
    "Unavailable",
]


class NasnameError(Exception):
    """Base of every error nasname raises on purpose.

    ``reason`` is a stable code for machines; ``details`` holds small, non-personal key/value facts
    (never biometric data, never personal fields) that travel to the client as error metadata.
    """

    default_reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message


class InvalidInput(NasnameError):
    default_reason = "INVALID_REQUEST"


class InvalidImage(InvalidInput):
    default_reason = "INVALID_IMAGE"


class ImageTooLarge(InvalidInput):
    default_reason = "IMAGE_TOO_LARGE"


class SampleRejected(NasnameError):
    """A decodable image that yields no usable sample. ``reasons`` are quality reason codes."""

    default_reason = "SAMPLE_REJECTED"

    def __init__(
        self,
        message: str,
        *,
        reasons: Sequence[str] = (),
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ):
        merged = dict(details or {})
        merged.setdefault("quality_reasons", ",".join(reasons))
        super().__init__(message, reason=reason, details=merged)
        self.reasons: tuple[str, ...] = tuple(reasons)


class AcquisitionFailed(SampleRejected):
    default_reason = "NO_BIOMETRIC_FOUND"


class QualityRejected(SampleRejected):
    default_reason = "QUALITY_CHECK_FAILED"


class NotFound(NasnameError):
    default_reason = "REFERENCE_ID_NOT_FOUND"


class AlreadyExists(NasnameError):
    default_reason = "REFERENCE_ID_EXISTS"


class ModelMismatch(NasnameError):
    default_reason = "MODEL_MISMATCH"


class Conflict(NasnameError):
    default_reason = "INVALID_STATE"


class Unauthenticated(NasnameError):
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(NasnameError):
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(NasnameError):
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(NasnameError):
    default_reason = "UNAVAILABLE"


class IntegrityError(NasnameError):
    default_reason = "DATA_INTEGRITY"


class ConfigurationError(NasnameError):
    default_reason = "CONFIGURATION"
