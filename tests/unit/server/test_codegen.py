"""The committed generated code must be exactly what grpcio-tools makes of proto/ today."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.codegen import GEN_DIR, generate


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    fresh = generate(tmp_path)
    assert fresh, "protoc produced nothing"
    base = tmp_path / "server" / "_gen"
    produced = {p.relative_to(base) for p in fresh}
    committed = {p.relative_to(GEN_DIR) for p in GEN_DIR.rglob("*")
                 if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))}
    assert produced == committed, "generated file set differs: run `python -m server.codegen`"
    stale = [str(rel) for rel in sorted(produced)
             if (base / rel).read_bytes() != (GEN_DIR / rel).read_bytes()]
    assert not stale, f"stale generated code {stale}: run `python -m server.codegen` and commit"
