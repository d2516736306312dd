"""Engine configuration: frozen dataclasses read at the edge from one TOML file plus environment.

    [engine]                       # every key optional; defaults below
    data_dir = "/var/lib/nasname"
    identify_target_fpir = 0.003
    enroll_target_fpir = 0.003
    verify_target_fmr = 0.0001
    keep_images = false
    threads = 0                    # CPU threads for scans (0 = CPUs available to the process)
    face_index = "exact"           # exact | fp16 | sq8 | hnsw | ivf (approximate: recall measured)
    face_model = "sface"           # face embedding or two fused (sface+dlib_resnet_v1); opt-in: install first
    multiple_faces = "warn"        # warn | reject: a photo showing several faces
    face_frames = "fuse"           # fuse | best: several face frames in one call (engine.multisample)
    iris_frames = "fuse"           # best | fuse: several frames of one eye in one call
    modalities = ["face", "iris_left", "iris_right"]
    idempotency_retention_s = 86400   # how long a write's request id is remembered (retries)

    [cluster]                      # where the indexes live (engine.cluster); default local
    backend = "local"              # local | ray (Ray-sharded gallery: pip install 'nasname[cluster]')
    address = ""                   # ray: "" starts a local Ray cluster; an address joins one
    shards = 2

Environment overrides, highest priority: ``NASNAME_<KEY>`` for any key of ``[engine]`` (e.g.
``NASNAME_DATA_DIR``, ``NASNAME_FACE_INDEX``); ``NASNAME_CONFIG`` names the TOML file (default
``<data_dir>/nasname.toml`` when it exists). Other sections (``[server]``) belong to their owners and
are read with ``load_toml``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigurationError
from engine.models.manifest import default_data_dir

__all__ = ["ClusterConfig", "EngineConfig", "coerce_setting", "load_toml", "settings_kwargs"]


def load_toml(path: Path | None) -> dict[str, Any]:
    """The whole config file as a dict (``{}`` when there is none)."""
    if path is None:
        env = os.environ.get("NASNAME_CONFIG")
        if env:
            path = Path(env)
        else:
            candidate = default_data_dir() / "nasname.toml"
            if not candidate.is_file():
                return {}
            path = candidate
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"config file {path} not found") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"config file {path} is invalid: {exc}") from exc


CLUSTER_BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class ClusterConfig:
    """``[cluster]``: where the gallery's indexes live (``engine.cluster``). ``local`` (default): in
    this process, no Ray needed. ``ray``: ``shards`` actors on the Ray cluster at ``address`` ("" =
    start a local one), each reserving ``shard_cpus``; a shard call slower than ``timeout_s`` counts
    as a failed shard. Environment: ``NASNAME_CLUSTER_<KEY>``."""

    backend: str = "local"
    address: str = ""
    shards: int = 2
    shard_cpus: float = 1.0
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.backend not in CLUSTER_BACKENDS:
            raise ConfigurationError(f"cluster backend must be one of {', '.join(CLUSTER_BACKENDS)}, "
                                     f"got {self.backend!r}")
        if self.shards < 1 or self.shard_cpus <= 0 or self.timeout_s <= 0:
            raise ConfigurationError("cluster shards, shard_cpus and timeout_s must be positive")

    @classmethod
    def from_section(cls, values: Mapping[str, Any]) -> ClusterConfig:
        merged = dict(values)
        for f in dataclasses.fields(cls):
            env = os.environ.get(f"NASNAME_CLUSTER_{f.name.upper()}")
            if env is not None:
                merged[f.name] = env
        return cls(**settings_kwargs(cls, merged, "cluster"))


@dataclass(frozen=True)
class EngineConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    key_file: Path | None = None  # default <data_dir>/nasname.key (created 0600 for a new data dir only)
    identify_target_fpir: float = 0.003
    enroll_target_fpir: float = 0.003
    verify_target_fmr: float = 1e-4
    keep_images: bool = False
    face_index: str = "exact"
    iris_index: str = "exact"
    modalities: tuple[str, ...] = ("face", "iris_left", "iris_right")
    shortlist: int = 100  # candidates taken from each modality's index before fusion
    max_results_limit: int = 1000
    snapshot_every: int = 10000  # changes between background index snapshots
    face_threads: int = 0  # onnxruntime intra-op threads (0 = library default)
    # CPU threads for scan shards, BLAS, numba and micro-batches (0 = the CPUs available to the
    # process: affinity and cgroup quota, engine.cpus); NASNAME_THREADS / `nasname serve --threads`
    threads: int = 0
    # A registry name (engine.models.registry). A gallery's face templates all come from one model:
    # changing this on a gallery that has face templates needs `nasname models switch-face`.
    face_model: str = "sface"
    # A write repeated with the same request id by the same caller within this many seconds returns
    # the first call's result (engine.store.idempotency); a station's retries after a lost response.
    idempotency_retention_s: float = 24 * 3600.0
    # operations event log (engine.events): rows older than this are pruned; 0 keeps them forever
    event_retention_days: float = 400.0
    # A photo with several faces: "warn" (one is chosen, the largest near the centre; MULTIPLE_FACES is
    # a warning and the reply names the face used) or "reject" (refused: QUALITY_CHECK_FAILED).
    multiple_faces: str = "warn"
    # Several frames of one modality in one call (engine.multisample): "best" keeps the frame of the
    # best quality, "fuse" combines the usable frames into one template. Both fuse by default, as
    # measured on the shared sets (docs/QUALITY.md). Iris: three frames take MMU2 FNMR at FMR 1e-3
    # from 8.1% to 1.5%, impostor rate unchanged. Face: the best three photos are fused, and face
    # comparisons are then thresholded with the calibrations of fused templates (a mean embedding
    # sits closer to every face); at the engine's own FPIR 0.003 threshold three photos at enrolment
    # take LFW FNIR from 5.6% (best of three) to 1.7%. The price: single photos are held to the
    # fused-against-one calibration (LFW FNIR 7.4% -> 8.4% at 416 records); a site whose stations
    # only ever send one photo may set "best".
    face_frames: str = "fuse"
    iris_frames: str = "fuse"
    # Names this installation (camp, office) in backup archives and their file names; free text.
    site_id: str = ""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # the [cluster] section

    def __post_init__(self) -> None:
        if self.multiple_faces not in ("warn", "reject"):
            raise ConfigurationError(
                f"multiple_faces must be 'warn' or 'reject', got {self.multiple_faces!r}")
        for name in ("face_frames", "iris_frames"):
            if getattr(self, name) not in ("best", "fuse"):
                raise ConfigurationError(f"{name} must be 'best' or 'fuse', got {getattr(self, name)!r}")
        for name in ("identify_target_fpir", "enroll_target_fpir", "verify_target_fmr"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ConfigurationError(f"{name} must be in (0, 1), got {v}")
        if not self.idempotency_retention_s > 0:
            raise ConfigurationError("idempotency_retention_s must be positive")
        if self.threads < 0:
            raise ConfigurationError(f"threads must be >= 0 (0 = the CPUs available), got {self.threads}")
        if self.shortlist < 1 or self.max_results_limit < 1:
            raise ConfigurationError("shortlist and max_results_limit must be positive")
        # a registry name, or two joined by "+" (a fusion of two face models, engine.face.ensemble)
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}(\+[a-z0-9][a-z0-9_.-]{0,63})?", self.face_model):
            raise ConfigurationError(f"face_model must be a registered model name (or two joined by '+'), "
                                     f"got {self.face_model!r}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any], cluster: ClusterConfig | None = None) -> EngineConfig:
        if "cluster" in values:
            raise ConfigurationError("cluster settings belong in the [cluster] section")
        return cls(**settings_kwargs(cls, values, "engine"), cluster=cluster or ClusterConfig())

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> EngineConfig:
        """File, then ``NASNAME_*`` environment, then explicit keyword overrides."""
        toml = load_toml(path)
        values: dict[str, Any] = dict(toml.get("engine", {}))
        for f in dataclasses.fields(cls):
            if f.name == "cluster":
                continue
            env = os.environ.get(f"NASNAME_{f.name.upper()}")
            if env is not None:
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values, ClusterConfig.from_section(toml.get("cluster", {})))


def settings_kwargs(cls: Any, values: Mapping[str, Any], section: str) -> dict[str, Any]:
    """Constructor arguments of the settings dataclass ``cls`` from raw TOML / environment values:
    unknown keys are refused, each value is converted to its field's type. Shared by every
    configuration section (``server.config`` too)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in fields:
            raise ConfigurationError(f"unknown {section} setting {key!r}")
        kwargs[key] = coerce_setting(key, str(fields[key].type), raw, section=section)
    return kwargs


def coerce_setting(key: str, kind: str, raw: Any, *, section: str = "engine") -> Any:
    """Convert a raw TOML or environment value to the field type named by ``kind`` (the dataclass
    field's annotation as a string). Shared by every configuration section (``server.config`` too)."""
    try:
        if "Path" in kind:
            return None if raw in (None, "") else Path(str(raw)).expanduser()
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(f"not a boolean: {raw!r}")
            return text in {"1", "true", "yes", "on"}
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError(f"not an integer: {raw!r}")
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(i).strip() for i in items if str(i).strip())
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{section} setting {key}: {exc}") from exc
