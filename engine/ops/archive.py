"""The backup archive container: a tar stream, compressed (zstd) and encrypted (AES-256-GCM) in chunks, so
a 10 GB gallery is written and read with one chunk in memory.

Layout of a ``.nasbak`` file::

    b"NASNAME-BACKUP\\n"                           magic
    u32 big-endian n | n bytes of header JSON      format, cipher, compression, chunk size, salt,
                                                    key id of the data key, creation time, and (only
                                                    when asked) the data key wrapped by a passphrase
    frames: u32 n | u8 last | n bytes              AES-256-GCM ciphertext + tag of one chunk

The archive key is HKDF-SHA256(data key, salt from the header, "nasname-backup/v1"): a fresh key per
archive, so the chunk nonce can be the chunk counter. Each chunk's associated data is SHA-256 of the
header, the counter and the ``last`` flag: a changed header, a chunk moved, dropped, replaced from
another archive, or an archive cut short (no ``last`` frame) fails authentication, named by chunk.
The data key itself is never in the archive, except wrapped under a passphrase when asked
(``engine.ops.keys``).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from dataclasses import dataclass
from typing import IO, Any, Protocol

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.errors import IntegrityError, InvalidInput

__all__ = ["FORMAT", "MAGIC", "ArchiveHeader", "ArchiveReader", "ArchiveWriter", "FramedHeader",
           "frame_bytes", "read_frame", "read_header", "read_raw_header"]

MAGIC = b"NASNAME-BACKUP\n"
FORMAT = 1
CHUNK_BYTES = 4 << 20
_MAX_HEADER = 1 << 20
_FRAME = struct.Struct(">IB")
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class ArchiveHeader:
    """The clear header: enough to tell which key opens the archive (never the key)."""

    key_id: str
    salt: str
    created: str
    chunk_bytes: int = CHUNK_BYTES
    wrapped_key: dict[str, Any] | None = None
    fmt: int = FORMAT

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"format": self.fmt, "cipher": "AES-256-GCM", "compression": "zstd",
                               "kdf": "HKDF-SHA256", "chunk_bytes": self.chunk_bytes, "salt": self.salt,
                               "key_id": self.key_id, "created": self.created}
        if self.wrapped_key is not None:
            doc["wrapped_key"] = self.wrapped_key
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ArchiveHeader:
        try:
            doc = json.loads(raw)
            if doc["format"] != FORMAT:
                raise IntegrityError(f"backup archive format {doc['format']!r} is not supported (this "
                                     f"nasname reads format {FORMAT})", reason="ARCHIVE_FORMAT")
            return cls(str(doc["key_id"]), str(doc["salt"]), str(doc["created"]), int(doc["chunk_bytes"]),
                       doc.get("wrapped_key"), int(doc["format"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"backup archive header is unreadable: {exc}",
                                 reason="ARCHIVE_CORRUPT") from exc


BACKUP_INFO = b"nasname-backup/v1"


def archive_key(data_key: bytes, salt: bytes, info: bytes = BACKUP_INFO) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(data_key)


class FramedHeader(Protocol):
    """What the chunk framing needs of a header: its bytes (authenticated by every chunk), the salt
    of the per-stream key and the chunk size. ``ArchiveHeader`` here; transfer packets have their own."""

    @property
    def salt(self) -> str: ...
    @property
    def chunk_bytes(self) -> int: ...
    def to_bytes(self) -> bytes: ...


def read_frame(f: IO[bytes], counter: int, max_len: int, what: str = "backup archive") -> tuple[bytes, bool]:
    """The next frame of a framed stream: (sealed bytes, last flag); ``IntegrityError`` naming the
    chunk when the stream is cut short or a length is impossible (nothing is decrypted here)."""
    head = f.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise IntegrityError(f"{what} is truncated after chunk {counter}", reason="ARCHIVE_TRUNCATED")
    n, last = _FRAME.unpack(head)
    if n > max_len or last not in (0, 1):
        raise IntegrityError(f"{what} chunk {counter} has an impossible length", reason="ARCHIVE_CORRUPT")
    sealed = f.read(n)
    if len(sealed) < n:
        raise IntegrityError(f"{what} is truncated in chunk {counter}", reason="ARCHIVE_TRUNCATED")
    return sealed, last == 1


def frame_bytes(sealed: bytes, last: bool) -> bytes:
    """A frame as written (what a transfer packet's signature hashes)."""
    return _FRAME.pack(len(sealed), 1 if last else 0) + sealed


def _aad(header_hash: bytes, counter: int, last: bool) -> bytes:
    return header_hash + counter.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def _nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "big")


def read_header(f: IO[bytes]) -> tuple[ArchiveHeader, bytes]:
    """The header of an archive open at its start, and its raw bytes (authenticated by every chunk)."""
    raw = read_raw_header(f)
    return ArchiveHeader.from_bytes(raw), raw


