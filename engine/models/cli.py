"""``nasname models [list | convert [NAME...] | verify | mobilefacenet ... | switch-face ...]``: inspect,
convert and check the models. ``mobilefacenet`` installs the opt-in MobileFaceNet model with its own
flags (licence acceptance, source tarball or ``--fetch``; see ``engine.models.mobilefacenet.main``).
``switch-face --data-dir D --to NAME [--drop-missing]`` re-extracts a stopped gallery's face
templates with another embedding model (``engine.models.face_switch``; resumable: run it again).

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
    conv.add_argument("names", nargs="*", help="models to convert (default: every default model)")
    sub.add_parser("verify", help="check every converted model against its manifest's sha256")
    sub.add_parser("mobilefacenet", add_help=False,
                   help="install the opt-in MobileFaceNet model (licence notice; see its --help)")
    sw = sub.add_parser("switch-face", help="re-extract a gallery's face templates with another model "
                        "(from kept images; resumable; the server must be stopped)")
    sw.add_argument("--data-dir", type=Path, required=True, help="the gallery's data directory")
    sw.add_argument("--to", required=True, metavar="NAME",
                    help="registered face model (e.g. mobilefacenet) or a fusion (sface+dlib_resnet_v1)")
    sw.add_argument("--config", type=Path, default=None, help="engine TOML file (key file location)")
    sw.add_argument("--drop-missing", action="store_true",
                    help="drop the face template of records without a usable kept image (reported)")
    return p


def _switch_face(args: argparse.Namespace, directory: Path) -> int:
    from tqdm import tqdm

    from engine.config import EngineConfig
    from engine.datadir import DataDir
    from engine.errors import Unavailable
    from engine.extractors import face_extractor
    from engine.jobs import Progress
    from engine.models.face_switch import FaceSwitchJob

    out = sys.stdout
    try:
        config = EngineConfig.load(args.config, data_dir=args.data_dir)
        extractor = face_extractor(args.to, model_directory=directory)  # a fusion "a+b" too
        try:
            datadir = DataDir.from_config(config)
        except Unavailable as exc:
            raise Unavailable(f"{exc}; stop the nasname server before switching the face model",
                              reason=exc.reason) from exc
        try:
            job = FaceSwitchJob(datadir, args.to, extractor, drop_missing=args.drop_missing)
            with tqdm(desc=f"switch-face -> {args.to}", unit="record", file=sys.stderr,
                      disable=None) as bar:  # drawn only on a terminal
                def show(p: Progress) -> None:
                    bar.total = p.total
                    bar.update(p.done - bar.n)
                    bar.set_postfix(dropped=p.found)

                summary = job.run(on_progress=show)
        finally:
            datadir.close()
    except NasnameError as exc:
        print(f"switch-face: FAILED ({exc.reason}): {exc}", file=out)
        return 1
    print(f"switch-face: {summary.from_model} -> {summary.to_model}: {summary.reextracted} re-extracted, "
          f"{len(summary.dropped)} dropped (job {summary.job_id})", file=out)
    for ref_id, why in sorted(summary.dropped.items()):
        print(f"  dropped face template of {ref_id}: {why}", file=out)
    print(f"previous database kept at {summary.backup} (delete it once the new gallery is accepted); "
          f"set face_model = \"{args.to}\" in the engine configuration", file=out)
    return 0


def _command(words: list[str]) -> str | None:
    """The sub-command word (the first word that is neither an option nor --model-dir's value)."""
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--model-dir":
            skip = True
        elif not word.startswith("-"):
            return word
    return None


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
    if _command(words) == "mobilefacenet":  # its own flags: --accept-licence, --source, --fetch, --model-dir
        from engine.models.mobilefacenet import main as install_mobilefacenet

        at = words.index("mobilefacenet")
        return install_mobilefacenet(words[:at] + words[at + 1 :])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    directory: Path = args.model_dir or model_dir()
    out = sys.stdout
    if args.command == "switch-face":
        return _switch_face(args, directory)
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
