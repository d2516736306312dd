"""Shared set-up of the service tests (no tests here): a real Engine on a temporary data directory with
synthetic 128-d face templates and a matching calibration, served on 127.0.0.1:0 with one token per role.

Impostor cosine ~ N(0, 1/128) and mates made with small noise (cosine ~0.8), as in
tests/unit/core/test_engine.py, so thresholds from a target FPIR are meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.calibration import save_distributions
from engine.config import EngineConfig
from engine.engine import Engine
from engine.fusion import Fusion
from engine.ops.schedule import BackupSettings
from engine.types import FaceTemplate, Modality, ModelRef
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.app import Server, create_server
from server.auth import Role
from server.client import Client, template_sample
from server.config import ServerConfig

MODEL = ModelRef("synthetic-face", "1")
DIM = 128
Vec = npt.NDArray[np.float32]


def unit(rng: np.random.Generator) -> Vec:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def mate(v: Vec, rng: np.random.Generator, noise: float = 0.055) -> Vec:
    w = v + rng.normal(scale=noise, size=DIM).astype(np.float32)
    return (w / np.linalg.norm(w)).astype(np.float32)


def face(v: Vec, model: ModelRef = MODEL) -> list[pb.Sample]:
    return [template_sample("face", FaceTemplate(v, model))]


def make_fusion(directory: Path) -> Fusion:
    rng = np.random.default_rng(11)
    base = np.stack([unit(rng) for _ in range(2000)])
    gen = np.einsum("ij,ij->i", base, np.stack([mate(v, rng) for v in base]))
    imp = rng.normal(0.0, 1 / np.sqrt(DIM), 1_000_000)
    save_distributions(MODEL, "face", gen, imp, source="synthetic", command="test", directory=directory)
    return Fusion.for_models({Modality.FACE: MODEL}, directory)


def open_engine(data_dir: Path, fusion: Fusion) -> Engine:
    cfg = EngineConfig(data_dir=data_dir, modalities=("face",), snapshot_every=0)
    return Engine.open(cfg, fusion=fusion)


@dataclass
class Service:
    engine: Engine
    server: Server
    address: str
    secrets: dict[Role, str]

    def client(self, role: Role, **kw: object) -> Client:
        return Client(self.address, token=self.secrets[role], plaintext=True, timeout=20.0, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.stop(5.0)
        self.engine.close()


def start_service(engine: Engine, config: ServerConfig | None = None,
                  backup: BackupSettings | None = None) -> Service:
    tokens = engine.tokens
    secrets = {role: tokens.create_token(f"{role.value} test", role.value)[1] for role in Role}
    config = config or ServerConfig(address="127.0.0.1:0", allow_plaintext=True)
    server, port = create_server("127.0.0.1:0", engine, tokens=tokens, config=config, backup=backup)
    server.start()
    return Service(engine, server, f"127.0.0.1:{port}", secrets)
