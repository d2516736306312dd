"""Encryption at rest: AES-256-GCM with a key from a key file or the ``NASNAME_KEY`` environment variable.

Blob layout (what the store keeps in a BLOB column)::

    b"NE1" | key id (8 bytes) | nonce (12 bytes) | ciphertext + 16-byte GCM tag

The key id is the first 8 bytes of SHA-256 over a domain prefix and the key, so a later key rotation can
find which rows still use an old key, and a ring can hold old keys for decryption. The header and the
caller's *associated data* (which row, which modality, what purpose) are authenticated with the
ciphertext: a blob copied into another row, or from another key, fails to decrypt instead of silently
yielding another person's template. A fresh random 96-bit nonce per encryption is safe for far more
than the number of blobs one gallery will ever hold (collision risk ~ n^2 / 2^97).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.errors import ConfigurationError, IntegrityError

__all__ = ["KEY_ENV", "KeyRing", "associated_data"]

log = logging.getLogger(__name__)

KEY_ENV = "NASNAME_KEY"
_MAGIC = b"NE1"
_KEY_ID_LEN = 8
_NONCE_LEN = 12
_HEADER_LEN = len(_MAGIC) + _KEY_ID_LEN + _NONCE_LEN
_KEY_LEN = 32


def associated_data(purpose: str, record_id: int, modality: str) -> bytes:
    """The AAD that binds a blob to its row: ``purpose`` ("template", "image"), record id, modality."""
    return f"nasname/v1|{purpose}|{record_id}|{modality}".encode()


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"nasname-key-id/v1|" + key).digest()[:_KEY_ID_LEN]


def _parse_key_id(text: str) -> bytes:
    try:
        kid = bytes.fromhex(text)
    except ValueError:
        kid = b""
    if len(kid) != _KEY_ID_LEN:
        raise IntegrityError(f"malformed key id {text[:32]!r}", reason="UNKNOWN_KEY")
    return kid


def _decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{source} is not valid base64", reason="BAD_KEY") from exc
    if len(key) != _KEY_LEN:
        raise ConfigurationError(
            f"{source} must hold a {_KEY_LEN * 8}-bit key ({_KEY_LEN} bytes), got {len(key)} bytes",
            reason="BAD_KEY",
        )
    return key


class KeyRing:
    """The active encryption key plus older keys kept for decryption only (rotation).

    Construct with :meth:`load` (environment first, then key file, created on first run) or directly
    from raw 32-byte keys. Thread-safe: ``AESGCM`` objects are stateless.
    """

    def __init__(self, active: bytes, old: Sequence[bytes] = ()) -> None:
        for key in (active, *old):
            if len(key) != _KEY_LEN:
                raise ConfigurationError(f"an encryption key must be {_KEY_LEN} bytes", reason="BAD_KEY")
        self._active_id = _key_id(active)
        self._active_key = bytes(active)
        self._ciphers: dict[bytes, AESGCM] = {_key_id(k): AESGCM(k) for k in old}
        self._ciphers[self._active_id] = AESGCM(active)
        # raw keys kept only to derive purpose keys (snapshots, audit chain) from them
        self._keys: dict[bytes, bytes] = {_key_id(k): bytes(k) for k in (*old, active)}

    @property
    def key_id(self) -> str:
        """Hex id of the active key (stored next to each blob; never secret)."""
        return self._active_id.hex()

    def holds(self, key_id: str) -> bool:
        """Whether this ring holds the key with hex id ``key_id`` (active or old)."""
        try:
            return bytes.fromhex(key_id) in self._ciphers
        except ValueError:
            return False

    @property
    def active_key(self) -> bytes:
        """The raw active key (for ``nasname key export`` and backup key derivation only)."""
        return self._active_key

    @classmethod
    def generate(cls) -> KeyRing:
        """A ring with a fresh random key (tests and throw-away galleries)."""
        return cls(AESGCM.generate_key(bit_length=_KEY_LEN * 8))

    @classmethod
    def load(cls, key_file: Path | None, env: Mapping[str, str] | None = None, *,
             create: bool = True) -> KeyRing:
        """Key from ``$NASNAME_KEY`` (base64) when set, else from ``key_file`` (created if missing and
        ``create``; ``engine.datadir`` allows that only for a brand-new data directory).

        Raises ``ConfigurationError`` when neither is given, the key is malformed, or the key file is
        readable or writable by group/others.
        """
        env = os.environ if env is None else env
        if env.get(KEY_ENV):
            return cls(_decode_key(env[KEY_ENV], f"${KEY_ENV}"))
        if key_file is None:
            raise ConfigurationError(f"no encryption key: set ${KEY_ENV} or configure a key file",
                                     reason="NO_KEY")
        return cls.from_file(key_file, create=create)

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> KeyRing:
        """Read the base64 key in ``path``; create it (mode 0600, fsynced) when missing and ``create``."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise ConfigurationError(f"key file {path} does not exist", reason="NO_KEY")
            _create_key_file(path)
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise ConfigurationError(f"key file {path} is not a regular file", reason="BAD_KEY_FILE")
            if st.st_mode & 0o077:
                raise ConfigurationError(
                    f"key file {path} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):04o}); "
                    "run: chmod 600 on it",
                    reason="KEY_FILE_PERMISSIONS",
                )
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read key file {path}: {exc}", reason="BAD_KEY_FILE") from exc
        return cls(_decode_key(text, f"key file {path}"))

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext`` with the active key; ``aad`` must be given again to decrypt."""
        nonce = os.urandom(_NONCE_LEN)
        header = _MAGIC + self._active_id + nonce
        return header + self._ciphers[self._active_id].encrypt(nonce, plaintext, header + aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """Open a blob made by :meth:`encrypt` with the same ``aad``. Raises ``IntegrityError`` when the
        blob was altered, belongs to another row, or was sealed with a key this ring does not hold."""
        if len(blob) < _HEADER_LEN + 16 or blob[: len(_MAGIC)] != _MAGIC:
            raise IntegrityError("encrypted blob is malformed", reason="DECRYPTION_FAILED")
        header = bytes(blob[:_HEADER_LEN])
        key_id = header[len(_MAGIC) : len(_MAGIC) + _KEY_ID_LEN]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise IntegrityError(f"blob was encrypted with unknown key {key_id.hex()}",
                                 reason="UNKNOWN_KEY")
        try:
            return cipher.decrypt(header[-_NONCE_LEN:], bytes(blob[_HEADER_LEN:]), header + aad)
        except InvalidTag as exc:
            raise IntegrityError("encrypted blob failed authentication (tampered, moved or wrong key)",
                                 reason="DECRYPTION_FAILED") from exc

    def derive(self, purpose: str, key_id: str | None = None) -> tuple[str, bytes]:
        """A 256-bit key for one ``purpose`` (``"snapshot"``, ``"audit"``...), derived with HKDF-SHA256
        from the active data key, or from the ring's key ``key_id`` (hex) when given. Returns
        ``(key id of the data key used, derived key)``. Derived keys never leave memory: whoever holds
        the data key can re-derive them, whoever holds only the database or the snapshots cannot.
        Raises ``IntegrityError`` (UNKNOWN_KEY) for a key id this ring does not hold."""
        kid = self._active_id if key_id is None else _parse_key_id(key_id)
        key = self._keys.get(kid)
        if key is None:
            raise IntegrityError(f"no key {kid.hex()} in the key ring to derive the {purpose} key from",
                                 reason="UNKNOWN_KEY")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=_KEY_LEN, salt=None,
                    info=b"nasname-derived-key/v1|" + purpose.encode())
        return kid.hex(), hkdf.derive(key)

    @staticmethod
    def blob_key_id(blob: bytes) -> str:
        """Hex key id written in a blob's header (for rotation reports)."""
        return bytes(blob[len(_MAGIC) : len(_MAGIC) + _KEY_ID_LEN]).hex()


def _create_key_file(path: Path) -> None:
    """Write a fresh key with 0600 from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = base64.b64encode(AESGCM.generate_key(bit_length=_KEY_LEN * 8)) + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first; it is read (and checked) by the caller
    except OSError as exc:
        raise ConfigurationError(f"cannot create key file {path}: {exc}", reason="BAD_KEY_FILE") from exc
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("created a new encryption key file (key id %s)", _key_id(base64.b64decode(data)).hex())
