"""Export: a packet of what changed since the last packet sent to a peer.

The per-peer ledger (``transfer_peers.out_seq``) holds the change sequence the last packet reached;
a packet holds every record changed after it (``--since SEQ`` overrides), in its current state:

- active records: non-biometric attributes, templates (re-encrypted: the packet is sealed for the
  recipient), optionally kept images, and provenance (origin site, the record's reference id and
  change seq there). Records that came from the recipient are not sent back to it.
- pending records are not sent: they travel once adjudicated;
- decided cases: ``decision`` items (outcome and the candidate ids), so the peer sees why a record
  became active or was erased;
- erasures: ``tombstone`` items (ids and provenance only, no biometrics). A record erased because
  an adjudicator found it a duplicate ("same") is a decision, not a tombstone: the person's record
  at the origin stays.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.datadir import DataDir
from engine.errors import Conflict, InvalidInput
from engine.events import job_event
from engine.fsutil import atomic_write
from engine.store import audit, codec
from engine.transfer.packet import PacketWriter
from engine.transfer.site import load_site, peer
from engine.types import Modality

__all__ = ["ExportResult", "export_packet", "export_to_file", "origin_of"]

_PAGE = 500


@dataclass(frozen=True)
class ExportResult:
    recipient: str
    packet: int
    since_seq: int
    upto_seq: int
    counts: dict[str, int]
    bytes: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "packet": self.packet,
            "since_seq": self.since_seq,
            "upto_seq": self.upto_seq,
            "counts": self.counts,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        c = self.counts
        span = (
            f"changes {self.since_seq + 1}..{self.upto_seq}"
            if self.upto_seq > self.since_seq
            else "no new changes"
        )
        return (
            f"packet {self.packet} for {self.recipient}: {c.get('record', 0)} records, "
            f"{c.get('decision', 0)} adjudication decisions, {c.get('tombstone', 0)} erasures ({span})"
        )


def origin_of(conn: sqlite3.Connection, local_site: str, label: int, ref_id: str) -> tuple[str, str, int]:
    """(origin site, reference id there, change seq there) of a record: from ``transfer_origin`` for an
    imported one, else this site with the record's first change."""
    row = conn.execute(
        "SELECT origin_site, origin_ref, origin_seq FROM transfer_origin WHERE ref_id = ?", (ref_id,)
    ).fetchone()
    if row is not None:
        return str(row[0]), str(row[1]), int(row[2])
    first = conn.execute("SELECT MIN(seq) FROM changes WHERE record_id = ?", (label,)).fetchone()
    return local_site, ref_id, int(first[0] or 0)


def _items(
    datadir: DataDir,
    local_site: str,
    recipient: str,
    since: int,
    upto: int,
    partition: str | None,
    with_images: bool,
) -> Iterator[dict[str, Any]]:
    store, ring = datadir.store, datadir.keyring
    after = 0
    while True:
        with store.db.read() as conn:
            rows = conn.execute(
                "SELECT r.id, r.ref_id, r.partition, r.status, r.attributes FROM records r "
                "WHERE r.id > ? AND r.id IN (SELECT record_id FROM changes WHERE seq > ? AND seq <= ?) "
                "ORDER BY r.id LIMIT ?",
                (after, since, upto, _PAGE),
            ).fetchall()
            if not rows:
                return
            after = int(rows[-1][0])
            page: list[dict[str, Any]] = []
            for label, ref_id, part, status, attributes in rows:
                if partition is not None and part != partition:
                    continue
                origin = origin_of(conn, local_site, int(label), str(ref_id))
                prov = {"origin_site": origin[0], "origin_ref": origin[1], "origin_seq": origin[2]}
                case = conn.execute(
                    "SELECT outcome, candidates FROM adjudication WHERE record_id = ?", (label,)
                ).fetchone()
                if case is not None and case[0] is not None:
                    mates = sorted({str(c.get("ref_id")) for c in json.loads(case[1])})
                    page.append(
                        {"t": "decision", **prov, "ref_id": ref_id, "outcome": case[0], "candidates": mates}
                    )
                if origin[0] == recipient:
                    continue  # it came from the recipient: only the decision on it goes back
                if status == "deleted":
                    if case is None or case[0] != "same":
                        page.append({"t": "tombstone", **prov, "ref_id": ref_id})
                    continue
                if status != "active":
                    continue
                templates = {}
                for modality, blob in conn.execute(
                    "SELECT modality, blob FROM templates WHERE record_id = ? ORDER BY modality", (label,)
                ):
                    t = codec.open_template(ring, int(label), Modality(modality), blob)
                    templates[str(modality)] = base64.b64encode(t.to_bytes()).decode()
                item: dict[str, Any] = {
                    "t": "record",
                    **prov,
                    "ref_id": ref_id,
                    "partition": part,
                    "attributes": attributes,
                    "templates": templates,
                }
                if with_images:
                    images = {}
                    for (modality,) in conn.execute(
                        "SELECT modality FROM images WHERE record_id = ?", (label,)
                    ):
                        image = store.get_image(str(ref_id), Modality(modality))
                        if image is not None:
                            images[str(modality)] = base64.b64encode(image).decode()
                    if images:
                        item["images"] = images
                page.append(item)
        yield from page


