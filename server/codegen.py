"""Regenerate ``server/_gen`` from ``proto/`` with grpcio-tools (a development-time tool).

    python -m server.codegen            # rewrite server/_gen/nasname/v1/*_pb2*.py(i)

The proto root is mapped to the virtual path ``server/_gen`` so that the generated modules import each
other as ``server._gen.nasname.v1...`` without any post-processing of the generated text. The stale-code
test (tests/unit/server/test_codegen.py) runs :func:`generate` into a temporary folder and diffs.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["GEN_DIR", "PROTO_DIR", "generate"]

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_DIR = ROOT / "server" / "_gen"
_VIRTUAL = "server/_gen"


def generate(out_root: Path) -> list[Path]:
    """Run protoc on every ``proto/**/*.proto``; outputs go under ``out_root/server/_gen/`` (so pass the
    repository root to regenerate in place). Returns the generated files."""
    import google.rpc.status_pb2  # for the path of googleapis-common-protos' .proto files
    from grpc_tools import protoc  # type: ignore[import-untyped]

    gen_root = Path(protoc.__file__).parent / "_proto"
    googleapis_root = Path(google.rpc.status_pb2.__file__).parent.parent.parent
    sources = sorted(PROTO_DIR.rglob("*.proto"))
    names = [f"{_VIRTUAL}/{p.relative_to(PROTO_DIR).as_posix()}" for p in sources]
    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{_VIRTUAL}={PROTO_DIR}",
        f"-I{googleapis_root}",
        f"-I{gen_root}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *names,
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    return sorted(p for p in (out_root / _VIRTUAL).rglob("*") if p.suffix in {".py", ".pyi"}
                  and p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")))


if __name__ == "__main__":
    for path in generate(ROOT):
        print(path.relative_to(ROOT))
    sys.exit(0)
