"""Sealed files: chunked AES-256-GCM for derived data written under the data directory (index snapshots).

Index snapshots hold every template of the gallery; in clear they would undo the encryption of the
database. A sealed file is encrypted and authenticated under a key derived from the data key
(``KeyRing.derive("snapshot")``), in chunks so that neither writing nor reading needs a second copy of
a large index in one piece::

    header   b"NSF1" | data key id (8) | file id (16, random) | chunk size (u32, little-endian)
    chunk i  nonce (12, random) | AES-GCM(plaintext chunk i) + tag (16)

Every chunk's associated data is ``header | identity | i (u64) | final (1 byte)``. ``identity`` is
what the caller says the file is (e.g. ``snapshot|face|seq=42``), supplied again to read it. So a file
whose bytes were changed (two rows swapped, a bit flipped), whose chunks were reordered or moved from
another file, that was cut short at any point (the last chunk must carry the final flag), or that is
another snapshot's file under this name, is refused with ``IntegrityError`` instead of loading.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.crypto import KeyRing
from engine.errors import IntegrityError, NotFound
from engine.fsutil import atomic_write

__all__ = ["CHUNK_SIZE", "SealedWriter", "open_sealed", "write_sealed"]

_MAGIC = b"NSF1"
_PURPOSE = "snapshot"
_HEADER = struct.Struct("<4s8s16sI")
_NONCE = 12
_TAG = 16
CHUNK_SIZE = 1 << 20  # 1 MiB: the per-chunk overhead (28 bytes, one GCM call) is negligible


def _aad(header: bytes, identity: bytes, index: int, final: bool) -> bytes:
    return header + identity + struct.pack("<QB", index, int(final))


class SealedWriter(io.RawIOBase):
    """A write-only, non-seekable stream that seals what is written into ``out`` (``close`` writes
    the final chunk; it does not close ``out``). ``tell`` counts plaintext bytes (zip writers use it)."""

    def __init__(self, out: BinaryIO, keyring: KeyRing, identity: str, chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__()
        key_id, key = keyring.derive(_PURPOSE)
        self._cipher = AESGCM(key)
        self._out = out
        self._identity = identity.encode()
        self._chunk = chunk_size
        self._header = _HEADER.pack(_MAGIC, bytes.fromhex(key_id), os.urandom(16), chunk_size)
        self._buf = bytearray()
        self._index = 0
        self._written = 0
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._written

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self._buf += view
        self._written += len(view)
        # keep at least one byte back: the chunk that ends the file must be sealed as final
        while len(self._buf) > self._chunk:
            self._seal(bytes(self._buf[: self._chunk]), final=False)
            del self._buf[: self._chunk]
        return len(view)

    def _seal(self, plain: bytes, *, final: bool) -> None:
        nonce = os.urandom(_NONCE)
        self._out.write(nonce)
        aad = _aad(self._header, self._identity, self._index, final)
        self._out.write(self._cipher.encrypt(nonce, plain, aad))
        self._index += 1

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buf), final=True)
            self._buf = bytearray()
        super().close()


def write_sealed(path: Path, keyring: KeyRing, identity: str, write: Callable[[BinaryIO], object],
                 chunk_size: int = CHUNK_SIZE) -> None:
    """Create or replace ``path`` atomically (``engine.fsutil``) with what ``write`` writes into the
    sealing stream it is given. No plaintext byte reaches the disk."""

    def body(f: BinaryIO) -> None:
        with SealedWriter(f, keyring, identity, chunk_size) as sealed:
            write(sealed)  # type: ignore[arg-type]

    atomic_write(path, body)


def open_sealed(path: Path, keyring: KeyRing, identity: str) -> io.BytesIO:
    """The authenticated plaintext of a sealed file, in memory (a seekable stream, as ``np.load``
    needs). Raises ``NotFound`` when missing and ``IntegrityError`` (BAD_SNAPSHOT) when the file is not
    exactly what :func:`write_sealed` wrote under ``identity`` with a key of this ring."""
    name = Path(path).name
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; read sequentially chunk by chunk
    except FileNotFoundError:
        raise NotFound(f"no sealed file {name}", reason="SNAPSHOT_NOT_FOUND") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read {name}: {exc}", reason="BAD_SNAPSHOT") from exc
    with f:
        header = f.read(_HEADER.size)
        if len(header) != _HEADER.size:
            raise IntegrityError(f"{name} is not a sealed file (too short)", reason="BAD_SNAPSHOT")
        magic, key_id, _, chunk = _HEADER.unpack(header)
        if magic != _MAGIC or not 0 < chunk <= 1 << 30:
            raise IntegrityError(f"{name} is not a sealed file (bad header)", reason="BAD_SNAPSHOT")
        try:
            cipher = AESGCM(keyring.derive(_PURPOSE, key_id.hex())[1])
        except IntegrityError as exc:
            raise IntegrityError(f"{name} was sealed with a key this key ring does not hold",
                                 reason="BAD_SNAPSHOT") from exc
        ident = identity.encode()
        size = _NONCE + chunk + _TAG
        parts: list[bytes] = []
        index = 0
        block = f.read(size)
        while True:
            following = f.read(size)
            final = not following
            if len(block) < _NONCE + _TAG or (not final and len(block) != size):
                raise IntegrityError(f"{name} is cut short or padded (chunk {index})", reason="BAD_SNAPSHOT")
            view = memoryview(block)  # slices without copying a 1 MiB chunk
            try:
                parts.append(cipher.decrypt(view[:_NONCE], view[_NONCE:], _aad(header, ident, index, final)))
            except InvalidTag:
                raise IntegrityError(
                    f"{name} failed authentication at chunk {index} (changed, truncated, reordered, or "
                    "not the file the snapshot names)", reason="BAD_SNAPSHOT") from None
            if final:
                break
            block, index = following, index + 1
    data = b"".join(parts)
    parts.clear()
    return io.BytesIO(data)  # shares ``data`` until written to: no further copy
