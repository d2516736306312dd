"""The ``nasname`` command.

    nasname serve [--address H:P] [--allow-plaintext] [--config FILE] [--data-dir DIR]
    nasname token create NAME --role station|investigator|adjudicator|admin
    nasname token list | nasname token revoke TOKEN_ID
    nasname enroll|insert|identify|verify|delete|get|stats|pending|adjudicate|health ...   (client)
    nasname models|evaluate|bench|dedup ...   (other tools, passed through)

``token`` commands act on the local data directory while no server runs on it (the operator of the
machine needs no token; this is also how a lost admin token is replaced); with ``--remote`` they go
through the Admin RPCs of a running server, with an admin token.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import NasnameError, Unavailable

__all__ = ["main"]

# name -> (module, help). Each module's ``main(argv)`` receives the remaining arguments.
PASS_THROUGH = {
    "models": ("engine.models.cli", "model conversion and manifests"),
    "evaluate": ("engine.evaluate", "accuracy evaluation on a data set manifest"),
    "bench": ("engine.bench", "search / extraction benchmarks"),
    "dedup": ("engine.dedup", "batch de-duplication (N:N) of the gallery"),
}


def _parser() -> argparse.ArgumentParser:
    from server.auth import Role
    from server.cli_client import add_client_commands, add_connection_options
    from server.cli_ops import add_ops_commands
    from server.cli_transfer import add_transfer_commands

    parser = argparse.ArgumentParser(prog="nasname", description="nasname biometric matching service")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("serve", help="run the gRPC service", description=(
        "Run the gRPC service. A fresh data directory is created with its key and store, and the first "
        "start prints an admin token once. Settings: the [server] section of the config file and "
        "NASNAME_SERVER_* variables; options below override them."))
    p.add_argument("--config", type=Path,
                   help="TOML file (default $NASNAME_CONFIG or <data dir>/nasname.toml)")
    p.add_argument("--data-dir", type=Path, help="data directory (default $NASNAME_DATA_DIR)")
    p.add_argument("--address", help="bind host:port (default 127.0.0.1:50051)")
    p.add_argument("--allow-plaintext", action="store_const", const=True,
                   help="serve without TLS (refused unless the address is loopback)")
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA")
    p.add_argument("--workers", type=int)
    p.set_defaults(handler=_serve)

    t = sub.add_parser("token", help="create, list or revoke API tokens")
    tsub = t.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    tc = tsub.add_parser("create", help="create a token (its secret is printed once)")
    tc.add_argument("name")
    tc.add_argument("--role", required=True, choices=[r.value for r in Role])
    tl = tsub.add_parser("list", help="list tokens (never their secrets)")
    tr = tsub.add_parser("revoke", help="revoke a token")
    tr.add_argument("token_id")
    for q in (tc, tl, tr):
        q.add_argument("--data-dir", type=Path, help="local mode: data directory (default $NASNAME_DATA_DIR)")
        q.add_argument("--config", type=Path)
        q.add_argument("--remote", action="store_true", help="use a running server's Admin RPCs")
        add_connection_options(q)
        q.set_defaults(handler=_token)

    add_client_commands(sub)
    add_ops_commands(sub)
    add_transfer_commands(sub)

    for name, (_, help_text) in PASS_THROUGH.items():
        # listed for --help only: main() hands these over before parsing
        sub.add_parser(name, help=f"{help_text} (see `nasname {name} --help`)", add_help=False)
    return parser


def _use_data_dir(args: argparse.Namespace) -> None:
    if getattr(args, "data_dir", None) is not None:
        os.environ["NASNAME_DATA_DIR"] = str(args.data_dir)


def _serve(args: argparse.Namespace) -> int:
    from server.app import serve

    _use_data_dir(args)
    return serve(args.config, address=args.address, allow_plaintext=args.allow_plaintext,
                 tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                 workers=args.workers)


def _token(args: argparse.Namespace) -> int:
    if args.remote:
        from server.cli_client import run_client

        def remote(client: Any, a: argparse.Namespace) -> Any:
            if a.token_command == "create":
                return client.create_token(a.name, a.role)
            if a.token_command == "list":
                return client.list_tokens()
            return client.revoke_token(a.token_id)

        return run_client(remote, args)
    from engine.config import EngineConfig
    from engine.engine import Engine

    _use_data_dir(args)
    try:
        engine = Engine.open(EngineConfig.load(args.config))
    except Unavailable as exc:  # the data directory is locked by a running server
        raise Unavailable(f"{exc}; while `nasname serve` runs, use `nasname token ... --remote` with an "
                          "admin token", reason=exc.reason) from exc
    try:
        tokens = engine.tokens
        if args.token_command == "create":
            token_id, secret = tokens.create_token(args.name, args.role, actor="cli")
            print(f"token id: {token_id}\nsecret:   {secret}\n(the secret is shown only this once)")
        elif args.token_command == "list":
            rows = [{"token_id": t.token_id, "name": t.name, "role": t.role, "created": t.created,
                     "last_used": t.last_used, "revoked": t.revoked} for t in tokens.list_tokens()]
            print(json.dumps(rows, indent=2))
        else:
            tokens.revoke_token(args.token_id, actor="cli")
            print(f"revoked {args.token_id}")
    finally:
        engine.close()
    return 0


def _pass_through(module: str, argv: Sequence[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            print(f"nasname: '{module}' is not available in this installation yet", file=sys.stderr)
            return 2
        raise
    result = mod.main(list(argv))
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    # Whatever nasname writes (data directory, job folders, backups, reports) is private to its user;
    # the writers also ask for 0600 themselves, this covers libraries that do not.
    os.umask(0o077)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        return _pass_through(PASS_THROUGH[argv[0]][0], argv[1:])
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except NasnameError as exc:
        print(f"nasname: {exc} [{exc.reason}]", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
