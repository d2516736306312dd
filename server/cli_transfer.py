"""Site and transfer commands of the ``nasname`` CLI (translation only: the work is in ``engine.transfer``):

    nasname site show [--json]                    this site's id and key fingerprints
    nasname site export-public --out FILE         the public part, for the peers to trust
    nasname site trust FILE                       trust a peer (its export-public file); never on first use
    nasname site revoke SITE                      stop exchanging with a peer
    nasname site peers [--json]                   the peers and their ledgers
    (site trust|revoke|peers also take --remote: through a running server's admin RPCs)
    nasname transfer export --to SITE [--since auto|SEQ] [--partition P] [--with-images] --out FILE
    nasname transfer import FILE [--re-extract]   (--re-extract: templates of another model made again here
                                                  from the packet's images)
    nasname transfer status [--json]
    (transfer export|import|status also take --remote: through a running server's admin RPCs)

Local commands open the data directory themselves; those that write (trust, revoke, export, import)
need the server stopped, or --remote. Reading commands also work beside a running server.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput, Unavailable

__all__ = ["add_transfer_commands"]


def _common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """``json_flag=False`` for commands that also take the connection options (they bring --json)."""
    p.add_argument("--data-dir", type=Path, help="data directory (default $NASNAME_DATA_DIR)")
    p.add_argument("--config", type=Path, help="engine TOML file")
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def _remote(p: argparse.ArgumentParser) -> None:
    from server.cli_client import add_connection_options

    p.add_argument("--remote", action="store_true", help="through a running server's admin RPC")
    add_connection_options(p)


def add_transfer_commands(sub: Any) -> None:
    s = sub.add_parser("site", help="this site's identity and its trusted peers (transfer between sites)")
    ssub = s.add_subparsers(dest="site_command", metavar="ACTION", required=True)
    show = ssub.add_parser("show", help="print the site id and the fingerprints of its keys")
    pub = ssub.add_parser("export-public", help="write the public part of this site for its peers")
    pub.add_argument("--out", type=Path, required=True, help="the file to write (give it to the peer)")
    tr = ssub.add_parser("trust", help="trust a peer from its `site export-public` file")
    tr.add_argument("file", type=Path, help="the peer's `site export-public` file")
    rv = ssub.add_parser("revoke", help="revoke a peer: its packets are refused, none are made for it")
    rv.add_argument("site", help="the peer's site id")
    pe = ssub.add_parser("peers", help="list the peers")
    for q in (show, pub):
        _common(q)
        q.set_defaults(handler=_site)
    for q in (tr, rv, pe):
        _common(q, json_flag=False)
        _remote(q)
        q.set_defaults(handler=_site)

    t = sub.add_parser("transfer", help="signed, encrypted packets of records between sites (USB stick)")
    tsub = t.add_subparsers(dest="transfer_command", metavar="ACTION", required=True)
    ex = tsub.add_parser("export", help="write the next packet for a peer: what changed since the last one")
    ex.add_argument("--to", required=True, dest="to_site", help="the peer's site id")
    ex.add_argument("--since", default="auto", help="'auto' (after the last packet sent) or a change seq")
    ex.add_argument("--partition", help="only this partition")
    ex.add_argument("--with-images", action="store_true", help="also the kept sample images")
    ex.add_argument("--out", type=Path, required=True, help="the packet file to write")
    im = tsub.add_parser("import", help="check and import a packet (de-duplicated against this gallery)")
    im.add_argument("file", type=Path, help="the packet file (from `nasname transfer export`)")
    im.add_argument("--re-extract", action="store_true",
                    help="when the sender uses another model: make the templates again here from the "
                         "packet's images (it must have been exported --with-images)")
    st = tsub.add_parser("status", help="per peer: last packet sent and received, and the backlog")
    for q in (ex, im, st):
        _common(q, json_flag=False)
        _remote(q)
        q.set_defaults(handler=_transfer)


def _config(args: argparse.Namespace) -> Any:
    from engine.config import EngineConfig

    return EngineConfig.load(args.config, data_dir=args.data_dir)


def _open(args: argparse.Namespace, *, write: bool) -> Any:
    """The data directory (exclusive; a reading command falls back to shared beside a running server)."""
    from engine.datadir import DataDir
    from engine.transfer.site import ensure_site

    config = _config(args)
    try:
        datadir = DataDir.from_config(config)
    except Unavailable as exc:
        if exc.reason != "GALLERY_LOCKED":
            raise
        if write:
            raise Unavailable(f"{exc}; stop the server first (or use --remote where the command offers it)",
                              reason=exc.reason) from exc
        return DataDir.from_config(config, exclusive=False)
    try:
        ensure_site(datadir, config.site_id)
    except BaseException:
        datadir.close()
        raise
    return datadir


def _print(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc, indent=1) if args.json else text)


def _trusted_text(p: dict[str, Any]) -> str:
    return (f"site {p['site_id']} is now trusted\n  signing key fingerprint {p['sign_fingerprint']} "
            "(check it with that site)")


def _revoked_text(p: dict[str, Any]) -> str:
    return f"site {p['site_id']} revoked: its packets are refused from now on"


def _peers_text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{r['site_id']:<20} {'REVOKED ' + str(r['revoked']) if r['revoked'] else 'trusted'}  "
             f"signing key {r['sign_fingerprint']}" for r in rows]
    return "\n".join(lines) or "no peers yet"


def _site(args: argparse.Namespace) -> int:
    from engine.fsutil import write_atomic
    from engine.transfer.site import load_site, peers, read_public, revoke, trust

    if getattr(args, "remote", False):
        return _site_remote(args)
    with _open(args, write=args.site_command in ("trust", "revoke", "export-public")) as datadir:
        if args.site_command == "show":
            doc = load_site(datadir).to_json()
            _print(args, doc, f"site {doc['site_id']} (created {doc['created']})\n"
                              f"  signing key (Ed25519)        {doc['sign_fingerprint']}\n"
                              f"  key agreement key (X25519)   {doc['agree_fingerprint']}")
        elif args.site_command == "export-public":
            public = load_site(datadir).public.to_json()
            write_atomic(args.out, json.dumps(public, indent=1).encode())
            _print(args, public, f"public part of site {public['site_id']} written to {args.out}\n"
                                 f"  signing key fingerprint {public['sign_fingerprint']}: the peer should "
                                 "compare it (by phone) before trusting the file")
        elif args.site_command == "trust":
            p = trust(datadir, read_public(args.file), actor="cli")
            _print(args, p.to_json(), _trusted_text(p.to_json()))
        elif args.site_command == "revoke":
            p = revoke(datadir, args.site, actor="cli")
            _print(args, p.to_json(), _revoked_text(p.to_json()))
        else:
            rows = [p.to_json() for p in peers(datadir)]
            _print(args, rows, _peers_text(rows))
    return 0


def _since(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("--since is 'auto' or a change sequence number",
                           reason="INVALID_REQUEST") from None


def _transfer(args: argparse.Namespace) -> int:
    from engine.transfer.status import status_text, transfer_status

    if args.remote:
        return _transfer_remote(args)
    if args.transfer_command == "export":
        from engine.transfer.export import export_to_file

        with _open(args, write=True) as datadir:
            result = export_to_file(datadir, args.to_site, args.out, since=_since(args.since),
                                    partition=args.partition, with_images=args.with_images, actor="cli")
        _print(args, result.to_json(), f"{result.summary()}\n  written to {args.out} ({result.bytes} bytes); "
                                       "signed by this site, readable only by the recipient")
        return 0
    if args.transfer_command == "import":
        from engine.engine import Engine
        from engine.transfer.importer import import_packet

        try:
            engine = Engine.open(_config(args))
        except Unavailable as exc:
            raise Unavailable(f"{exc}; import into a running server with --remote, or stop it first",
                              reason=exc.reason) from exc
        try:
            summary = import_packet(engine, args.file, actor="cli", re_extract=args.re_extract)
        finally:
            engine.close()
        _print(args, summary.to_json(), summary.text())
        return 0
    with _open(args, write=False) as datadir:
        doc = transfer_status(datadir)
    _print(args, doc, status_text(doc))
    return 0


def _site_remote(args: argparse.Namespace) -> int:
    from engine.transfer.site import read_public
    from server.cli_client import run_client

    def call(client: Any, a: argparse.Namespace) -> str:
        if a.site_command == "trust":
            public = read_public(a.file)  # checked here too: a wrong file is named before any call
            doc = json.loads(client.trust_peer(json.dumps(public.to_json())).peer_json)
            return json.dumps(doc, indent=1) if a.json else _trusted_text(doc)
        if a.site_command == "revoke":
            doc = json.loads(client.revoke_peer(a.site).peer_json)
            return json.dumps(doc, indent=1) if a.json else _revoked_text(doc)
        rows = json.loads(client.list_peers().peers_json)
        return json.dumps(rows, indent=1) if a.json else _peers_text(rows)

    return run_client(call, args)


def _transfer_remote(args: argparse.Namespace) -> int:
    from engine.fsutil import atomic_write
    from engine.transfer.status import status_text
    from server.cli_client import run_client

    def call(client: Any, a: argparse.Namespace) -> str:
        if a.transfer_command == "export":
            got: list[dict[str, Any]] = []
            atomic_write(a.out, lambda f: got.append(client.export_transfer(
                a.to_site, f, since=_since(a.since), partition=a.partition or "", with_images=a.with_images)))
            return json.dumps(got[0], indent=1) if a.json else f"{got[0]['summary']}\n  written to {a.out}"
        if a.transfer_command == "import":
            reply = client.import_transfer(a.file, re_extract=a.re_extract)
            doc = {"sender": reply.sender, "packet": reply.packet, "summary": reply.summary,
                   "counts": json.loads(reply.counts_json)}
            return json.dumps(doc, indent=1) if a.json else str(reply.summary)
        doc = json.loads(client.transfer_status().status_json)
        return json.dumps(doc, indent=1) if a.json else status_text(doc)

    return run_client(call, args)
