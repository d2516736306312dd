"""Integrity check of a gallery (``nasname check``, the admin ``CheckIntegrity`` RPC, and after every
restore). Each check has a name, a verdict and the problems it found, naming what is wrong (a ref id,
an audit row, a file); the report passes only when every check does.

    database        SQLite integrity_check of the whole file
    schema          the schema version is the one this nasname writes
    audit_chain     the audit log's chain, end to end (``Store.verify_audit``; see ``_audit``)
    templates       every template (``full``) or a random sample decrypts, parses, and is of the
                    modality's pinned model
    snapshot        the index snapshot's files load (their checksums / authentication pass) and are
                    of the pinned models
    index_vs_store  each index holds exactly the active records' templates of its modality
    orphan_files    nothing in the data directory that nasname did not put there
    pending_cases   every open adjudication case still has its pending record and its candidates
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.datadir import SITE_NAME, SNAPSHOT_DIR
from engine.errors import NasnameError
from engine.models.manifest import model_dir
from engine.store import sealed
from engine.store import snapshots as snap
from engine.store.codec import open_template
from engine.store.schema import SCHEMA_VERSION
from engine.types import Modality

if TYPE_CHECKING:
    from engine.datadir import DataDir
    from engine.gallery import Gallery, IndexLoader

__all__ = ["Check", "check_snapshot_files", "report_text", "run_check"]

log = logging.getLogger(__name__)

DEFAULT_SAMPLE = 1000
_MAX_LISTED = 20
# what nasname itself keeps in a data directory (anything else is reported as an orphan)
_TOP_LEVEL = {"LOCK", "nasname.db", "nasname.db-wal", "nasname.db-shm", "nasname.db-journal",
              "nasname.key", "nasname.toml", "snapshots", "jobs", "backups", "restored-from-backup",
              "tls", SITE_NAME}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _audit(datadir: DataDir, gallery: Gallery | None) -> Check:
    """The keyed audit chain, end to end: through the open gallery, also against the anchor in the
    snapshot sidecar (a deleted tail shows); without one, the store's own verification."""
    report = gallery.verify_audit() if gallery is not None else datadir.store.verify_audit()
    if report.ok:
        return Check("audit_chain", True, f"{report.rows} rows, keyed chain intact")
    return Check("audit_chain", False, report.describe(), [report.describe()])


def _database(datadir: DataDir) -> Check:
    problems = datadir.store.sqlite_check()
    return Check("database", not problems, "SQLite integrity_check: " + ("ok" if not problems else
                 f"{len(problems)} problem(s)"), problems[:_MAX_LISTED])


def _schema(datadir: DataDir) -> Check:
    version = datadir.store.schema_version()
    ok = version == SCHEMA_VERSION
    return Check("schema", ok, f"schema version {version}" + ("" if ok else f", expected {SCHEMA_VERSION}"))


def _templates(datadir: DataDir, full: bool, sample: int, seed: int | None) -> Check:
    store = datadir.store
    pinned = store.models()
    with store.db.read() as conn:
        keys = conn.execute("SELECT t.record_id, t.modality FROM templates t").fetchall()
        if not full and len(keys) > sample:
            keys = random.Random(seed).sample(keys, sample)
        problems: list[str] = []
        bad = 0
        for label, modality in keys:
            row = conn.execute("SELECT r.ref_id, t.blob, t.model_id, t.model_version FROM templates t "
                               "JOIN records r ON r.id = t.record_id "
                               "WHERE t.record_id = ? AND t.modality = ?", (label, modality)).fetchone()
            ref_id, blob, model_id, version = row
            m = Modality(modality)
            why = ""
            try:
                template = open_template(datadir.keyring, int(label), m, blob)
                model = pinned.get(m)
                if model is None or template.model != model or f"{model_id}@{version}" != str(model):
                    why = f"made by {template.model}, the gallery's {m.value} model is {model}"
            except NasnameError as exc:
                why = f"{exc.reason}: {exc}"
            if why:
                bad += 1
                if len(problems) < _MAX_LISTED:
                    problems.append(f"record {ref_id} {m.value} template: {why}")
    what = "every template" if full else f"a random sample of {len(keys)} templates"
    return Check("templates", bad == 0, f"{what}: " + ("all readable, of the pinned models" if not bad else
                 f"{bad} unreadable or of another model"), problems)


def check_snapshot_files(datadir: DataDir, loader: IndexLoader) -> Check:
    """Load every file of the current index snapshot (checksums and authentication run on load)."""
    try:
        found = snap.read_sidecar(datadir.snapshot_dir, datadir.keyring)
    except NasnameError as exc:
        return Check("snapshot", False, "snapshot sidecar unreadable", [f"{snap.SIDECAR}: {exc}"])
    if found is None:
        return Check("snapshot", True, "no index snapshot yet (indexes are built from the store)")
    pinned = datadir.store.models()
    problems = []
    for modality, path in found.files.items():
        try:
            with sealed.open_sealed(path, datadir.keyring, snap.index_identity(modality, found.seq)) as plain:
                index = loader(modality, found.models[modality], plain)
            if pinned.get(modality) != index.model:
                problems.append(f"{path.name}: of {index.model}, the gallery's model is "
                                f"{pinned.get(modality)}")
            close = getattr(index, "close", None)
            if close is not None:
                close()
        except NasnameError as exc:
            problems.append(f"{path.name}: {exc.reason}: {exc}")
    if found.seq > datadir.store.last_seq():
        problems.append(f"{snap.SIDECAR}: snapshot of change {found.seq} is newer than the store")
    return Check("snapshot", not problems, f"snapshot of change {found.seq}, {len(found.files)} index file(s)"
                 + ("" if not problems else ": damaged (rebuilt from the store on the next open)"), problems)


