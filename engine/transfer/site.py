"""This site's identity (site id, Ed25519 signing and X25519 key-agreement key pairs) and its peers.

The identity is created once, at the first start of a data directory, in ``DataDir.site_path``
(``site.json``): the site id and public keys in clear, the private keys sealed by the data key
(``KeyRing.encrypt``), so a copied ``site.json`` without the key signs and opens nothing. A backup of
the data directory carries it like any other file.

Peers are trusted explicitly (``nasname site trust FILE`` with the file a peer's ``site
export-public`` wrote), never on first use; a revoked peer's packets are refused. Peers and the
per-peer ledger live in the store (``transfer_peers``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from engine.datadir import DataDir
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.fsutil import write_atomic
from engine.store import audit

__all__ = [
    "Peer",
    "PublicSite",
    "SiteIdentity",
    "ensure_site",
    "fingerprint",
    "load_site",
    "peer",
    "peers",
    "revoke",
    "trust",
]

log = logging.getLogger(__name__)

FORMAT = 1
_SITE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_RAW = serialization.Encoding.Raw
_PUB = serialization.PublicFormat.Raw
_PRIV = serialization.PrivateFormat.Raw
_NOENC = serialization.NoEncryption()


def fingerprint(public: bytes) -> str:
    """A short, readable fingerprint of a public key (what two officers compare by phone)."""
    h = hashlib.sha256(b"nasname-site-key/v1|" + public).hexdigest()[:32]
    return ":".join(h[i : i + 4] for i in range(0, 32, 4))


def check_site_id(site_id: str) -> str:
    if not _SITE_ID.match(site_id):
        raise InvalidInput(
            f"site id {site_id!r} must be 1-63 lower-case letters, digits, '.', '_' or '-'",
            reason="INVALID_SITE_ID",
        )
    return site_id


@dataclass(frozen=True)
class PublicSite:
    """A site's public part: what ``site export-public`` writes and ``site trust`` reads."""

    site_id: str
    sign_public: bytes
    agree_public: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": "nasname-site-public",
            "site_id": self.site_id,
            "sign_public": self.sign_public.hex(),
            "agree_public": self.agree_public.hex(),
            "sign_fingerprint": fingerprint(self.sign_public),
            "agree_fingerprint": fingerprint(self.agree_public),
        }

    @classmethod
    def from_json(cls, doc: Any) -> PublicSite:
        try:
            if doc["kind"] != "nasname-site-public":
                raise KeyError("kind")
            site = cls(
                check_site_id(str(doc["site_id"])),
                bytes.fromhex(doc["sign_public"]),
                bytes.fromhex(doc["agree_public"]),
            )
            Ed25519PublicKey.from_public_bytes(site.sign_public)
            X25519PublicKey.from_public_bytes(site.agree_public)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a nasname site public file ({exc})", reason="NOT_A_SITE_FILE") from exc
        return site


class SiteIdentity:
    """This site: its id and both key pairs (private keys only in memory once opened)."""

    def __init__(
        self, site_id: str, sign: Ed25519PrivateKey, agree: X25519PrivateKey, created: float
    ) -> None:
        self.site_id = site_id
        self.sign_key = sign
        self.agree_key = agree
        self.created = created
        self.public = PublicSite(
            site_id, sign.public_key().public_bytes(_RAW, _PUB), agree.public_key().public_bytes(_RAW, _PUB)
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.public.to_json(), "created": _iso(self.created)}


def _aad(site_id: str, which: str) -> bytes:
    return f"nasname/v1|site|{site_id}|{which}".encode()


def slug(name: str) -> str:
    """A site id from the configured ``site_id`` (free text there): lower case, other characters -> '-'."""
    return re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip("-._")[:63]


def ensure_site(datadir: DataDir, site_id: str = "") -> SiteIdentity:
    """The site of ``datadir``; created (id from the configured ``site_id``, else generated) when it has
    none yet. The id never changes afterwards (peers trust it): a different configured name only
    gets a warning."""
    path = datadir.site_path
    if path.exists():
        site = load_site(datadir)
        if site_id and slug(site_id) != site.site_id:
            log.warning(
                "site_id is configured as %r but this data directory is site %r (a site's id does not "
                "change once created)",
                site_id,
                site.site_id,
            )
        return site
    if not datadir.exclusive:
        raise NotFound(
            f"{datadir.root} has no site identity yet (it is created at the first start)", reason="NO_SITE"
        )
    sid = check_site_id(slug(site_id) or f"site-{uuid.uuid4().hex[:8]}")
    sign, agree = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    ring = datadir.keyring
    doc = {
        **PublicSite(
            sid, sign.public_key().public_bytes(_RAW, _PUB), agree.public_key().public_bytes(_RAW, _PUB)
        ).to_json(),
        "kind": "nasname-site",
        "created": time.time(),
        "key_id": ring.key_id,
        "sign_private": ring.encrypt(sign.private_bytes(_RAW, _PRIV, _NOENC), _aad(sid, "sign")).hex(),
        "agree_private": ring.encrypt(agree.private_bytes(_RAW, _PRIV, _NOENC), _aad(sid, "agree")).hex(),
    }
    write_atomic(path, json.dumps(doc, indent=1).encode())
    return load_site(datadir)


def load_site(datadir: DataDir) -> SiteIdentity:
    try:
        doc = json.loads(datadir.site_path.read_text())
    except FileNotFoundError:
        raise NotFound(
            f"{datadir.root} has no site identity yet (it is created at the first start)", reason="NO_SITE"
        ) from None
    sid = str(doc["site_id"])
    ring = datadir.keyring
    sign = Ed25519PrivateKey.from_private_bytes(
        ring.decrypt(bytes.fromhex(doc["sign_private"]), _aad(sid, "sign"))
    )
    agree = X25519PrivateKey.from_private_bytes(
        ring.decrypt(bytes.fromhex(doc["agree_private"]), _aad(sid, "agree"))
    )
    return SiteIdentity(sid, sign, agree, float(doc["created"]))


