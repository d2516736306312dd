"""The data key wrapped by a passphrase, for safekeeping apart from the server (``nasname key export``)
and for restoring onto a new machine (``nasname key import``, ``nasname backup restore --passphrase``).

An export is a small JSON document: the key sealed with AES-256-GCM under a key derived from the
passphrase with scrypt (``cryptography``; n = 2^17, r = 8, p = 1: about a second and 128 MiB, so a
stolen export resists guessing), plus the key's id (not secret) so the right export is recognised.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from engine.crypto import KeyRing
from engine.errors import ConfigurationError, InvalidInput
from engine.fsutil import write_atomic

__all__ = ["MIN_PASSPHRASE", "import_key", "is_export", "unwrap_key", "wrap_key", "write_export"]

FORMAT = "nasname-key-export/1"
MIN_PASSPHRASE = 10
_N, _R, _P = 2**17, 8, 1


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def wrap_key(keyring: KeyRing, passphrase: str, *, n: int = _N) -> dict[str, Any]:
    """The active key of ``keyring`` sealed under ``passphrase`` (a JSON-ready dict)."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise InvalidInput(f"the passphrase must have at least {MIN_PASSPHRASE} characters",
                           reason="WEAK_PASSPHRASE")
    salt, nonce = os.urandom(16), os.urandom(12)
    sealed = AESGCM(_kek(passphrase, salt, n, _R, _P)).encrypt(nonce, keyring.active_key, FORMAT.encode())
    return {"format": FORMAT, "kdf": "scrypt", "n": n, "r": _R, "p": _P, "key_id": keyring.key_id,
            "salt": base64.b64encode(salt).decode(), "nonce": base64.b64encode(nonce).decode(),
            "sealed_key": base64.b64encode(sealed).decode()}


def unwrap_key(doc: dict[str, Any], passphrase: str) -> KeyRing:
    """The key of an export; ``ConfigurationError`` WRONG_PASSPHRASE when it does not open."""
    try:
        if doc.get("format") != FORMAT or doc.get("kdf") != "scrypt":
            raise InvalidInput(f"not a nasname key export (format {doc.get('format')!r})",
                               reason="NOT_A_KEY_EXPORT")
        kek = _kek(passphrase, base64.b64decode(doc["salt"]), int(doc["n"]), int(doc["r"]), int(doc["p"]))
        key = AESGCM(kek).decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["sealed_key"]),
                                  FORMAT.encode())
    except InvalidTag:
        raise ConfigurationError("the passphrase does not open this key export (wrong passphrase, or the "
                                 "export was altered)", reason="WRONG_PASSPHRASE") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed key export: {exc}", reason="NOT_A_KEY_EXPORT") from exc
    ring = KeyRing(key)
    if ring.key_id != doc.get("key_id"):
        raise ConfigurationError("the key export's key id does not match its key", reason="WRONG_PASSPHRASE")
    return ring


def write_export(keyring: KeyRing, passphrase: str, path: Path) -> dict[str, Any]:
    """Write the passphrase-wrapped key to ``path`` (0600, atomically; refused if it exists)."""
    if path.exists():
        raise InvalidInput(f"{path} exists; choose another file", reason="FILE_EXISTS")
    doc = wrap_key(keyring, passphrase)
    write_atomic(path, json.dumps(doc, indent=1).encode())
    return doc


def is_export(path: Path) -> bool:
    """Whether ``path`` holds a key export (JSON) rather than a raw base64 key file."""
    try:
        head = path.read_bytes()[:1]
    except OSError:
        return False
    return head == b"{"


def import_key(export: Path, passphrase: str, key_file: Path) -> KeyRing:
    """Unwrap the export and write its key as a key file (0600; refused if ``key_file`` exists)."""
    try:
        doc = json.loads(export.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read key export {export}: {exc}", reason="NOT_A_KEY_EXPORT") from exc
    ring = unwrap_key(doc, passphrase)
    if key_file.exists():
        raise InvalidInput(f"{key_file} exists; nasname never overwrites a key file", reason="FILE_EXISTS")
    write_atomic(key_file, base64.b64encode(ring.active_key) + b"\n")
    return ring
