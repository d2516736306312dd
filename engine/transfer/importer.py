"""Import: one resumable job (engine.jobs) that de-duplicates each incoming record against this gallery.

Before anything is written (not even the job folder) a packet is refused when it is for another
site, its sender is unknown or revoked, its signature does not hold (altered, reordered, cut off),
it was imported already (replay) or an earlier packet from that sender is missing (out of order), or
the sender makes templates with another model (unless ``re_extract`` and the packet carries images:
those templates are then made again here from the images, and a record without a usable image is
``refused``, by name in the audit log). Then each item, in order:

- record, no match (the engine's fused rule, as an enrollment): inserted active, its origin kept;
- record that matches (a stored record, or an earlier record of the same packet): inserted pending,
  its case carrying the candidates and both sites' provenance;
- record whose reference id exists here with other content: pending as ``REF@ORIGIN`` with a conflict
  case naming the local record (never merged, never dropped);
- record already here (same origin): unchanged;
- tombstone: the copies of that origin's record are erased (never this site's own records);
- decision: written to the audit log.

Records go in blocks (``BLOCK``) through ``Engine.enroll_many``: one batched search per modality and one
transaction per block, with the outcomes exactly those of enrolling the records one by one. The
block's ``transfer_origin`` / ``transfer_items`` rows and the job's checkpoint (the items done, in
``meta``) are committed in the block's transaction; a tombstone or decision is applied on its own (an
erasure marked in ``transfer_items`` before and confirmed after) with the checkpoint past it. A job
killed at any instant therefore resumes from the checkpoint to the result of an uninterrupted run. The
ledger moves to the packet's number at the end; importing it again is then refused as a replay,
changing nothing.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.engine import BatchEntry
from engine.errors import Conflict, InvalidInput, ModelMismatch, SampleRejected
from engine.events import job_event
from engine.jobs import JobCancelled, JobFiles, Progress
from engine.records import Sample
from engine.store import WriteResult, audit
from engine.transfer.export import origin_of
from engine.transfer.packet import PacketReader
from engine.transfer.site import Peer, SiteIdentity, load_site, peer
from engine.types import Modality, Template, template_from_bytes

if TYPE_CHECKING:
    from engine.engine import Engine

__all__ = ["KIND", "ImportJob", "ImportSummary", "import_packet", "start_import"]

KIND = "transfer-import"
# Records de-duplicated together: one batched search per modality, one transaction. Enrolments of the
# running server wait while a block is searched and written (the search-then-store of an enrolment is
# atomic), so a block is kept short: about 256 x 2 iris scans of the gallery (~8 s at 100k here).
BLOCK = 256
OUTCOMES = ("new", "adjudication", "conflict", "unchanged", "erased", "decision", "own", "refused")


@dataclass(frozen=True)
class ImportSummary:
    sender: str
    packet: int
    counts: dict[str, int]
    job_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "packet": self.packet,
            "counts": self.counts,
            "job_id": self.job_id,
            "summary": self.text(),
        }

    def text(self) -> str:
        c = self.counts
        extra = [f"{c[k]} {k}" for k in ("conflict", "unchanged") if c.get(k)]
        if c.get("refused"):
            extra.append(f"{c['refused']} refused: their images could not be re-extracted here")
        return (
            f"packet {self.packet} from {self.sender}: {c.get('new', 0)} new, {c.get('adjudication', 0)} "
            f"sent to adjudication, {c.get('erased', 0)} erasures applied"
            + ("" if not extra else " (" + ", ".join(extra) + ")")
        )


def _checkpoint_key(sender: str, packet: int) -> str:
    """The ``meta`` key of an import's checkpoint: the items of the packet applied so far."""
    return f"transfer.import.{sender}.{packet}"


def _save_checkpoint(conn: sqlite3.Connection, sender: str, packet: int, items: int) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        (_checkpoint_key(sender, packet), str(items)),
    )


def _same(a: Mapping[Modality, Template], b: Mapping[Modality, Template]) -> bool:
    return set(a) == set(b) and all(a[m].to_bytes() == t.to_bytes() for m, t in b.items())