def read_raw_header(f: IO[bytes], magic: bytes = MAGIC, what: str = "backup archive") -> bytes:
    """The raw header bytes of a framed stream open at its start (after checking its magic)."""
    if f.read(len(magic)) != magic:
        raise InvalidInput(f"not a nasname {what} (wrong magic bytes)", reason="NOT_AN_ARCHIVE")
    raw_len = f.read(_LEN.size)
    if len(raw_len) < _LEN.size:
        raise IntegrityError(f"{what} is truncated in its header", reason="ARCHIVE_TRUNCATED")
    (n,) = _LEN.unpack(raw_len)
    if n > _MAX_HEADER:
        raise IntegrityError(f"{what} header is implausibly large", reason="ARCHIVE_CORRUPT")
    raw = f.read(n)
    if len(raw) < n:
        raise IntegrityError(f"{what} is truncated in its header", reason="ARCHIVE_TRUNCATED")
    return raw


class ArchiveWriter(io.RawIOBase):
    """A writable binary stream: what is written is compressed, cut into chunks, encrypted and framed
    into ``out``. :meth:`close` writes the last frame (without it a reader reports truncation)."""

    def __init__(self, out: IO[bytes], data_key: bytes, header: FramedHeader, *, magic: bytes = MAGIC,
                 info: bytes = BACKUP_INFO) -> None:
        super().__init__()
        self._out = out
        raw = header.to_bytes()
        out.write(magic + _LEN.pack(len(raw)) + raw)
        self._hash = hashlib.sha256(raw).digest()
        self.frames_hash = hashlib.sha256()  # of every frame as written (a transfer packet signs it)
        self._aes = AESGCM(archive_key(data_key, bytes.fromhex(header.salt), info))
        self._zstd = zstandard.ZstdCompressor(level=1).compressobj()
        self._chunk = header.chunk_bytes
        self._buf = bytearray()
        self._counter = 0
        self.bytes_in = 0
        self.bytes_out = len(magic) + _LEN.size + len(raw)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.bytes_in += len(view)
        self._buf += self._zstd.compress(view)
        while len(self._buf) >= self._chunk:
            self._frame(bytes(self._buf[: self._chunk]), last=False)
            del self._buf[: self._chunk]
        return len(view)

    def _frame(self, plain: bytes, *, last: bool) -> None:
        sealed = self._aes.encrypt(_nonce(self._counter), plain, _aad(self._hash, self._counter, last))
        frame = frame_bytes(sealed, last)
        self._out.write(frame)
        self.frames_hash.update(frame)
        self.bytes_out += len(frame)
        self._counter += 1

    def close(self) -> None:
        if not self.closed:
            self._buf += self._zstd.flush()
            while len(self._buf) > self._chunk:
                self._frame(bytes(self._buf[: self._chunk]), last=False)
                del self._buf[: self._chunk]
            self._frame(bytes(self._buf), last=True)
            self._buf.clear()
        super().close()


class ArchiveReader(io.RawIOBase):
    """A readable binary stream of the plain tar bytes of an archive open just after its header.
    Raises ``IntegrityError`` naming the chunk: ARCHIVE_CORRUPT (authentication failed: altered, or
    not this key), ARCHIVE_TRUNCATED (cut short)."""

    def __init__(self, f: IO[bytes], data_key: bytes, header: FramedHeader, raw_header: bytes, *,
                 info: bytes = BACKUP_INFO, what: str = "backup archive", trailer: bool = False) -> None:
        super().__init__()
        self._f = f
        self._what = what
        self._trailer = trailer  # whether bytes may follow the last frame (a transfer packet's signature)
        self._hash = hashlib.sha256(raw_header).digest()
        self._aes = AESGCM(archive_key(data_key, bytes.fromhex(header.salt), info))
        self._zstd = zstandard.ZstdDecompressor().decompressobj()
        self._max = header.chunk_bytes + 64
        self._counter = 0
        self._done = False
        self._buf = bytearray()

    def readable(self) -> bool:
        return True

    @property
    def chunk(self) -> int:
        """Index of the next chunk to read (for error messages)."""
        return self._counter

    def _next(self) -> None:
        what = self._what
        sealed, last = read_frame(self._f, self._counter, self._max, what)
        try:
            plain = self._aes.decrypt(_nonce(self._counter), sealed, _aad(self._hash, self._counter, last))
        except InvalidTag:
            raise IntegrityError(f"{what} chunk {self._counter} failed authentication (altered, "
                                 "or not sealed with this key)", reason="ARCHIVE_CORRUPT") from None
        self._counter += 1
        try:
            self._buf += self._zstd.decompress(plain)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{what} chunk {self._counter - 1} does not decompress: {exc}",
                                 reason="ARCHIVE_CORRUPT") from exc
        if last:
            self._done = True
            if not self._trailer and self._f.read(1):
                raise IntegrityError(f"{what} has data after its last chunk", reason="ARCHIVE_CORRUPT")

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while not self._buf and not self._done:
            self._next()
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        del self._buf[:n]
        return n
