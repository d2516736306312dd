"""``nasname <client command>``: talk to a running server with :class:`server.client.Client`.

Connection options are shared by every client command: ``--address`` (``$NASNAME_ADDRESS``, default
127.0.0.1:50051), ``--token`` (``$NASNAME_TOKEN``), TLS by default with ``--ca`` (for a loopback address
without ``--ca`` the server's auto certificate in the data directory is used), ``--plaintext``.
Results are printed as JSON (protobuf field names).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from server._gen.nasname.v1 import nasname_pb2 as pb
from server.client import Client, error_info, image_sample
from server.config import is_loopback, split_address

__all__ = ["add_client_commands", "add_connection_options"]

DEFAULT_ADDRESS = "127.0.0.1:50051"
_SAMPLE_FLAGS = (("face", "face"), ("iris_left", "iris-left"), ("iris_right", "iris-right"))


def add_connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--address", default=os.environ.get("NASNAME_ADDRESS", DEFAULT_ADDRESS),
                   help="server host:port (default $NASNAME_ADDRESS or %(default)s)")
    g.add_argument("--token", default=os.environ.get("NASNAME_TOKEN"),
                   help="API token secret (default $NASNAME_TOKEN)")
    g.add_argument("--ca", type=Path, help="PEM certificate(s) to trust for the server")
    g.add_argument("--client-cert", type=Path, help="PEM client certificate (mutual TLS)")
    g.add_argument("--client-key", type=Path, help="PEM client key (mutual TLS)")
    g.add_argument("--plaintext", action="store_true", help="no TLS (loopback servers that allow it)")
    g.add_argument("--timeout", type=float, default=60.0, help="deadline per call, seconds")


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


def connect(args: argparse.Namespace) -> Client:
    ca = args.ca or (None if args.plaintext else _default_ca(args.address))
    return Client(args.address, token=args.token, plaintext=args.plaintext, ca=ca,
                  client_cert=args.client_cert, client_key=args.client_key, timeout=args.timeout)


def _samples(args: argparse.Namespace) -> list[Any]:
    out = []
    for modality, _ in _SAMPLE_FLAGS:
        path = getattr(args, modality)
        if path is not None:
            out.append(image_sample(modality, Path(path).read_bytes()))
    return out


def _add_sample_options(p: argparse.ArgumentParser) -> None:
    for modality, flag in _SAMPLE_FLAGS:
        p.add_argument(f"--{flag}", dest=modality, metavar="IMAGE", type=Path,
                       help=f"{modality.replace('_', ' ')} image file (JPEG, PNG, BMP, ...)")


def _need_samples(args: argparse.Namespace) -> list[Any]:
    samples = _samples(args)
    if not samples:
        raise SystemExit("give at least one of --face, --iris-left, --iris-right")
    return samples


def _print(msg: Message) -> None:
    print(json.dumps(json_format.MessageToDict(msg, preserving_proto_field_name=True), indent=2))


def _enroll(c: Client, a: argparse.Namespace) -> Message:
    return c.enroll(_need_samples(a), reference_id=a.id or "", partition=a.partition or "",
                    target_fpir=a.target_fpir)


def _insert(c: Client, a: argparse.Namespace) -> Message:
    return c.insert(_need_samples(a), reference_id=a.id or "", partition=a.partition or "")


def _identify(c: Client, a: argparse.Namespace) -> Message:
    samples = _samples(a)
    if bool(samples) == bool(a.id):
        raise SystemExit("give either sample images (--face/--iris-left/--iris-right) or --id")
    return c.identify(samples, reference_id=a.id or "", max_results=a.max_results or 0,
                      target_fpir=a.target_fpir, partition=a.partition or "", reference_ids=a.restrict or ())


def _verify(c: Client, a: argparse.Namespace) -> Message:
    return c.verify(a.id, _need_samples(a), target_fmr=a.target_fmr)


def _adjudicate(c: Client, a: argparse.Namespace) -> Message:
    return c.adjudicate(a.id, a.decision == "same", comment=a.comment, mate_reference_id=a.mate or "")


def add_client_commands(sub: Any) -> None:
    """Register enroll/insert/identify/verify/delete/get/stats/pending/adjudicate/health."""

    def command(name: str, help_text: str, run: Callable[[Client, argparse.Namespace], Message | str],
                ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        add_connection_options(p)
        p.set_defaults(handler=lambda args: run_client(run, args))
        return p

    p = command("enroll", "de-duplicate a person's samples, then enroll them (or hold for adjudication)",
                _enroll)
    _add_sample_options(p)
    p.add_argument("--id", help="reference id (default: generated by the server)")
    p.add_argument("--partition", help="gallery partition (default: 'default')")
    p.add_argument("--target-fpir", type=float)
    p = command("insert", "store samples without de-duplication", _insert)
    _add_sample_options(p)
    p.add_argument("--id", help="reference id (default: generated)")
    p.add_argument("--partition")
    p = command("identify", "1:N search by sample images or by an enrolled --id", _identify)
    _add_sample_options(p)
    p.add_argument("--id", help="probe with this enrolled record")
    p.add_argument("--max-results", type=int)
    p.add_argument("--target-fpir", type=float)
    p.add_argument("--partition")
    p.add_argument("--restrict", nargs="+", metavar="ID", help="search only these reference ids")
    p = command("verify", "1:1: are these samples the person enrolled as --id?", _verify)
    _add_sample_options(p)
    p.add_argument("--id", required=True)
    p.add_argument("--target-fmr", type=float)
    p = command("delete", "erase a record's biometrics", lambda c, a: c.delete(a.id))
    p.add_argument("--id", required=True)
    p = command("get", "show a record (without biometrics)", lambda c, a: c.get_record(a.id))
    p.add_argument("--id", required=True)
    command("stats", "gallery counts per status, partition and modality", lambda c, a: c.stats())
    p = command("pending", "list records waiting for adjudication",
                lambda c, a: c.list_pending(limit=a.limit, offset=a.offset))
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p = command("adjudicate", "decide a pending record", _adjudicate)
    p.add_argument("--id", required=True)
    p.add_argument("--decision", required=True, choices=("same", "distinct"))
    p.add_argument("--mate", help="for 'same': the reference id it duplicates")
    p.add_argument("--comment", default="")
    command("health", "is the server serving? (no token needed)", lambda c, a: c.health())
    from server.cli_dedup import add_dedup_command

    add_dedup_command(command)


def run_client(run: Callable[[Client, argparse.Namespace], Message | str], args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            out = run(client, args)
    except grpc.RpcError as exc:
        info = error_info(exc)
        reason = f" [{info.reason}]" if info is not None else ""
        extra = "".join(f" {k}={v}" for k, v in sorted(info.metadata.items())) if info is not None else ""
        print(f"error: {exc.code().name}{reason}: {exc.details()}{extra}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(out, str):
        print(out)
    else:
        _print(out)
        _warn_target_not_met(out)
    return 0


def _warn_target_not_met(msg: Message) -> None:
    """Say in words (on stderr, so the JSON stays parseable) when the requested FPIR could not be met."""
    t = getattr(msg, "threshold", None)
    if isinstance(t, pb.Threshold) and t.target_not_met:
        print(f"warning: the target FPIR {t.target_fpir:g} cannot be met for a gallery of {t.gallery_size} "
              f"records; only the strictest threshold (identical samples) was applied, which gives an "
              f"expected FPIR of {t.expected_fpir:.3g}", file=sys.stderr)