# -- peers -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A trusted (or revoked) site and this site's ledger with it."""

    site_id: str
    sign_public: bytes
    agree_public: bytes
    trusted: float
    revoked: float | None
    out_packet: int
    out_seq: int
    out_time: float | None
    in_packet: int
    in_seq: int
    in_time: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "sign_fingerprint": fingerprint(self.sign_public),
            "agree_fingerprint": fingerprint(self.agree_public),
            "trusted": _iso(self.trusted),
            "revoked": _iso(self.revoked),
            "last_sent_packet": self.out_packet,
            "last_sent_seq": self.out_seq,
            "last_sent": _iso(self.out_time),
            "last_received_packet": self.in_packet,
            "last_received_seq": self.in_seq,
            "last_received": _iso(self.in_time),
        }


_PEER_COLUMNS = (
    "site_id, sign_public, agree_public, trusted, revoked, out_packet, out_seq, out_time, "
    "in_packet, in_seq, in_time"
)


def _peer(row: Any) -> Peer:
    return Peer(
        str(row[0]),
        bytes(row[1]),
        bytes(row[2]),
        float(row[3]),
        row[4],
        int(row[5]),
        int(row[6]),
        row[7],
        int(row[8]),
        int(row[9]),
        row[10],
    )


def peers(datadir: DataDir) -> list[Peer]:
    with datadir.store.db.read() as conn:
        return [
            _peer(r) for r in conn.execute(f"SELECT {_PEER_COLUMNS} FROM transfer_peers ORDER BY site_id")
        ]


def peer(datadir: DataDir, site_id: str, *, active: bool = True) -> Peer:
    """The peer ``site_id``; with ``active``, ``PermissionDenied`` when it is unknown or revoked."""
    with datadir.store.db.read() as conn:
        row = conn.execute(
            f"SELECT {_PEER_COLUMNS} FROM transfer_peers WHERE site_id = ?", (site_id,)
        ).fetchone()
    if row is None:
        if active:
            raise PermissionDenied(
                f"site {site_id!r} is not a trusted peer of this site; trust it first with "
                "`nasname site trust FILE` (its `site export-public` file)",
                reason="PEER_UNKNOWN",
                details={"site_id": site_id},
            )
        raise NotFound(f"site {site_id!r} is not a peer of this site", reason="PEER_UNKNOWN")
    found = _peer(row)
    if active and found.revoked is not None:
        raise PermissionDenied(
            f"site {site_id!r} was revoked on {_iso(found.revoked)}; nothing is exchanged with it",
            reason="PEER_REVOKED",
            details={"site_id": site_id},
        )
    return found


def trust(datadir: DataDir, public: PublicSite, *, actor: str) -> Peer:
    """Register ``public`` as a trusted peer (also re-trusts a revoked one with the same keys). A peer
    id already trusted with other keys is refused: key changes need an explicit revoke first."""
    own = load_site(datadir)
    if public.site_id == own.site_id:
        raise InvalidInput("a site cannot trust itself", reason="INVALID_REQUEST")
    now = time.time()
    with datadir.store.db.write() as conn:
        row = conn.execute(
            "SELECT sign_public, agree_public, revoked FROM transfer_peers WHERE site_id = ?",
            (public.site_id,),
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO transfer_peers (site_id, sign_public, agree_public, trusted) "
                "VALUES (?, ?, ?, ?)",
                (public.site_id, public.sign_public, public.agree_public, now),
            )
        elif (bytes(row[0]), bytes(row[1])) != (public.sign_public, public.agree_public):
            if row[2] is None:
                raise Conflict(
                    f"site {public.site_id!r} is already trusted with other keys; revoke it first "
                    "if its keys really changed",
                    reason="PEER_KEYS_DIFFER",
                )
            conn.execute(
                "UPDATE transfer_peers SET sign_public = ?, agree_public = ?, trusted = ?, "
                "revoked = NULL WHERE site_id = ?",
                (public.sign_public, public.agree_public, now, public.site_id),
            )
        else:
            conn.execute(
                "UPDATE transfer_peers SET revoked = NULL, trusted = ? WHERE site_id = ?",
                (now, public.site_id),
            )
        audit.append(
            conn,
            actor,
            "site_trust",
            None,
            {"site_id": public.site_id, "sign_fingerprint": fingerprint(public.sign_public)},
        )
    return peer(datadir, public.site_id)


def revoke(datadir: DataDir, site_id: str, *, actor: str) -> Peer:
    now = time.time()
    with datadir.store.db.write() as conn:
        cur = conn.execute(
            "UPDATE transfer_peers SET revoked = ? WHERE site_id = ? AND revoked IS NULL", (now, site_id)
        )
        if cur.rowcount == 0:
            raise NotFound(f"site {site_id!r} is not a trusted peer", reason="PEER_UNKNOWN")
        audit.append(conn, actor, "site_revoke", None, {"site_id": site_id})
    return peer(datadir, site_id, active=False)


def read_public(path: Path) -> PublicSite:
    """A peer's ``site export-public`` file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read site file {path}: {exc}", reason="NOT_A_SITE_FILE") from exc
    return parse_public(text, what=f"site file {path}")


def parse_public(text: str, *, what: str = "the site file") -> PublicSite:
    """The content of a peer's ``site export-public`` file (as sent over the admin RPC)."""
    try:
        return PublicSite.from_json(json.loads(text))
    except ValueError as exc:
        raise InvalidInput(f"cannot read {what}: {exc}", reason="NOT_A_SITE_FILE") from exc


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
