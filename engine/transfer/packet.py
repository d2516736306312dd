"""The transfer packet: what one site sends another, signed by the sender, readable only by the recipient.

Layout of a ``.nastx`` file::

    b"NASNAME-TRANSFER\\n"                          magic
    u32 n | n bytes of header JSON                  sender, recipient, packet number, change seqs,
                                                    models, salt, the sender's ephemeral X25519 public
                                                    key and the packet key wrapped through it
    frames: u32 n | u8 last | n bytes               the chunked AES-256-GCM framing of backup archives
                                                    (engine.ops.archive) under the packet key
    u32 n | n bytes of trailer JSON                 {"signature": Ed25519 over the header and the
                                                    SHA-256 of every frame}

Keys: each packet has its own random AES-256 key. It is wrapped (AES-256-GCM) under
HKDF-SHA256(X25519(ephemeral private, recipient's public)), bound to sender, recipient and packet
number, so only the recipient's agreement key opens it; the sender's data key never leaves the sender.

Reading is two passes: the first walks the frames, hashes them and checks the signature (nothing is
decrypted, nothing written), so an altered, reordered, cut-off or foreign packet is refused before
its content is looked at; the second decrypts. Content: JSON lines (``{"t": "record" | "tombstone" |
"decision" | "manifest", ...}``), the last one the manifest with the counts of each kind and the
SHA-256 of the lines before it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.errors import IntegrityError, InvalidInput
from engine.ops.archive import (
    CHUNK_BYTES,
    ArchiveReader,
    ArchiveWriter,
    frame_bytes,
    read_frame,
    read_raw_header,
)
from engine.transfer.site import Peer, SiteIdentity

__all__ = ["MAGIC", "PacketHeader", "PacketReader", "PacketWriter"]

MAGIC = b"NASNAME-TRANSFER\n"
FORMAT = 1
WHAT = "transfer packet"
_INFO = b"nasname-transfer/v1"
_LEN_BYTES = 4
_MAX_TRAILER = 4096


@dataclass(frozen=True)
class PacketHeader:
    sender: str
    recipient: str
    packet: int
    since_seq: int
    upto_seq: int
    created: float
    models: dict[str, str]
    salt: str
    ephemeral: str
    wrapped_key: str
    partition: str | None = None
    with_images: bool = False
    chunk_bytes: int = CHUNK_BYTES
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "kind": "nasname-transfer",
            "sender": self.sender,
            "recipient": self.recipient,
            "packet": self.packet,
            "since_seq": self.since_seq,
            "upto_seq": self.upto_seq,
            "created": self.created,
            "models": self.models,
            "salt": self.salt,
            "ephemeral": self.ephemeral,
            "wrapped_key": self.wrapped_key,
            "partition": self.partition,
            "with_images": self.with_images,
            "chunk_bytes": self.chunk_bytes,
            "cipher": "AES-256-GCM",
            "compression": "zstd",
            "signature": "Ed25519",
            "agreement": "X25519+HKDF-SHA256",
        }
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> PacketHeader:
        try:
            doc = json.loads(raw)
            if doc.get("kind") != "nasname-transfer":
                raise KeyError("kind")
            if doc["format"] != FORMAT:
                raise InvalidInput(
                    f"transfer packet format {doc['format']!r} is not supported (this nasname "
                    f"reads format {FORMAT})",
                    reason="PACKET_FORMAT",
                )
            return cls(
                str(doc["sender"]),
                str(doc["recipient"]),
                int(doc["packet"]),
                int(doc["since_seq"]),
                int(doc["upto_seq"]),
                float(doc["created"]),
                {str(k): str(v) for k, v in doc["models"].items()},
                str(doc["salt"]),
                str(doc["ephemeral"]),
                str(doc["wrapped_key"]),
                doc.get("partition"),
                bool(doc.get("with_images")),
                int(doc["chunk_bytes"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(
                f"transfer packet header is unreadable: {exc}", reason="PACKET_CORRUPT"
            ) from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "recipient": self.recipient,
            "packet": self.packet,
            "since_seq": self.since_seq,
            "upto_seq": self.upto_seq,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "models": self.models,
            "partition": self.partition,
            "with_images": self.with_images,
        }


def _kek(shared: bytes, salt: bytes, sender: str, recipient: str, packet: int) -> bytes:
    info = f"nasname-transfer-wrap/v1|{sender}|{recipient}|{packet}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(shared)


def _signed(raw_header: bytes, frames_digest: bytes) -> bytes:
    return b"nasname-transfer-sig/v1|" + hashlib.sha256(raw_header).digest() + frames_digest


class PacketWriter:
    """Writes one packet to ``out``: :meth:`add` each item, then :meth:`finish` (manifest, last frame,
    signature). Only one chunk is in memory at a time."""

    def __init__(
        self,
        out: IO[bytes],
        site: SiteIdentity,
        recipient: Peer,
        *,
        packet: int,
        since_seq: int,
        upto_seq: int,
        models: dict[str, str],
        partition: str | None,
        with_images: bool,
    ) -> None:
        packet_key = AESGCM.generate_key(bit_length=256)
        salt = os.urandom(16)
        eph = X25519PrivateKey.generate()
        shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient.agree_public))
        kek = _kek(shared, salt, site.site_id, recipient.site_id, packet)
        wrapped = AESGCM(kek).encrypt(bytes(12), packet_key, b"packet-key")  # the kek is used once
        eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.header = PacketHeader(
            site.site_id,
            recipient.site_id,
            packet,
            since_seq,
            upto_seq,
            time.time(),
            models,
            salt.hex(),
            eph_pub.hex(),
            wrapped.hex(),
            partition,
            with_images,
        )
        self._raw = self.header.to_bytes()
        self._site = site
        self._out = out
        self._archive = ArchiveWriter(out, packet_key, self.header, magic=MAGIC, info=_INFO)
        self._lines = hashlib.sha256()
        self.counts: dict[str, int] = {}

    def add(self, item: dict[str, Any]) -> None:
        line = json.dumps(item, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        self._lines.update(line)
        self._archive.write(line)
        kind = str(item["t"])
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def finish(self) -> dict[str, Any]:
        """Write the manifest, the last frame and the signature; returns the manifest."""
        manifest: dict[str, Any] = {
            "t": "manifest",
            "counts": dict(self.counts),
            "sha256": self._lines.hexdigest(),
        }
        self._archive.write(json.dumps(manifest, sort_keys=True).encode() + b"\n")
        self._archive.close()
        signature = self._site.sign_key.sign(_signed(self._raw, self._archive.frames_hash.digest()))
        trailer = json.dumps({"signature": signature.hex()}).encode()
        self._out.write(len(trailer).to_bytes(_LEN_BYTES, "big") + trailer)
        manifest["bytes"] = self._archive.bytes_out + _LEN_BYTES + len(trailer)
        return manifest


def read_header(f: IO[bytes]) -> tuple[PacketHeader, bytes]:
    """The clear header of a packet open at its start (not yet authenticated: see :class:`PacketReader`)."""
    raw = read_raw_header(f, MAGIC, WHAT)
    return PacketHeader.from_bytes(raw), raw


class PacketReader:
    """A packet file open for import. :meth:`verify` (pass one) checks the signature with the sender's
    key; :meth:`items` (pass two) decrypts with this site's agreement key and yields the items."""

    def __init__(self, f: IO[bytes]) -> None:
        if not f.seekable():
            raise InvalidInput("a transfer packet is read from a file", reason="INVALID_REQUEST")
        self._f = f
        self.header, self._raw = read_header(f)
        self._body = f.tell()
        self.verified = False

    def verify(self, sender: Peer) -> None:
        """Refuse (``IntegrityError``) a packet that is cut off, altered, reordered or not signed by
        ``sender``. Reads the whole file; decrypts nothing."""
        f = self._f
        f.seek(self._body)
        frames = hashlib.sha256()
        counter, last = 0, False
        while not last:
            sealed, last = read_frame(f, counter, self.header.chunk_bytes + 64, WHAT)
            frames.update(frame_bytes(sealed, last))
            counter += 1
        raw_len = f.read(_LEN_BYTES)
        n = int.from_bytes(raw_len, "big") if len(raw_len) == _LEN_BYTES else -1
        trailer = f.read(n) if 0 < n <= _MAX_TRAILER else b""
        if n <= 0 or len(trailer) < n:
            raise IntegrityError(
                "transfer packet is cut off: its signature is missing (copy it again from the sending site)",
                reason="PACKET_TRUNCATED",
            )
        if f.read(1):
            raise IntegrityError("transfer packet has data after its signature", reason="PACKET_CORRUPT")
        try:
            signature = bytes.fromhex(json.loads(trailer)["signature"])
            Ed25519PublicKey.from_public_bytes(sender.sign_public).verify(
                signature, _signed(self._raw, frames.digest())
            )
        except (InvalidSignature, ValueError, KeyError, TypeError):
            raise IntegrityError(
                f"transfer packet's signature is not valid for site {sender.site_id!r}: it was "
                "altered, or not made by that site. Nothing was imported.",
                reason="PACKET_SIGNATURE",
            ) from None
        self.verified = True

    def items(self, site: SiteIdentity) -> Iterator[dict[str, Any]]:
        """The items of a verified packet, then checks its manifest (``IntegrityError`` on mismatch)."""
        if not self.verified:
            raise IntegrityError(
                "transfer packet read before its signature was checked", reason="PACKET_CORRUPT"
            )
        h = self.header
        try:
            shared = site.agree_key.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(h.ephemeral)))
            kek = _kek(shared, bytes.fromhex(h.salt), h.sender, h.recipient, h.packet)
            packet_key = AESGCM(kek).decrypt(bytes(12), bytes.fromhex(h.wrapped_key), b"packet-key")
        except (InvalidTag, ValueError):
            raise IntegrityError(
                "transfer packet's key does not open with this site's key (was it made for "
                "another installation with the same site id?)",
                reason="PACKET_KEY",
            ) from None
        self._f.seek(self._body)
        stream = io.BufferedReader(
            ArchiveReader(self._f, packet_key, h, self._raw, info=_INFO, what=WHAT, trailer=True),
            buffer_size=1 << 20,
        )
        lines = hashlib.sha256()
        counts: dict[str, int] = {}
        for line in stream:
            item: dict[str, Any] = json.loads(line)
            if item.get("t") == "manifest":
                if item.get("sha256") != lines.hexdigest() or item.get("counts") != counts:
                    raise IntegrityError(
                        "transfer packet's manifest does not match its content", reason="PACKET_CORRUPT"
                    )
                return
            lines.update(line)
            kind = str(item.get("t"))
            counts[kind] = counts.get(kind, 0) + 1
            yield item
        raise IntegrityError("transfer packet has no manifest", reason="PACKET_CORRUPT")
