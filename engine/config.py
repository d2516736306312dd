"""Engine configuration: frozen dataclasses read at the edge from one TOML file plus environment.

    [engine]                       # every key optional; defaults below
    data_dir = "/var/lib/nasname"
    identify_target_fpir = 0.003
    enroll_target_fpir = 0.003
    verify_target_fmr = 0.0001
    keep_images = false
    face_index = "exact"           # exact | fp16 | sq8 | hnsw | ivf (approximate: recall measured)
    face_model = "sface"           # registered face embedding (or dlib_resnet_v1); opt-in: install first
    modalities = ["face", "iris_left", "iris_right"]

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

__all__ = ["EngineConfig", "coerce_setting", "load_toml", "settings_kwargs"]


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


@dataclass(frozen=True)
class EngineConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    key_file: Path | None = None  # default <data_dir>/nasname.key (created 0600 on first run)
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
    # A registry name (engine.models.registry). A gallery's face templates all come from one model:
    # changing this on a gallery that has face templates needs `nasname models switch-face`.
    face_model: str = "sface"

    def __post_init__(self) -> None:
        for name in ("identify_target_fpir", "enroll_target_fpir", "verify_target_fmr"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ConfigurationError(f"{name} must be in (0, 1), got {v}")
        if self.shortlist < 1 or self.max_results_limit < 1:
            raise ConfigurationError("shortlist and max_results_limit must be positive")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", self.face_model):
            raise ConfigurationError(f"face_model must be a registered model name, got {self.face_model!r}")

    @property
    def store_path(self) -> Path:
        return self.data_dir / "nasname.db"

    @property
    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / "nasname.key"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> EngineConfig:
        return cls(**settings_kwargs(cls, values, "engine"))

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> EngineConfig:
        """File, then ``NASNAME_*`` environment, then explicit keyword overrides."""
        values: dict[str, Any] = dict(load_toml(path).get("engine", {}))
        for f in dataclasses.fields(cls):
            env = os.environ.get(f"NASNAME_{f.name.upper()}")
            if env is not None:
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)


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
