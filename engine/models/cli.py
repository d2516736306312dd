"""``nasname models [list | convert [NAME...] | verify | mobilefacenet ...]``: inspect, convert and
check the models. ``mobilefacenet`` installs the opt-in MobileFaceNet model with its own flags
(licence acceptance, source tarball or ``--fetch``; see ``engine.models.mobilefacenet.main``).

``main(argv) -> int`` is wired into ``server/cli.py``; it prints to stdout and returns an exit code
(0 ok, 1 a model failed, 2 usage error).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import NasnameError
from engine.models.manifest import ModelManifest, model_dir
from engine.models.registry import ensure_model, get_spec, registered

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasname models", description="Convert and check nasname's models.")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="model directory (default: $NASNAME_MODEL_DIR)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered models and their state")
    conv = sub.add_parser("convert", help="convert models now (default: every default model)")
    conv.add_argument("names", nargs="*")
    sub.add_parser("verify", help="check every converted model against its manifest's sha256")
    sub.add_parser("mobilefacenet", add_help=False,
                   help="install the opt-in MobileFaceNet model (licence notice; see its --help)")
    return p


def _state(name: str, directory: Path) -> str:
    path = directory / f"{name}.json"
    if not path.is_file():
        return "not converted"
    try:
        manifest = ModelManifest.load(path)
        manifest.verify(directory)
    except NasnameError as exc:
        return f"BROKEN: {exc}"
    return f"ok  {manifest.ref}  sha256 {manifest.onnx_sha256[:12]}"


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if "mobilefacenet" in words:  # its own flags: --accept-licence, --source, --fetch, --model-dir
        from engine.models.mobilefacenet import main as install_mobilefacenet

        at = words.index("mobilefacenet")
        return install_mobilefacenet(words[:at] + words[at + 1 :])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    directory: Path = args.model_dir or model_dir()
    out = sys.stdout
    if args.command == "list":
        print(f"model directory: {directory}", file=out)
        for spec in registered():
            source = "" if spec.available() else "  (source weights not installed)"
            default = "" if spec.default else "  [opt-in]"
            state = _state(spec.name, directory)
            print(f"{spec.name:<20} {spec.kind:<15} {state}{default}{source}", file=out)
            print(f"{'':<20} {spec.description}", file=out)
        return 0
    if args.command == "convert":
        names = args.names or [s.name for s in registered() if s.default]
        failed = 0
        for name in names:
            try:
                get_spec(name)
                manifest, path = ensure_model(name, directory)
                print(f"{name}: {manifest.ref} -> {path}", file=out)
            except NasnameError as exc:
                print(f"{name}: FAILED: {exc}", file=out)
                failed += 1
        return 1 if failed else 0
    failed = 0
    for spec in registered():
        state = _state(spec.name, directory)
        if state.startswith("BROKEN"):
            failed += 1
        print(f"{spec.name:<20} {state}", file=out)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
