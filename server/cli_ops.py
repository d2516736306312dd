"""Operations commands of the ``nasname`` CLI (translation only: the work is in ``engine.ops``):

    nasname backup create --data-dir D --to DIR [--passphrase] [--json]
    nasname backup restore ARCHIVE --data-dir NEW [--key-file F | --passphrase] [--json]
    nasname backup verify ARCHIVE [--key-file F | --passphrase] [--json]
    nasname check --data-dir D [--full] [--json]      (exit 0 only when every check passes)
    nasname maintenance --data-dir D [--json]        (checkpoint + VACUUM, snapshot, prune jobs / backups)
    nasname backup create|check|maintenance ... --remote [connection options]   (a running server)
    nasname key export --data-dir D --to FILE --passphrase
    nasname key import EXPORT_FILE --to KEY_FILE

A passphrase is read from ``$NASNAME_PASSPHRASE`` when set (scripts), else asked for on the terminal
(twice when it is being chosen). Local commands open the data directory themselves, so they need the
server stopped (the lock says so); a running server is backed up through its admin RPC
(``--remote``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput, Unavailable

__all__ = ["add_ops_commands", "read_passphrase"]

PASSPHRASE_ENV = "NASNAME_PASSPHRASE"


def read_passphrase(*, confirm: bool) -> str:
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise InvalidInput(f"no passphrase: set ${PASSPHRASE_ENV} or run on a terminal",
                           reason="PASSPHRASE_REQUIRED")
    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("passphrase again: ") != first:
        raise InvalidInput("the two passphrases differ", reason="PASSPHRASE_MISMATCH")
    return first


def _common(p: argparse.ArgumentParser, *, data_dir: bool = True, json_flag: bool = True) -> None:
    """``json_flag=False`` for commands that also take the connection options (they bring --json)."""
    if data_dir:
        p.add_argument("--data-dir", type=Path, help="data directory (default $NASNAME_DATA_DIR)")
        p.add_argument("--config", type=Path, help="engine TOML file (key file location)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def add_ops_commands(sub: Any) -> None:
    b = sub.add_parser("backup", help="online backup, restore and verification of a gallery")
    bsub = b.add_subparsers(dest="backup_command", metavar="ACTION", required=True)
    c = bsub.add_parser("create", help="write a compressed, encrypted, point-in-time archive")
    _common(c, json_flag=False)
    c.add_argument("--to", type=Path, help="folder for the archive (local; a server uses its [backup] dir)")
    c.add_argument("--passphrase", action="store_true",
                   help="also put the data key in the archive, wrapped by a passphrase")
    _remote(c)
    r = bsub.add_parser("restore", help="restore an archive into a new, empty data directory")
    r.add_argument("archive", type=Path, help="the backup archive file")
    r.add_argument("--data-dir", type=Path, required=True, help="the new, empty data directory")
    r.add_argument("--key-file", type=Path, help="the gallery's key file, or its passphrase-protected export")
    r.add_argument("--passphrase", action="store_true", help="open the key export / the key in the archive")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    v = bsub.add_parser("verify", help="check every chunk and member of an archive (writes nothing)")
    v.add_argument("archive", type=Path, help="the backup archive file")
    v.add_argument("--key-file", type=Path, help="the gallery's key file, or its passphrase-protected export")
    v.add_argument("--passphrase", action="store_true", help="open the key export / the key in the archive")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    for q in (c, r, v):
        q.set_defaults(handler=_backup)

    ch = sub.add_parser("check", help="integrity check of a gallery (exit 0 only when all checks pass)")
    _common(ch, json_flag=False)
    ch.add_argument("--full", action="store_true", help="decrypt every template, not a random sample")
    ch.add_argument("--data-quality", action="store_true",
                    help="instead: data-quality checks (missing modalities, low-quality and identical "
                         "templates, old pending cases, FTE outliers); exit 3 when something is found")
    ch.add_argument("--details", action="store_true",
                    help="with --data-quality: list the records behind each finding (restricted)")
    ch.add_argument("--stale-days", type=float, default=14.0,
                    help="with --data-quality: pending cases older than this are flagged (default 14)")
    _remote(ch)
    ch.set_defaults(handler=_check)

    mt = sub.add_parser("maintenance", help="WAL checkpoint + VACUUM, index snapshot now, prune finished job "
                        "folders (> --job-age-days) and backups (the [backup] keep)")
    _common(mt, json_flag=False)
    mt.add_argument("--job-age-days", type=float, default=30.0,
                    help="finished job folders older than this are removed (default 30)")
    _remote(mt)
    mt.set_defaults(handler=_maintenance)

    k = sub.add_parser("key", help="export the data key under a passphrase, or import such an export")
    ksub = k.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    e = ksub.add_parser("export", help="write the data key wrapped by a passphrase (scrypt), for safekeeping")
    _common(e)
    e.add_argument("--to", type=Path, required=True, help="the export file to write (must not exist)")
    e.add_argument("--passphrase", action="store_true", required=True,
                   help="asked for twice (or $NASNAME_PASSPHRASE)")
    i = ksub.add_parser("import", help="turn a key export back into a key file")
    i.add_argument("export", type=Path, help="the key export file (from `nasname key export`)")
    i.add_argument("--to", type=Path, required=True, help="the key file to write (must not exist)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    for q in (e, i):
        q.set_defaults(handler=_key)


def _remote(p: argparse.ArgumentParser) -> None:
    from server.cli_client import add_connection_options

    p.add_argument("--remote", action="store_true", help="through a running server's admin RPC")
    add_connection_options(p)


def _run_remote(args: argparse.Namespace, call: Any) -> int:
    from server.cli_client import run_client

    return run_client(call, args)


def _backup_settings(args: argparse.Namespace) -> Any:
    from engine.config import load_toml
    from engine.ops.schedule import BackupSettings

    return BackupSettings.from_toml(load_toml(getattr(args, "config", None)))


def _engine_config(args: argparse.Namespace) -> Any:
    from engine.config import EngineConfig

    return EngineConfig.load(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None))


def _open_gallery(args: argparse.Namespace) -> Any:
    from engine.gallery import Gallery

    try:
        return Gallery.open(_engine_config(args))
    except Unavailable as exc:
        if exc.reason == "GALLERY_LOCKED":
            raise Unavailable(f"{exc}; a running server is backed up and checked through its admin "
                              "RPCs (--remote), or stop it first", reason=exc.reason) from exc
        raise


def _print(args: argparse.Namespace, doc: dict[str, Any], text: list[str]) -> None:
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print("\n".join(text))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _backup(args: argparse.Namespace) -> int:
    from engine.ops.backup import create_backup
    from engine.ops.restore import key_source, restore_backup

    if args.backup_command == "create":
        if args.remote:
            if args.passphrase or args.to:
                raise InvalidInput("a server writes its backups into its [backup] dir, without the key",
                                   reason="INVALID_REQUEST")
            return _run_remote(args, lambda c, a: _remote_backup(c.create_backup(timeout=a.timeout)))
        if args.to is None:
            raise InvalidInput("--to DIR is required (or --remote)", reason="INVALID_REQUEST")
        passphrase = read_passphrase(confirm=True) if args.passphrase else None
        from engine.ops.schedule import record_good_backup

        gallery = _open_gallery(args)
        try:
            config = _engine_config(args)
            result = create_backup(gallery, args.to, config=config, passphrase=passphrase)
            record_good_backup(gallery.datadir, result)
        finally:
            gallery.close()
        m = result.manifest
        _print(args, result.to_json(), [
            f"backup written: {result.path}",
            f"  size {_size(result.bytes)}, took {result.seconds:.1f} s, change {m['change_seq']}, "
            f"created {m['created']}",
            "  records: " + ", ".join(f"{k} {v}" for k, v in m["records"].items()),
            "  templates: " + (", ".join(f"{k} {v}" for k, v in m["templates"].items()) or "none"),
            "  the data key is " + ("in the archive, wrapped by your passphrase" if passphrase else
                                    "NOT in the archive: keep the key file (or `nasname key export`) "
                                    "apart from the backups"),
        ])
        return 0
    passphrase = read_passphrase(confirm=False) if args.passphrase else None
    key = key_source(args.key_file, passphrase)
    if args.backup_command == "verify":
        manifest = _verify_with_progress(args.archive, key, quiet=args.json)
        _print(args, {"ok": True, "manifest": manifest}, [
            f"backup OK: {args.archive}",
            f"  change {manifest['change_seq']}, created {manifest['created']}, "
            f"{len(manifest['members'])} members, every sha256 verified"])
        return 0
    from engine.ops.check import run_check

    restored = restore_backup(args.archive, args.data_dir, key, check=run_check)
    lines = [f"restored into {restored.target} (change {restored.manifest['change_seq']}, backup of "
             f"{restored.manifest['created']}) in {restored.seconds:.1f} s; integrity check passed"]
    if restored.key_file is not None:
        lines.append(f"  the key was written to {restored.key_file}")
    else:
        lines.append(f"  serve it with key_file = \"{args.key_file}\" (or move that key file to "
                     f"{restored.target / 'nasname.key'})")
    _print(args, restored.to_json(), lines)
    return 0


def _verify_with_progress(archive: Path, key: Any, *, quiet: bool) -> dict[str, Any]:
    """``backup verify`` as a job (engine.ops.verify): a progress bar with ETA on stderr; Ctrl-C stops."""
    import shutil
    import tempfile

    from tqdm import tqdm

    from engine.jobs import Progress
    from engine.ops.verify import VerifyJob

    folder = Path(tempfile.mkdtemp(prefix="nasname-verify-"))
    try:
        job = VerifyJob.create(folder / "job", archive, key)
        with tqdm(total=job.progress().total, unit="B", unit_scale=True, file=sys.stderr, disable=quiet,
                  desc=f"verify {Path(archive).name}") as bar:
            def show(p: Progress) -> None:
                bar.update(max(0, p.done - bar.n))

            return job.run(on_progress=show)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _key(args: argparse.Namespace) -> int:
    from engine.ops.keys import import_key, write_export

    if args.key_command == "export":
        passphrase = read_passphrase(confirm=True)
        from engine.datadir import DataDir

        with DataDir.from_config(_engine_config(args), exclusive=False) as datadir:
            doc = write_export(datadir.keyring, passphrase, args.to)
        _print(args, {"export": str(args.to), "key_id": doc["key_id"]}, [
            f"key {doc['key_id']} exported to {args.to}, wrapped by your passphrase (scrypt).",
            "Keep it apart from the server and the backups; without it or the key file, backups "
            "cannot be restored."])
        return 0
    ring = import_key(args.export, read_passphrase(confirm=False), args.to)
    _print(args, {"key_file": str(args.to), "key_id": ring.key_id},
           [f"key {ring.key_id} written to {args.to} (0600)"])
    return 0


def check_local(config: Any, *, full: bool) -> dict[str, Any]:
    """``nasname check`` on a stopped gallery: the snapshot files are checked before the gallery opens
    (opening rebuilds a damaged snapshot by itself), then everything else on the open gallery."""
    from engine.datadir import DataDir
    from engine.errors import NasnameError
    from engine.gallery import Gallery, GalleryConfig, default_index_factory, load_index
    from engine.ops.check import Check, check_snapshot_files, run_check

    try:
        datadir = DataDir.from_config(config)
    except Unavailable as exc:
        if exc.reason == "GALLERY_LOCKED":
            raise Unavailable(f"{exc}; check a running server with its admin RPC (nasname check --remote), "
                              "or stop it first", reason=exc.reason) from exc
        raise
    except NasnameError as exc:
        if exc.reason != "STORE_CORRUPT":
            raise
        return {"ok": False, "data_dir": str(config.data_dir), "full": full, "checked_at": "",
                "checks": [Check("database", False, "the database does not open", [str(exc)]).to_json()]}
    snapshot = check_snapshot_files(datadir, load_index)
    try:
        factory = default_index_factory(config.face_index, config.iris_index)
        gallery = Gallery(datadir, None, factory, load_index,
                          config=GalleryConfig(keep_images=config.keep_images, snapshot_every=0,
                                               snapshot_interval_s=0))
    except NasnameError as exc:  # the gallery closed its data directory: check what can be checked
        with DataDir.from_config(config) as bare:
            return run_check(bare, full=full, snapshot=snapshot, gallery_error=f"{exc.reason}: {exc}")
    try:
        return run_check(gallery, full=full, snapshot=snapshot)
    finally:
        gallery.close()


def _remote_backup(reply: Any) -> str:
    m = json.loads(reply.manifest_json)
    return "\n".join([
        f"backup written on the server: {reply.file}",
        f"  size {_size(reply.bytes)}, took {reply.seconds:.1f} s, change {reply.change_seq}, "
        f"created {reply.created}",
        "  records: " + ", ".join(f"{k} {v}" for k, v in m["records"].items())])


def _maintenance(args: argparse.Namespace) -> int:
    from engine.ops.schedule import run_maintenance

    if args.remote:
        return _run_remote(args, lambda client, a: json.dumps(
            json.loads(client.run_maintenance(timeout=a.timeout).report_json), indent=1))
    gallery = _open_gallery(args)
    try:
        report = run_maintenance(gallery, settings=_backup_settings(args), job_age_days=args.job_age_days)
    finally:
        gallery.close()
    db = report["database"]
    _print(args, report, [
        f"maintenance done in {report['seconds']:.1f} s",
        f"  database {_size(db['bytes_before'])} -> {_size(db['bytes_after'])} (checkpoint + VACUUM)",
        f"  index snapshot at change {report['snapshot_seq']}",
        f"  job folders removed: {len(report['jobs_removed'])}; "
        f"backups removed: {len(report['backups_removed'])}"])
    return 0


def _check(args: argparse.Namespace) -> int:
    from engine.ops.check import report_text

    if args.data_quality:  # the same checks as `nasname report quality` (engine.reports.quality)
        if args.remote:
            raise InvalidInput("data-quality checks read the data directory; on a running server use "
                               "`nasname report --remote` (its data-quality table)", reason="INVALID_REQUEST")
        from server.cli_report import quality_command

        return quality_command(args.data_dir, args.config, details=args.details,
                               stale_days=args.stale_days, as_json=args.json)

    if args.remote:
        from server.cli_client import connect

        with connect(args) as client:
            report = json.loads(client.check_integrity(full=args.full, timeout=args.timeout).report_json)
    else:
        report = check_local(_engine_config(args), full=args.full)
    print(json.dumps(report, indent=1) if args.json else report_text(report))
    return 0 if report["ok"] else 1