def _open_checked(
    engine: Engine, path: Path, *, re_extract: bool = False
) -> tuple[PacketReader, Any, SiteIdentity, Peer, frozenset[Modality]]:
    """Open and check a packet; the file is returned open (caller closes), with the modalities whose
    templates are to be made again here from the packet's images (``re_extract``: the sender's model
    of those differs from this site's)."""
    datadir = engine.datadir
    site = load_site(datadir)
    try:
        f = open(path, "rb")  # noqa: SIM115 - handed to the caller
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the packet file {path}: {exc.strerror}", reason="PACKET_UNREADABLE"
        ) from None
    try:
        reader = PacketReader(f)
        h = reader.header
        if h.recipient != site.site_id:
            raise InvalidInput(
                f"this packet is for site {h.recipient!r}, and this is site {site.site_id!r}; "
                "nothing was imported",
                reason="PACKET_FOREIGN",
            )
        sender = peer(datadir, h.sender)
        reader.verify(sender)
        local = datadir.store.models()
        other: set[Modality] = set()
        for name, model in h.models.items():
            mine = local.get(Modality.parse(name))
            if mine is None or str(mine) == model:
                continue
            other.add(Modality.parse(name))
            if re_extract and h.with_images:
                continue
            if re_extract:
                how = (
                    "--re-extract needs the images, and this packet was exported without them "
                    "(the sender can export again with --with-images)"
                )
            elif h.with_images:
                how = (
                    "the packet carries images: import it with --re-extract to make the templates again "
                    "from them with this site's model"
                )
            else:
                how = (
                    "both sites must use the same model (nasname models switch-face), or the sender "
                    "exports with --with-images and this site imports with --re-extract"
                )
            raise ModelMismatch(
                f"site {h.sender!r} makes {name} templates with {model}, this site with {mine}: "
                f"they cannot be compared, so nothing was imported. {how[0].upper()}{how[1:]}.",
                details={
                    "modality": name,
                    "sender_model": model,
                    "local_model": str(mine),
                    "images": h.with_images,
                },
            )
        return reader, f, site, sender, frozenset(other)
    except BaseException:
        f.close()
        raise


def start_import(
    engine: Engine, path: Path, *, actor: str = "system", block: int = BLOCK, re_extract: bool = False
) -> ImportJob:
    """Check the packet at ``path`` and make (or find, when an earlier run was interrupted) its import
    job. Raises before anything is written when the packet is refused (see module doc).
    ``re_extract``: templates of a model other than this site's are made again from the packet's
    images with this site's extractor (instead of refusing the packet)."""
    path = Path(path).resolve()
    reader, f, _, sender, _ = _open_checked(engine, path, re_extract=re_extract)
    f.close()
    h = reader.header
    root = engine.datadir.jobs_dir(KIND)
    for d in sorted(root.iterdir()):
        files = JobFiles(d)
        if files.exists:
            meta = files.meta()
            if (
                meta.get("sender") == h.sender
                and meta.get("packet") == h.packet
                and meta.get("state") != "done"
            ):
                meta_path = Path(str(meta["path"]))
                if meta_path != path or (re_extract and not meta.get("re_extract")):
                    files.set_state(str(meta["state"]), path=str(path), re_extract=re_extract)
                return ImportJob(engine, d, block=block)
    if h.packet <= sender.in_packet:
        raise Conflict(
            f"packet {h.packet} from {h.sender} was imported already (the last one imported from it "
            f"is {sender.in_packet}); nothing changed",
            reason="PACKET_REPLAYED",
            details={"sender": h.sender, "packet": h.packet},
        )
    if h.packet != sender.in_packet + 1:
        raise Conflict(
            f"packet {h.packet} from {h.sender} arrived out of order: packet {sender.in_packet + 1} "
            "must be imported first; nothing was imported",
            reason="PACKET_OUT_OF_ORDER",
            details={"sender": h.sender, "packet": h.packet, "expected": sender.in_packet + 1},
        )
    from engine.jobs import new_job_id

    job_id = new_job_id()
    JobFiles.create(
        root / job_id,
        KIND,
        job_id=job_id,
        first_stage="import",
        sender=h.sender,
        packet=h.packet,
        path=str(path),
        actor=actor,
        re_extract=re_extract,
    )
    return ImportJob(engine, root / job_id, block=block)


