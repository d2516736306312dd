"""The ``nasname`` command.

    nasname serve [--address H:P] [--allow-plaintext] [--config FILE] [--data-dir DIR]
    nasname token create NAME --role station|investigator|adjudicator|admin
    nasname token list | nasname token revoke TOKEN_ID
    nasname user add NAME --role ROLE | user list | user disable NAME | user reset NAME   (console accounts)
    nasname enroll|insert|identify|verify|delete|get|stats|pending|adjudicate|health ...   (client)
    nasname dedup ...   (local job directories, or a server's jobs: server.cli_dedup)
    nasname models|evaluate|bench ...   (other tools, passed through)

``token`` commands act on the local data directory while no server runs on it (the operator of the
machine needs no token; this is also how a lost admin token is replaced); with ``--remote`` they go
through the Admin RPCs of a running server, with an admin token.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput, NasnameError, Unavailable

__all__ = ["main"]

# name -> (module, help). Each module's ``main(argv)`` receives the remaining arguments.
PASS_THROUGH = {
    "models": ("engine.models.cli", "model conversion and manifests"),
    "evaluate": ("engine.evaluate", "accuracy evaluation on a data set manifest"),
    "bench": ("engine.bench", "search / extraction benchmarks"),
    "dedup": ("engine.dedup", "batch de-duplication jobs: local job directories, or a server's (--remote)"),
    "report": ("server.cli_report", "registration statistics, ad hoc event queries, data-quality checks"),
}


def _parser() -> argparse.ArgumentParser:
    from server.auth import Role
    from server.cli_client import add_client_commands, add_connection_options
    from server.cli_ops import add_ops_commands
    from server.cli_transfer import add_transfer_commands
    from server.output import EXIT_CODES

    parser = argparse.ArgumentParser(prog="nasname", description="nasname biometric matching service",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain to serve (with --tls-key; default: "
                   "a self-signed certificate in <data dir>/tls/)")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA")
    p.add_argument("--tls-host", action="append", dest="tls_hosts", metavar="NAME",
                   help="a name or IP address stations use to reach this server, added to the self-signed "
                        "certificate (repeat for several; config: tls_hosts)")
    p.add_argument("--workers", type=int, help="RPC worker threads (default: from the CPUs available)")
    p.add_argument("--threads", type=int,
                   help="CPU threads for index scans (default: the CPUs available to the process)")
    p.add_argument("--web-address", help="web console host:port (default 127.0.0.1:8443; [web] address)")
    p.add_argument("--no-web", action="store_const", const=False, dest="web_enabled",
                   help="do not serve the web console")
    p.set_defaults(handler=_serve)

    u = sub.add_parser("user", help="web console accounts: add, list, disable, reset (admin, local)",
                       description="Manage web console accounts in the local data directory (stop "
                       "`nasname serve` first: it holds the directory). Passwords are read from the "
                       "terminal twice, or one line from standard input when it is not a terminal.")
    usub = u.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    ua = usub.add_parser("add", help="create an account")
    ua.add_argument("username", help="the person's login name (3-64 letters, digits or . _ -)")
    ua.add_argument("--role", required=True, choices=[r.value for r in Role],
                    help="what the account may do (the same roles as API tokens)")
    ul = usub.add_parser("list", help="list accounts (never their passwords)")
    ul.add_argument("--json", action="store_true", help="machine-readable output")
    ud = usub.add_parser("disable", help="disable an account (no more logins)")
    ud.add_argument("username", help="the account to disable")
    ur = usub.add_parser("reset", help="set a new password (and enable the account again)")
    ur.add_argument("username", help="the account whose password is replaced")
    for q in (ua, ul, ud, ur):
        q.add_argument("--data-dir", type=Path, help="data directory (default $NASNAME_DATA_DIR)")
        q.add_argument("--config", type=Path, help="TOML config file (default $NASNAME_CONFIG)")
        q.set_defaults(handler=_user)

    t = sub.add_parser("token", help="create, list or revoke API tokens")
    tsub = t.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    tc = tsub.add_parser("create", help="create a token (its secret is printed once)")
    tc.add_argument("name", help="who or what uses the token, e.g. station-1 (not a person's name)")
    tc.add_argument("--role", required=True, choices=[r.value for r in Role],
                    help="what the token may do (see README: Roles)")
    tl = tsub.add_parser("list", help="list tokens (never their secrets)")
    tr = tsub.add_parser("revoke", help="revoke a token")
    tr.add_argument("token_id", help="the token id (tok_..., from `nasname token list`)")
    for q in (tc, tl, tr):
        q.add_argument("--data-dir", type=Path, help="local mode: data directory (default $NASNAME_DATA_DIR)")
        q.add_argument("--config", type=Path, help="local mode: TOML config file")
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
    if args.threads is not None:
        os.environ["NASNAME_THREADS"] = str(args.threads)  # read by EngineConfig like [engine] threads
    return serve(args.config, web_overrides={"address": args.web_address, "enabled": args.web_enabled},
                 address=args.address, allow_plaintext=args.allow_plaintext,
                 tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                 tls_hosts=args.tls_hosts, workers=args.workers)


def _open_local(args: argparse.Namespace, remote_hint: str) -> Any:
    """The engine of the local data directory (refused while a server holds it)."""
    from engine.config import EngineConfig
    from engine.engine import Engine

    _use_data_dir(args)
    try:
        return Engine.open(EngineConfig.load(args.config))
    except Unavailable as exc:  # the data directory is locked by a running server
        raise Unavailable(f"{exc}; {remote_hint}", reason=exc.reason) from exc


def _read_password(username: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass(f"new password for {username}: ")
    if getpass.getpass("again: ") != first:
        raise InvalidInput("the two passwords differ", reason="INVALID_REQUEST")
    return first


def _user(args: argparse.Namespace) -> int:
    from server.logs import iso_time

    password = _read_password(args.username) if args.user_command in ("add", "reset") else ""
    engine = _open_local(args, "stop `nasname serve` to manage console accounts")
    try:
        users = engine.gallery.store
        if args.user_command == "add":
            info = users.create_user(args.username, args.role, password, actor="cli")
            print(f"created {info.username} ({info.role}), user id {info.user_id}")
        elif args.user_command == "list":
            rows = users.list_users()
            if args.json:
                print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
            else:
                print(f"{'USERNAME':20} {'ROLE':13} {'STATE':9} {'LAST LOGIN':22} USER ID")
                for r in rows:
                    state = "active" if r.active else "disabled"
                    print(f"{r.username:20} {r.role:13} {state:9} {iso_time(r.last_login):22} {r.user_id}")
        elif args.user_command == "disable":
            info = users.disable_user(args.username, actor="cli")
            print(f"disabled {info.username}")
        else:
            info = users.reset_password(args.username, password, actor="cli")
            print(f"new password set for {info.username}; the account is enabled")
    finally:
        engine.close()
    return 0


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
    from server._gen.nasname.v1 import nasname_pb2 as pb
    from server.cli_client import emit
    from server.servicer import token_to_pb

    engine = _open_local(args, "while `nasname serve` runs, use `nasname token ... --remote` with an "
                               "admin token")
    try:
        tokens = engine.tokens
        if args.token_command == "create":
            token_id, secret = tokens.create_token(args.name, args.role, actor="cli")
            info = next(t for t in tokens.list_tokens() if t.token_id == token_id)
            reply: Any = pb.CreateTokenResponse(token=token_to_pb(info), secret=secret)
        elif args.token_command == "list":
            reply = pb.ListTokensResponse(tokens=[token_to_pb(t) for t in tokens.list_tokens()])
        else:
            tokens.revoke_token(args.token_id, actor="cli")
            reply = pb.RevokeTokenResponse(token_id=args.token_id)
    finally:
        engine.close()
    return emit(reply, args.json)


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


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "dedup":
        from server import cli_dedup

        return cli_dedup.main(argv[1:], lambda rest: _pass_through(PASS_THROUGH["dedup"][0], rest))
    if argv and argv[0] in PASS_THROUGH:
        return _pass_through(PASS_THROUGH[argv[0]][0], argv[1:])
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except NasnameError as exc:
        print(f"nasname: {exc} [{exc.reason}]", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's C core logs TLS failures on stderr before the call fails; the CLI explains them itself
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # Whatever nasname writes (data directory, job folders, backups, reports) is private to its user;
    # the writers also ask for 0600 themselves, this covers libraries that do not.
    os.umask(0o077)
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`nasname ... | head`): no traceback; keep Python's exit flush quiet too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
