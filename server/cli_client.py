"""``nasname <client command>``: talk to a running server with :class:`server.client.Client`.

Connection options are shared by every client command: ``--address`` (``$NASNAME_ADDRESS``, then the
user's settings from ``nasname login`` (server.client_config), default 127.0.0.1:50051), ``--token``
(``$NASNAME_TOKEN``, then the settings), TLS by default with ``--ca`` (then the settings; for a loopback
address the server's auto certificate in the data directory), ``--tls-server-name``, ``--plaintext``.
Replies are printed for people (``server.output``); ``--json`` prints them for machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from engine.multisample import MAX_FRAMES
from server import client_config, output
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.client import Client, error_info, image_sample
from server.config import is_loopback, split_address

__all__ = ["UsageError", "add_client_commands", "add_connection_options", "login", "resolve", "run_client"]

DEFAULT_ADDRESS = "127.0.0.1:50051"
_SAMPLE_FLAGS = (("face", "face"), ("iris_left", "iris-left"), ("iris_right", "iris-right"))

Reply = Message | str
Runner = Callable[[Client, argparse.Namespace], Reply]


class UsageError(Exception):
    """Options that do not fit together (exit code 2, like argparse's own errors)."""


def add_connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--address", help=f"server host:port (default $NASNAME_ADDRESS, then `nasname login`'s, "
                   f"then {DEFAULT_ADDRESS})")
    g.add_argument("--token", help="API token secret (default $NASNAME_TOKEN, then `nasname login`'s)")
    g.add_argument("--ca", type=Path, help="PEM certificate(s) to trust for the server (default: "
                   "`nasname login`'s; on the server's machine its own certificate)")
    g.add_argument("--tls-server-name", help="name to expect in the server's certificate when the address "
                   "does not carry it (e.g. an IP address)")
    g.add_argument("--client-cert", type=Path, help="PEM client certificate (mutual TLS)")
    g.add_argument("--client-key", type=Path, help="PEM client key (mutual TLS)")
    g.add_argument("--plaintext", action="store_true", help="no TLS (loopback servers that allow it)")
    g.add_argument("--timeout", type=float, default=60.0,
                   help="deadline per attempt, seconds (default 60)")
    g.add_argument("--retries", type=int, default=3,
                   help="further attempts after UNAVAILABLE / DEADLINE_EXCEEDED, with backoff; writes "
                        "reuse their request id, so a retried enroll never makes a second record")
    p.add_argument("--json", action="store_true",
                   help="print the reply as JSON for machines (every field, also false and zero ones)")


def _default_ca(address: str) -> Path | None:
    """The auto certificate of a server on this machine (``<data_dir>/tls/server.crt``)."""
    try:
        host, _ = split_address(address)
        if not is_loopback(host):
            return None
        from engine.config import EngineConfig
        from server.tls import AUTO_CERT

        path = EngineConfig.load().data_dir / AUTO_CERT
    except Exception:  # no usable local configuration: fall back to the system roots
        return None
    return path if path.is_file() else None


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill address, token, CA and server name: options, then environment, then the user's settings
    (``nasname login``), then defaults. Returns ``args``, changed in place."""
    stored = client_config.load()
    args.address = args.address or os.environ.get("NASNAME_ADDRESS") or stored.address or DEFAULT_ADDRESS
    args.plaintext = args.plaintext or (args.address == stored.address and stored.plaintext == "true")
    args.token = args.token if args.token is not None else (os.environ.get("NASNAME_TOKEN")
                                                            or stored.token or None)
    if args.ca is None and not args.plaintext:
        args.ca = Path(stored.ca) if stored.ca and args.address == stored.address else None
        args.ca = args.ca or _default_ca(args.address)
    if not args.tls_server_name and args.address == stored.address:
        args.tls_server_name = stored.tls_server_name or None
    return args


def connect(args: argparse.Namespace) -> Client:
    args = resolve(args)
    return Client(args.address, token=args.token, plaintext=args.plaintext, ca=args.ca,
                  client_cert=args.client_cert, client_key=args.client_key, timeout=args.timeout,
                  server_name=args.tls_server_name or "", retries=max(0, args.retries))


def _samples(args: argparse.Namespace, prefix: str = "") -> list[Any]:
    """Every image given for every modality, in option order (a flag may be repeated: several frames
    of one modality, which the server fuses or picks among)."""
    out = []
    for modality, _ in _SAMPLE_FLAGS:
        for path in getattr(args, prefix + modality) or ():
            out.append(image_sample(modality, Path(path).read_bytes()))
    return out


def _add_sample_options(p: argparse.ArgumentParser, prefix: str = "", what: str = "image file",
                        several: bool = True) -> None:
    repeat = (f"; repeat for several frames (up to {MAX_FRAMES}): refused ones are dropped, the others "
              "fused or the best one used") if several else ""
    for modality, flag in _SAMPLE_FLAGS:
        p.add_argument(f"--{prefix.replace('_', '-')}{flag}", dest=prefix + modality, metavar="IMAGE",
                       type=Path, action="append",
                       help=f"{modality.replace('_', ' ')} {what} (JPEG, PNG, BMP, ...){repeat}")


def _need_samples(args: argparse.Namespace) -> list[Any]:
    samples = _samples(args)
    if not samples:
        raise UsageError("give at least one of --face, --iris-left, --iris-right")
    return samples


def _enroll(c: Client, a: argparse.Namespace) -> Message:
    return c.enroll(_need_samples(a), reference_id=a.id or "", partition=a.partition or "",
                    target_fpir=a.target_fpir, request_id=a.request_id or "")


def _insert(c: Client, a: argparse.Namespace) -> Message:
    return c.insert(_need_samples(a), reference_id=a.id or "", partition=a.partition or "",
                    request_id=a.request_id or "")


def _identify(c: Client, a: argparse.Namespace) -> Message:
    samples = _samples(a)
    if bool(samples) == bool(a.id):
        raise UsageError("give either sample images (--face/--iris-left/--iris-right) or --id")
    return c.identify(samples, reference_id=a.id or "", max_results=a.max_results or 0,
                      target_fpir=a.target_fpir, partition=a.partition or "", reference_ids=a.restrict or ())


def _verify(c: Client, a: argparse.Namespace) -> Message:
    return c.verify(a.id, _need_samples(a), target_fmr=a.target_fmr)


def _records(c: Client, a: argparse.Namespace) -> Message:
    return c.list_records(partition=a.partition or "", status=a.status or "", limit=a.limit, offset=a.offset,
                          created_from=_when(a.created_from), created_to=_when(a.created_to))


def _when(text: str | None) -> float:
    """ISO date or date-time (local time unless it names a zone) -> unix seconds; None -> 0."""
    if not text:
        return 0.0
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO date (2026-12-04 or 2026-12-04T09:30)") from None
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


def _recapture(c: Client, a: argparse.Namespace) -> Message:
    new = _samples(a)
    if len(new) != 1:
        raise UsageError("give exactly one new sample: --face, --iris-left or --iris-right")
    check = _samples(a, "verify_")
    return c.update_biometrics(a.id, new[0], verification=check, target_fmr=a.target_fmr,
                               target_fpir=a.target_fpir)


def _adjudicate(c: Client, a: argparse.Namespace) -> Message:
    if a.decision == "same" and not a.mate:
        raise UsageError("--decision same needs --mate ID: the enrolled record this person already is")
    return c.adjudicate(a.id, a.decision == "same", comment=a.comment, mate_reference_id=a.mate or "",
                        request_id=a.request_id or "")


def _add_request_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("--request-id", help="idempotency key (default: a new one, reused by the automatic "
                                        "retries); give the same one again to repeat a call whose "
                                        "outcome you did not see: it is not done twice")


def client_parser(sub: Any, name: str, help_text: str, run: Runner) -> argparse.ArgumentParser:
    """A client sub-command: connection options, ``--json``, exit codes in its help."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, epilog=output.EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_options(p)
    p.set_defaults(handler=lambda args: run_client(run, args))
    return p


def add_client_commands(sub: Any) -> None:
    """Register enroll/insert/identify/verify/delete/get/stats/pending/adjudicate/reopen/records/
    recapture/health/login (``nasname dedup`` is routed by server.cli_dedup)."""

    def command(name: str, help_text: str, run: Runner) -> argparse.ArgumentParser:
        return client_parser(sub, name, help_text, run)

    fpir_help = "target false-positive identification rate (default: the server's, e.g. 0.003)"
    p = command("enroll", "de-duplicate a person's samples, then enroll them (or hold for adjudication)",
                _enroll)
    _add_sample_options(p)
    p.add_argument("--id", help="reference id (default: generated by the server)")
    p.add_argument("--partition", help="gallery partition (default: 'default')")
    p.add_argument("--target-fpir", type=float, help=fpir_help)
    _add_request_id(p)
    p = command("insert", "store samples without de-duplication", _insert)
    _add_sample_options(p)
    p.add_argument("--id", help="reference id (default: generated)")
    p.add_argument("--partition", help="gallery partition (default: 'default')")
    _add_request_id(p)
    p = command("identify", "1:N search by sample images or by an enrolled --id", _identify)
    _add_sample_options(p)
    p.add_argument("--id", help="probe with this enrolled record")
    p.add_argument("--max-results", type=int, help="at most this many candidates (default 10)")
    p.add_argument("--target-fpir", type=float, help=fpir_help)
    p.add_argument("--partition", help="search only this partition")
    p.add_argument("--restrict", nargs="+", metavar="ID", help="search only these reference ids")
    p = command("verify", "1:1: are these samples the person enrolled as --id?", _verify)
    _add_sample_options(p)
    p.add_argument("--id", required=True, help="the enrolled reference id to compare with")
    p.add_argument("--target-fmr", type=float,
                   help="target false match rate of the decision (default: the server's)")
    p = command("delete", "erase a record's biometrics",
                lambda c, a: c.delete(a.id, request_id=a.request_id or ""))
    p.add_argument("--id", required=True, help="reference id to erase")
    _add_request_id(p)
    p = command("get", "show a record (without biometrics)", lambda c, a: c.get_record(a.id))
    p.add_argument("--id", required=True, help="reference id")
    command("stats", "gallery counts per status, partition and modality", lambda c, a: c.stats())
    p = command("pending", "list records waiting for adjudication",
                lambda c, a: c.list_pending(limit=a.limit, offset=a.offset))
    p.add_argument("--limit", type=int, default=100, help="records per page (default %(default)s)")
    p.add_argument("--offset", type=int, default=0, help="records to skip (paging; default 0)")
    p = command("adjudicate", "decide a pending record", _adjudicate)
    p.add_argument("--id", required=True, help="the pending reference id")
    p.add_argument("--decision", required=True, choices=("same", "distinct"),
                   help="same: a duplicate of --mate (not enrolled); distinct: a different person (enrolled)")
    p.add_argument("--mate", help="for 'same' (required): the enrolled reference id it duplicates")
    p.add_argument("--comment", default="", help="the reason for the decision (kept in the record's history)")
    _add_request_id(p)
    p = command("reopen", "admin: reopen a record decided 'distinct' (it waits for adjudication again)",
                lambda c, a: c.reopen_case(a.id, a.reason))
    p.add_argument("--id", required=True, help="the decided reference id")
    p.add_argument("--reason", required=True, help="why (kept in the record's history)")
    p = command("records", "list records page by page, filtered by partition, status and creation time",
                _records)
    p.add_argument("--partition", help="only this partition")
    p.add_argument("--status", choices=("active", "pending", "deleted"), help="only this status")
    p.add_argument("--created-from", metavar="DATE", help="created at or after (ISO, local time)")
    p.add_argument("--created-to", metavar="DATE", help="created before (ISO, local time)")
    p.add_argument("--limit", type=int, default=100, help="records per page (default %(default)s)")
    p.add_argument("--offset", type=int, default=0, help="records to skip (paging; default 0)")
    p = command("recapture", "add or replace one modality of an enrolled person: verify 1:1 with the "
                "other modalities, de-duplicate the new sample 1:N, then store it", _recapture)
    _add_sample_options(p, what="image file: the one new sample", several=False)
    _add_sample_options(p, "verify_", "image to verify the person with first")
    p.add_argument("--id", required=True, help="the enrolled reference id")
    p.add_argument("--target-fmr", type=float, help="target false match rate of the 1:1 check")
    p.add_argument("--target-fpir", type=float, help=fpir_help)
    command("health", "is the server serving? (no token needed)", lambda c, a: c.health())
    p = sub.add_parser("login", help="store the server's address, certificate and your token for every "
                       "client command", description=(
                           "Check the connection, then store address, server certificate (a copy) and token "
                           f"in {client_config.config_path()} (mode 0600). Every client command uses them "
                           "unless an option or NASNAME_ADDRESS / NASNAME_TOKEN says otherwise."),
                       epilog=output.EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_options(p)
    p.add_argument("--no-check", action="store_true", help="store without contacting the server")
    p.set_defaults(handler=login)


def _rpc_failure(exc: grpc.RpcError, args: argparse.Namespace) -> str:
    """One message with what to do about it."""
    info = error_info(exc)
    reason = info.reason if info is not None else ""
    meta = dict(info.metadata) if info is not None else {}
    details = exc.details() or ""
    code = exc.code()
    if reason in ("QUALITY_CHECK_FAILED", "NO_BIOMETRIC_FOUND"):
        where = f"{meta['modality']}: " if meta.get("modality") else ""
        what = output.instruction_for(meta.get("quality_reasons", "").split(",")) or details
        return f"REFUSED: {where}{what} [{reason}]"
    hint = ""
    if reason in output.ERROR_INSTRUCTIONS:
        hint = output.ERROR_INSTRUCTIONS[reason]
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        hint = "give a valid token: --token, $NASNAME_TOKEN, or store it with `nasname login --token T`"
    elif code == grpc.StatusCode.PERMISSION_DENIED:
        hint = "this token's role may not do that: ask an admin for a token with the right role"
    elif code == grpc.StatusCode.UNAVAILABLE and not reason:
        hint = _connection_hint(details, args)
    extra = "".join(f" {k}={v}" for k, v in sorted(meta.items()))
    head = f"error: {code.name}" + (f" [{reason}]" if reason else "") + f": {details}{extra}"
    return head + (f"\n  what to do: {hint}" if hint else "")


def _connection_hint(details: str, args: argparse.Namespace) -> str:
    low = details.lower()
    if "wrong_version_number" in low:
        return ("the server speaks plaintext (a loopback development server): add --plaintext, or start "
                "it with TLS")
    if "peer name" in low or "hostname verification" in low:
        return ("the server's certificate does not name the host you dialled: start the server with "
                "`--tls-host HOST` (then give stations the new certificate), or pass --tls-server-name "
                "with a name it carries")
    if "certificate" in low or "ssl" in low or "handshake" in low:
        return ("the server's certificate is not trusted: pass --ca FILE (the server prints the path of "
                "its certificate when it starts), or store it once with `nasname login --ca FILE`")
    if args.plaintext and ("socket closed" in low or "connection reset" in low or "eof" in low):
        return "the server speaks TLS: leave out --plaintext (and give --ca FILE if asked)"
    return (f"no nasname server answers at {args.address}: start it with `nasname serve`, or give the "
            "right address with --address H:P (or `nasname login --address H:P`)")


def login(args: argparse.Namespace) -> int:
    """``nasname login``: check, then store (server.client_config)."""
    if args.ca is not None and not args.ca.is_file():
        print(f"nasname login: error: no certificate file {args.ca}", file=sys.stderr)
        return output.EXIT_USAGE
    args = resolve(args)
    if not args.no_check:
        try:
            with connect(args) as client:
                client.health()
                if args.token:
                    _check_token(client)
        except grpc.RpcError as exc:
            print(_rpc_failure(exc, args) + "\n(nothing stored)", file=sys.stderr)
            return output.EXIT_ERROR
    ca = "" if args.plaintext or args.ca is None else str(client_config.store_ca(Path(args.ca).read_bytes()))
    path = client_config.save(client_config.ClientSettings(
        address=args.address, token=args.token or "", ca=ca, tls_server_name=args.tls_server_name or "",
        plaintext="true" if args.plaintext else ""))
    how = "plaintext" if args.plaintext else f"TLS, trusting {ca}" if ca else "TLS, trusting the system roots"
    checked = ("not checked" if args.no_check
               else "server answers" + (", token accepted" if args.token else ""))
    print(f"LOGGED IN to {args.address} ({how}; {checked})\nsettings stored in {path} (mode 0600); "
          "every nasname client command uses them now")
    return output.EXIT_OK


def _check_token(client: Client) -> None:
    """Raise when the server refuses the token itself. Any authenticated call proves it; GetRecord with
    no id fails after authentication, with PERMISSION_DENIED for roles that may not read records or
    INVALID_ARGUMENT for the others, and changes nothing."""
    try:
        client.get_record("")
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise


def emit(reply: Reply, as_json: bool) -> int:
    """Print one reply; returns the exit code its outcome deserves (server.output)."""
    if as_json and not isinstance(reply, str):
        rendered = output.Rendered(output.to_json(reply), output.render(reply).code)
    else:
        rendered = output.render(reply)
    print(rendered.text, flush=True)
    return rendered.code


def run_client(run: Runner, args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            reply = run(client, args)
    except UsageError as exc:
        print(f"nasname {args.command}: error: {exc}", file=sys.stderr)
        return output.EXIT_USAGE
    except grpc.RpcError as exc:
        print(_rpc_failure(exc, args), file=sys.stderr)
        return output.EXIT_ERROR
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return output.EXIT_ERROR
    _warn_target_not_met(reply)
    return emit(reply, getattr(args, "json", False))


def _warn_target_not_met(msg: Reply) -> None:
    """Say in words (on stderr, so the JSON stays parseable) when the requested FPIR could not be met."""
    t = getattr(msg, "threshold", None)
    if isinstance(t, pb.Threshold) and t.target_not_met:
        print(f"warning: the target FPIR {t.target_fpir:g} cannot be met for a gallery of {t.gallery_size} "
              f"records; only the strictest threshold (identical samples) was applied, which gives an "
              f"expected FPIR of {t.expected_fpir:.3g}", file=sys.stderr)