def import_packet(
    engine: Engine,
    path: Path,
    *,
    actor: str = "system",
    on_item: Callable[[int], None] | None = None,
    block: int = BLOCK,
    re_extract: bool = False,
) -> ImportSummary:
    """Check and import the packet at ``path`` in the foreground (``on_item(n)``: called after each
    commit, with the number of items done; ``block``: records de-duplicated together; ``re_extract``:
    see :func:`start_import`)."""
    return start_import(engine, path, actor=actor, block=block, re_extract=re_extract).run(on_item=on_item)


class ImportJob:
    """The import of one packet (a ``RunnableJob``)."""

    def __init__(self, engine: Engine, directory: Path, *, block: int = BLOCK) -> None:
        if block < 1:
            raise InvalidInput("an import block holds at least one record", reason="INVALID_REQUEST")
        self.engine = engine
        self.files = JobFiles(directory)
        self.block = block
        self.again: frozenset[Modality] = frozenset()  # modalities re-extracted from images

    @property
    def job_id(self) -> str:
        return str(self.files.meta()["id"])

    def resume(self, on_progress: Callable[[Progress], None] | None = None) -> ImportSummary:
        return self.run(on_progress)

    def run(
        self,
        on_progress: Callable[[Progress], None] | None = None,
        on_item: Callable[[int], None] | None = None,
    ) -> ImportSummary:
        """Import (or go on importing) the packet, recorded in the operations event log
        (``transfer_import``: outcome, duration, records received)."""
        with job_event(self.engine.events, "transfer_import") as ev:
            summary = self._run(on_progress, on_item)
            ev.count = sum(int(summary.counts.get(k, 0)) for k in ("new", "adjudication", "conflict"))
            return summary

    def _run(
        self,
        on_progress: Callable[[Progress], None] | None,
        on_item: Callable[[int], None] | None,
    ) -> ImportSummary:
        meta = self.files.meta()
        if meta["state"] == "done":
            return self._summary(meta)
        self.files.clear_cancel()
        self.files.set_state("running")
        started = time.monotonic()
        try:
            reader, f, site, sender, self.again = _open_checked(
                self.engine, Path(str(meta["path"])), re_extract=bool(meta.get("re_extract"))
            )
        except BaseException as exc:
            self.files.set_state("failed", error=str(exc))
            raise
        packet = reader.header.packet
        try:
            start = int(self.engine.datadir.store.get_meta(_checkpoint_key(sender.site_id, packet)) or 0)
            done = start
            block: list[tuple[int, dict[str, Any]]] = []

            def committed(n: int) -> None:
                nonlocal done
                done = n
                if on_item is not None:
                    on_item(done)
                self.files.save_checkpoint({"stage": "import", "item": done})  # for progress only
                if on_progress is not None:
                    on_progress(self.progress())
                if self.files.cancel_requested():
                    self.files.set_state("cancelled")
                    raise JobCancelled(f"transfer import {meta['id']} cancelled at item {done}")

            for i, item in enumerate(reader.items(site)):
                if i < start:
                    continue
                if item.get("t") == "record":
                    block.append((i, item))
                    if len(block) >= self.block:
                        self._records(site, sender.site_id, packet, block)
                        block = []
                        committed(i + 1)
                    continue
                if block:  # a tombstone or decision: the records before it first, as they came
                    self._records(site, sender.site_id, packet, block)
                    block = []
                self._item(site, sender.site_id, packet, i, item)
                committed(i + 1)
            if block:
                self._records(site, sender.site_id, packet, block)
                committed(block[-1][0] + 1)
            self._finish(reader.header.sender, packet, reader.header.upto_seq, meta)
        except JobCancelled:
            raise
        except BaseException as exc:
            self.files.set_state("failed", error=str(exc))
            raise
        finally:
            f.close()
        self.files.save_checkpoint({"stage": "done", "item": done})
        summary = self._summary(meta)
        self.files.set_state("done", counts=summary.counts, seconds=time.monotonic() - started)
        return summary

    def progress(self) -> Progress:
        meta = self.files.meta()
        cp = self.files.checkpoint()
        n = int(cp.get("item", 0))
        counts = self._counts(str(meta["sender"]), int(meta["packet"]))
        state = str(meta["state"])
        return Progress(
            str(meta["id"]),
            state,
            str(cp.get("stage", "import")),
            n,
            n,
            counts.get("adjudication", 0) + counts.get("conflict", 0),
            float(meta["updated"]) - float(meta["created"]),
            None,
            f"packet {meta['packet']} from {meta['sender']}",
        )

    # -- items ---------------------------------------------------------------------------------

    def _counts(self, sender: str, packet: int) -> dict[str, int]:
        """Outcomes of the packet's items: records it inserted from ``transfer_origin`` (no second
        write per record), everything else from ``transfer_items``."""
        counts: dict[str, int] = {}
        with self.engine.datadir.store.db.read() as conn:
            rows = conn.execute(
                "SELECT outcome, COUNT(*) FROM transfer_items WHERE peer = ? AND packet = ? GROUP BY outcome "
                "UNION ALL SELECT CASE WHEN o.conflict THEN 'conflict' WHEN r.status = 'pending' "
                "THEN 'adjudication' ELSE 'new' END, COUNT(*) FROM transfer_origin o JOIN records r "
                "ON r.ref_id = o.ref_id WHERE o.peer = ? AND o.packet = ? GROUP BY 1",
                (sender, packet, sender, packet),
            ).fetchall()
        for outcome, n in rows:
            counts[str(outcome)] = counts.get(str(outcome), 0) + int(n)
        return counts

    def _summary(self, meta: dict[str, Any]) -> ImportSummary:
        sender, packet = str(meta["sender"]), int(meta["packet"])
        counts = self._counts(sender, packet)
        counts.pop("erasing", None)
        return ImportSummary(sender, packet, counts, str(meta["id"]))

    def _item(self, site: SiteIdentity, sender: str, packet: int, i: int, item: dict[str, Any]) -> None:
        """A tombstone or decision: its outcome and the checkpoint past it in one transaction."""
        store = self.engine.datadir.store
        with store.db.read() as conn:
            row = conn.execute(
                "SELECT outcome FROM transfer_items WHERE peer = ? AND packet = ? AND item = ?",
                (sender, packet, i),
            ).fetchone()
        kind = item.get("t")
        if row is not None and row[0] != "erasing":
            outcome = str(row[0])
        elif kind == "tombstone":
            outcome = self._tombstone(site, sender, packet, i, item)
        elif kind == "decision":
            outcome = "decision"
        else:
            raise InvalidInput(
                f"transfer packet item {i} has an unknown kind {kind!r}", reason="PACKET_CORRUPT"
            )
        with store.db.write() as conn:
            if kind == "decision" and row is None:
                audit.append(
                    conn,
                    "transfer",
                    "transfer_decision",
                    None,
                    {k: item.get(k) for k in ("origin_site", "origin_ref", "outcome", "candidates")}
                    | {"from": sender, "packet": packet},
                )
            conn.execute(
                "INSERT OR REPLACE INTO transfer_items (peer, packet, item, outcome) VALUES (?, ?, ?, ?)",
                (sender, packet, i, outcome),
            )
            _save_checkpoint(conn, sender, packet, i + 1)

    def _records(
        self, site: SiteIdentity, sender: str, packet: int, block: list[tuple[int, dict[str, Any]]]
    ) -> None:
        """A block of record items, each new, a match (adjudication), a conflict, unchanged or this
        site's own, decided exactly as one by one in packet order (``Engine.enroll_many``) and written
        with the checkpoint past the block in one transaction."""
        store = self.engine.datadir.store
        facts: list[tuple[list[tuple[str, int]], int | None, tuple[str, str, int] | None]] = []
        with store.db.read() as conn:
            for _, item in block:
                copies = [
                    (str(p), int(n))
                    for p, n in conn.execute(
                        "SELECT o.peer, o.packet FROM transfer_origin o JOIN records r "
                        "ON r.ref_id = o.ref_id WHERE o.origin_site = ? AND o.origin_ref = ?",
                        (str(item["origin_site"]), str(item["origin_ref"])),
                    )
                ]
                ref_id = str(item["ref_id"])
                clash = conn.execute("SELECT id FROM records WHERE ref_id = ?", (ref_id,)).fetchone()
                local = origin_of(conn, site.site_id, int(clash[0]), ref_id) if clash is not None else None
                facts.append((copies, None if clash is None else int(clash[0]), local))
        entries: list[BatchEntry] = []
        incoming: list[dict[str, Any]] = []
        origin_rows: list[tuple[str, str, str, int, str, int, int]] = []
        outcomes: list[tuple[str, int, int, str]] = []
        refused: list[dict[str, str]] = []
        # what this block placed so far (templates, origin), as the store would show it to later items
        placed: dict[str, tuple[dict[Modality, Template], tuple[str, str, int]]] = {}
        origins: set[tuple[str, str]] = set()
        for (i, item), (copies, clash, local) in zip(block, facts, strict=True):
            origin = (str(item["origin_site"]), str(item["origin_ref"]), int(item["origin_seq"]))
            if origin[0] == site.site_id:
                outcomes.append((sender, packet, i, "own"))  # our own record, back through a third site
                continue
            if copies or origin[:2] in origins:
                if (sender, packet) not in copies:  # else inserted by this packet (an older resume)
                    outcomes.append((sender, packet, i, "unchanged"))
                continue
            templates = {
                Modality.parse(m): template_from_bytes(base64.b64decode(b))
                for m, b in item["templates"].items()
            }
            images = {Modality.parse(m): base64.b64decode(b) for m, b in (item.get("images") or {}).items()}
            if self.again & templates.keys():
                made = self._re_extract(templates, images)
                if isinstance(made, str):  # no image, or the image fails here: never imported half-made
                    outcomes.append((sender, packet, i, "refused"))
                    refused.append({"origin_site": origin[0], "origin_ref": origin[1], "reason": made})
                    continue
                templates = made
            ref_id = target = str(item["ref_id"])
            conflict: list[dict[str, Any]] | None = None
            if clash is not None or ref_id in placed:
                held, held_origin = (
                    placed[ref_id] if ref_id in placed else (self._templates_of(ref_id), local)
                )
                if _same(held, templates):
                    outcomes.append((sender, packet, i, "unchanged"))
                    continue
                assert held_origin is not None
                target = f"{ref_id}@{origin[0]}"
                conflict = [
                    {
                        "ref_id": ref_id,
                        "conflict": "same reference id, different content",
                        "site": held_origin[0],
                        "origin_ref": held_origin[1],
                    }
                ]
            came = {
                "origin_site": origin[0],
                "origin_ref": origin[1],
                "origin_seq": origin[2],
                "via": sender,
                "packet": packet,
            }
            origins.add(origin[:2])
            placed[target] = (templates, origin)
            origin_rows.append((target, *origin, sender, packet, int(conflict is not None)))
            incoming.append(came)
            entries.append(
                BatchEntry(
                    target,
                    templates,
                    partition=str(item["partition"]),
                    attributes=json.loads(item.get("attributes") or "{}"),
                    images=images,
                    candidates=None if conflict is None else [{**c, "incoming": came} for c in conflict],
                )
            )

        def annotate(j: int, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """Both sites' provenance on each candidate (an earlier record of this block, or a stored one)."""
            names = [str(c["ref_id"]) for c in candidates]
            labels = store.labels_of([n for n in names if n not in placed], status=None)
            out = []
            with store.db.read() as conn:
                for c, name in zip(candidates, names, strict=True):
                    o = (
                        placed[name][1]
                        if name in placed
                        else origin_of(conn, site.site_id, labels.get(name, 0), name)
                    )
                    out.append({**c, "site": o[0], "origin_ref": o[1], "incoming": incoming[j]})
            return out

        def also(conn: sqlite3.Connection, _: list[WriteResult]) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO transfer_origin (ref_id, origin_site, origin_ref, origin_seq, peer, "
                "packet, conflict) VALUES (?, ?, ?, ?, ?, ?, ?)",
                origin_rows,
            )
            conn.executemany(
                "INSERT OR REPLACE INTO transfer_items (peer, packet, item, outcome) VALUES (?, ?, ?, ?)",
                outcomes,
            )
            for r in refused:
                audit.append(
                    conn, "transfer", "transfer_refused", None, r | {"from": sender, "packet": packet}
                )
            _save_checkpoint(conn, sender, packet, block[-1][0] + 1)

        self.engine.enroll_many(entries, actor="transfer", annotate=annotate, also=also)

    def _re_extract(
        self, templates: dict[Modality, Template], images: dict[Modality, bytes]
    ) -> dict[Modality, Template] | str:
        """The record's templates with those of another model made again from its images by this
        site's extractors (``Engine.extract``), or why that cannot be done."""
        out = dict(templates)
        for m in sorted(self.again & templates.keys(), key=lambda x: x.value):
            if m not in images:
                return f"no {m.value} image to make a template from with this site's model"
            try:
                made, _ = self.engine.extract([Sample(m, image=images[m])])
            except (SampleRejected, InvalidInput) as exc:
                return f"the {m.value} image was refused by this site's extractor: {exc}"
            out[m] = made[m]
        return out

    def _templates_of(self, ref_id: str) -> dict[Modality, Template]:
        return dict(self.engine.datadir.store.get(ref_id).templates)

    def _tombstone(self, site: SiteIdentity, sender: str, packet: int, i: int, item: dict[str, Any]) -> str:
        origin_site, origin_ref = str(item["origin_site"]), str(item["origin_ref"])
        if origin_site == site.site_id:
            return "own"  # a peer never erases this site's own records
        store = self.engine.datadir.store
        with store.db.read() as conn:
            marked = (
                conn.execute(
                    "SELECT 1 FROM transfer_items WHERE peer = ? AND packet = ? AND item = ?",
                    (sender, packet, i),
                ).fetchone()
                is not None
            )
            live = [
                str(r)
                for (r,) in conn.execute(
                    "SELECT o.ref_id FROM transfer_origin o JOIN records r ON r.ref_id = o.ref_id "
                    "WHERE o.origin_site = ? AND o.origin_ref = ? AND r.status != 'deleted'",
                    (origin_site, origin_ref),
                )
            ]
        if not live and not marked:
            return "unchanged"
        with store.db.write() as conn:  # marked before, confirmed after: a restart in between finishes it
            conn.execute(
                "INSERT OR REPLACE INTO transfer_items (peer, packet, item, outcome) "
                "VALUES (?, ?, ?, 'erasing')",
                (sender, packet, i),
            )
        for ref in live:
            self.engine.gallery.delete(ref, actor="transfer")
        return "erased"

    def _finish(self, sender: str, packet: int, upto_seq: int, meta: dict[str, Any]) -> None:
        counts = self._counts(sender, packet)
        with self.engine.datadir.store.db.write() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (_checkpoint_key(sender, packet),))
            conn.execute(
                "UPDATE transfer_peers SET in_packet = ?, in_seq = ?, in_time = ? "
                "WHERE site_id = ? AND in_packet = ?",
                (packet, upto_seq, time.time(), sender, packet - 1),
            )
            audit.append(
                conn,
                str(meta.get("actor", "system")),
                "transfer_import",
                None,
                {"from": sender, "packet": packet, "counts": counts},
            )
