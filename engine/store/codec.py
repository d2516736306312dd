"""Validation of what goes into a record, and template (de)serialisation with encryption."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from engine.crypto import KeyRing, associated_data
from engine.errors import IntegrityError, InvalidInput
from engine.types import Modality, Template, check_template, template_from_bytes

__all__ = [
    "MAX_ATTRIBUTES_BYTES",
    "check_attributes",
    "check_partition",
    "check_ref_id",
    "open_template",
    "seal_template",
    "shape_of",
]

# fullmatch everywhere: with match, "$" also matches before a trailing newline ("camp\n")
_REF_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")
_PARTITION_RE = re.compile(r"[A-Za-z0-9._:@/+-]{0,64}")
MAX_ATTRIBUTES_BYTES = 4096


def check_ref_id(ref_id: str) -> str:
    if not isinstance(ref_id, str) or not _REF_ID_RE.fullmatch(ref_id):
        raise InvalidInput("reference id must be 1-128 characters of A-Z a-z 0-9 . _ : @ / + -",
                           reason="INVALID_REFERENCE_ID")
    return ref_id


def check_partition(partition: str) -> str:
    if not isinstance(partition, str) or not _PARTITION_RE.fullmatch(partition):
        raise InvalidInput("partition must be 0-64 characters of A-Z a-z 0-9 . _ : @ / + -",
                           reason="INVALID_PARTITION")
    return partition


def check_attributes(attributes: Mapping[str, Any] | None) -> str:
    """Small, flat, non-biometric attributes -> canonical JSON text."""
    attrs = dict(attributes or {})
    for key, value in attrs.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str | int | float | bool)):
            raise InvalidInput("attributes must map strings to JSON scalars", reason="INVALID_ATTRIBUTES")
    text = json.dumps(attrs, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > MAX_ATTRIBUTES_BYTES:
        raise InvalidInput(f"attributes exceed {MAX_ATTRIBUTES_BYTES} bytes", reason="INVALID_ATTRIBUTES")
    return text


def shape_of(modality: Modality, template: Template) -> str:
    """A template's shape signature (``engine.types.check_template``). Raises ``InvalidInput`` when
    the template kind does not fit the modality."""
    return check_template(modality, template)


def seal_template(keyring: KeyRing, record_id: int, modality: Modality, template: Template) -> bytes:
    return keyring.encrypt(template.to_bytes(), associated_data("template", record_id, modality.value))


def open_template(keyring: KeyRing, record_id: int, modality: Modality, blob: bytes) -> Template:
    """Decrypt and parse; a blob that decrypts but does not parse is an integrity failure too."""
    plain = keyring.decrypt(blob, associated_data("template", record_id, modality.value))
    try:
        return template_from_bytes(plain)
    except InvalidInput as exc:
        raise IntegrityError("stored template is unreadable", reason="CORRUPT_TEMPLATE") from exc