def _index_vs_store(gallery: Gallery) -> Check:
    problems = []
    parts = []
    for modality, c in gallery.index_consistency().items():
        parts.append(f"{modality.value} {c['index']}/{c['store']}")
        if c["store"] != c["index"] or c["missing"]:
            names = gallery.store.ref_ids_of(c["missing"])
            listed = ", ".join(names.values()) or "none listed"
            problems.append(f"{modality.value}: index holds {c['index']}, the store {c['store']} active "
                            f"templates; missing from the index: {listed}")
    return Check("index_vs_store", not problems, "active templates (index/store): " + (", ".join(parts) or
                 "none"), problems)


def _orphans(datadir: DataDir) -> Check:
    ours = set(_TOP_LEVEL)
    models = model_dir()
    if models.parent.resolve() == datadir.root.resolve():
        # the default model directory sits in the default data directory (a fresh `dev.py serve`)
        ours.add(models.name)
    problems = [f"{p.name}: not a file nasname keeps here" for p in sorted(datadir.root.iterdir())
                if p.name not in ours and not p.name.startswith(".")]
    try:
        found = snap.read_sidecar(datadir.snapshot_dir, datadir.keyring)
    except NasnameError:
        found = None
    keep = {snap.SIDECAR, *(p.name for p in (found.files.values() if found else []))}
    if datadir.snapshot_dir.is_dir():
        problems += [f"{SNAPSHOT_DIR}/{p.name}: not part of the current snapshot"
                     for p in sorted(datadir.snapshot_dir.iterdir())
                     if p.name not in keep and not p.name.endswith(".tmp")]
    return Check("orphan_files", not problems, f"{len(problems)} unexpected file(s)", problems[:_MAX_LISTED])


def _pending(datadir: DataDir) -> Check:
    problems = []
    n = 0
    with datadir.store.db.read() as conn:
        rows = conn.execute("SELECT a.record_id, r.ref_id, r.status, a.candidates FROM adjudication a "
                            "LEFT JOIN records r ON r.id = a.record_id WHERE a.outcome IS NULL").fetchall()
        for label, ref_id, status, candidates in rows:
            n += 1
            if ref_id is None or status != "pending":
                problems.append(f"case of record {ref_id or f'label {label}'}: the record is "
                                f"{'gone' if ref_id is None else status}, not pending")
                continue
            refs = [str(c.get("reference_id") or c.get("ref_id") or "") for c in json.loads(candidates)]
            refs = [r for r in refs if r]
            if refs:
                marks = ",".join("?" * len(refs))
                live = {str(r) for (r,) in conn.execute(
                    f"SELECT ref_id FROM records WHERE ref_id IN ({marks}) AND status != 'deleted'", refs)}
                if not live:
                    problems.append(f"case of record {ref_id}: every candidate is gone "
                                    f"({', '.join(refs[:5])})")
    return Check("pending_cases", not problems, f"{n} open case(s)", problems[:_MAX_LISTED])


def run_check(target: Gallery | DataDir, *, full: bool = False, sample: int = DEFAULT_SAMPLE,
              seed: int | None = None, snapshot: Check | None = None, loader: IndexLoader | None = None,
              gallery_error: str = "") -> dict[str, Any]:
    """Every check on an open gallery (or only a data directory, when the gallery would not open:
    ``gallery_error`` says why); a report ``{"ok", "data_dir", "checked_at", "checks"}``.
    ``snapshot``: the snapshot check when it was made before the gallery opened (an open rebuilds a
    damaged snapshot by itself); otherwise the current snapshot files are loaded now."""
    from engine.datadir import DataDir
    from engine.gallery import load_index

    gallery = None if isinstance(target, DataDir) else target
    datadir = target if isinstance(target, DataDir) else target.datadir

    def indexes() -> Check:
        if gallery is None:
            return Check("index_vs_store", False, "the indexes could not be built from the store",
                         [gallery_error or "gallery not open"])
        return _index_vs_store(gallery)

    steps: list[tuple[str, Callable[[], Check]]] = [
        ("database", lambda: _database(datadir)),
        ("schema", lambda: _schema(datadir)),
        ("audit_chain", lambda: _audit(datadir, gallery)),
        ("templates", lambda: _templates(datadir, full, sample, seed)),
        ("snapshot", lambda: snapshot or check_snapshot_files(datadir, loader or load_index)),
        ("index_vs_store", indexes),
        ("orphan_files", lambda: _orphans(datadir)),
        ("pending_cases", lambda: _pending(datadir)),
    ]
    checks: list[Check] = []
    for name, step in steps:
        try:
            checks.append(step())
        except NasnameError as exc:  # a check that cannot even run has failed
            checks.append(Check(name, False, f"could not run: {exc.reason}", [str(exc)]))
    ok = all(c.ok for c in checks)
    if not ok:
        log.warning("integrity check failed: %s", ", ".join(c.name for c in checks if not c.ok))
    return {"ok": ok, "data_dir": str(datadir.root), "full": full,
            "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "checks": [c.to_json() for c in checks]}


def report_text(report: dict[str, Any]) -> str:
    """The report as a table for people, verdict first."""
    lines = [f"integrity check of {report['data_dir']} at {report['checked_at']}: "
             + ("PASSED" if report["ok"] else "FAILED"), ""]
    width = max(len(c["name"]) for c in report["checks"])
    for c in report["checks"]:
        lines.append(f"  {c['name']:<{width}}  {'ok  ' if c['ok'] else 'FAIL'}  {c['detail']}")
        lines += [f"  {'':<{width}}        - {p}" for p in c["problems"]]
    return "\n".join(lines)