def export_packet(
    datadir: DataDir,
    to_site: str,
    out: IO[bytes],
    *,
    since: int | None = None,
    partition: str | None = None,
    with_images: bool = False,
    actor: str = "system",
) -> ExportResult:
    """Write the next packet for ``to_site`` to ``out`` and record it in the ledger (only once the
    packet is whole). ``since``: a change seq to start after instead of the ledger's (a lost stick)."""
    with job_event(datadir.events, "transfer_export", station=actor) as ev:
        result = _export_packet(datadir, to_site, out, since=since, partition=partition,
                                with_images=with_images, actor=actor)
        ev.partition, ev.count = partition or "", int(result.counts.get("record", 0))
        return result


def _export_packet(datadir: DataDir, to_site: str, out: IO[bytes], *, since: int | None,
                   partition: str | None, with_images: bool, actor: str) -> ExportResult:
    started = time.monotonic()
    site = load_site(datadir)
    recipient = peer(datadir, to_site)
    if since is not None and since < 0:
        raise InvalidInput("--since must be >= 0", reason="INVALID_REQUEST")
    start = recipient.out_seq if since is None else since
    upto = datadir.store.last_seq()
    number = recipient.out_packet + 1
    models = {m.value: str(ref) for m, ref in datadir.store.models().items()}
    writer = PacketWriter(
        out,
        site,
        recipient,
        packet=number,
        since_seq=start,
        upto_seq=upto,
        models=models,
        partition=partition,
        with_images=with_images,
    )
    for item in _items(datadir, site.site_id, to_site, start, upto, partition, with_images):
        writer.add(item)
    manifest = writer.finish()
    with datadir.store.db.write() as conn:
        cur = conn.execute(
            "UPDATE transfer_peers SET out_packet = ?, out_seq = MAX(out_seq, ?), out_time = ? "
            "WHERE site_id = ? AND out_packet = ?",
            (number, upto, time.time(), to_site, number - 1),
        )
        if cur.rowcount != 1:
            raise Conflict(
                f"another packet for {to_site} was exported meanwhile; export again", reason="EXPORT_RACE"
            )
        audit.append(
            conn,
            actor,
            "transfer_export",
            None,
            {
                "to": to_site,
                "packet": number,
                "since_seq": start,
                "upto_seq": upto,
                "counts": manifest["counts"],
            },
        )
    return ExportResult(
        to_site,
        number,
        start,
        upto,
        dict(manifest["counts"]),
        int(manifest["bytes"]),
        time.monotonic() - started,
    )


def export_to_file(datadir: DataDir, to_site: str, path: Path, **kwargs: Any) -> ExportResult:
    """:func:`export_packet` into ``path`` (written whole or not at all, 0600)."""
    result: list[ExportResult] = []
    atomic_write(Path(path), lambda f: result.append(export_packet(datadir, to_site, f, **kwargs)))
    return result[0]
