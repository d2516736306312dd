"""Score calibration data: the genuine and impostor similarity distributions of one model.

Each model's distributions are measured on real images by the script that the extractor's issue ships
(``models/calibrate_*.py``) and saved as a small versioned JSON file in ``engine/calibration_data/``
named ``<model_id>@<version>.json``: histograms of similarities on a fine common grid, the counts
behind them, and the command that regenerates the file. Numbers only, never images.

A model may also have *variants*: the same model's scores when its templates are made differently.
Fusing face frames (``engine.multisample``) renormalises a mean, which makes impostors look more
alike (the part every face shares survives the averaging), so a gallery of fused templates needs its
own impostor distributions for its thresholds to keep their promise:

* ``fused3`` (file ``<model_id>@<version>~fused3.json``): templates fused from up to three frames on
  both sides of the comparison;
* ``fused3x1``: a template fused from up to three frames against a single frame (a station's
  one-photo probe against a gallery that may hold fused records).

``engine.fusion`` turns these into log-likelihood ratios and FPIR thresholds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError
from engine.models.manifest import write_atomic
from engine.types import ModelRef

__all__ = ["CALIBRATION_DIR", "FUSED_FACE", "FUSED_FACE_VS_ONE", "ScoreDistributions", "fused_face_variant",
           "has_distributions", "load_distributions", "save_distributions"]

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration_data"
FORMAT = 1

#: The variants of fused face templates (``engine.multisample.FACE_FUSE_MAX`` frames at most): both
#: sides fused, and one side fused against a single frame.
FUSED_FACE = "fused3"
FUSED_FACE_VS_ONE = "fused3x1"


@dataclass(frozen=True)
class ScoreDistributions:
    """Histograms of similarities. ``edges`` (B+1,) ascending; ``genuine``/``impostor`` counts (B,).

    ``impostor_tail`` keeps the largest impostor scores exactly (sorted descending), because the
    thresholds that matter (FMR 1e-6 and below for large galleries) live in the extreme tail that a
    histogram flattens."""

    model: ModelRef
    kind: str
    edges: npt.NDArray[np.float64]
    genuine: npt.NDArray[np.int64]
    impostor: npt.NDArray[np.int64]
    impostor_tail: npt.NDArray[np.float64]
    source: str
    command: str
    variant: str = ""

    @property
    def n_genuine(self) -> int:
        return int(self.genuine.sum())

    @property
    def n_impostor(self) -> int:
        return int(self.impostor.sum())


def _path(model: ModelRef, directory: Path | None, variant: str = "") -> Path:
    safe = f"{model.model_id}@{model.version}".replace("/", "_") + (f"~{variant}" if variant else "")
    return (directory or CALIBRATION_DIR) / f"{safe}.json"


def save_distributions(
    model: ModelRef,
    kind: str,
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    *,
    source: str,
    command: str,
    bins: int = 2000,
    score_range: tuple[float, float] | None = None,
    tail: int = 10000,
    directory: Path | None = None,
    variant: str = "",
) -> Path:
    """Histogram the raw similarities and write the calibration file atomically. Returns its path.

    ``source``: which images, how many, protocol; ``command``: how to regenerate the file;
    ``variant``: see the module's docstring ("" for the model's plain templates)."""
    g = np.asarray(genuine, dtype=np.float64).ravel()
    i = np.asarray(impostor, dtype=np.float64).ravel()
    if g.size == 0 or i.size == 0 or not (np.all(np.isfinite(g)) and np.all(np.isfinite(i))):
        raise ConfigurationError("calibration needs finite genuine and impostor scores")
    lo, hi = score_range or ((-1.0, 1.0) if kind == "face" else (0.0, 1.0))
    lo = min(lo, float(g.min()), float(i.min()))
    hi = max(hi, float(g.max()), float(i.max()))
    edges = np.linspace(lo, hi, bins + 1)
    doc = {
        "format": FORMAT,
        "model": {"model_id": model.model_id, "version": model.version},
        "kind": kind,
        "variant": variant,
        "source": source,
        "command": command,
        "edges": [round(float(e), 6) for e in edges],
        "genuine": np.histogram(g, edges)[0].tolist(),
        "impostor": np.histogram(i, edges)[0].tolist(),
        "impostor_tail": [round(float(s), 6) for s in np.sort(i)[::-1][:tail]],
    }
    path = _path(model, directory, variant)
    write_atomic(path, (json.dumps(doc, separators=(",", ":")) + "\n").encode())
    return path


def has_distributions(model: ModelRef, directory: Path | None = None, variant: str = "") -> bool:
    """Whether ``model`` has a calibration file (of ``variant``)."""
    return _path(model, directory, variant).is_file()


def fused_face_variant(model: ModelRef, *, one_frame: bool,
                       exists: Callable[[ModelRef, str], bool] | None = None) -> str:
    """The calibration variant of a face comparison against a gallery that may hold fused templates:
    ``FUSED_FACE_VS_ONE`` for a probe made from ``one_frame`` when ``model`` has it, else the worst
    case ``FUSED_FACE``. ``exists(model, variant)``: how to tell a calibration file is there (default
    :func:`has_distributions`; the engine passes its memo)."""
    has = exists or (lambda m, v: has_distributions(m, variant=v))
    return FUSED_FACE_VS_ONE if one_frame and has(model, FUSED_FACE_VS_ONE) else FUSED_FACE


def load_distributions(model: ModelRef, directory: Path | None = None,
                       variant: str = "") -> ScoreDistributions | None:
    """The calibration file of ``model`` (of ``variant``), or ``None`` when it has none."""
    path = _path(model, directory, variant)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw["format"] != FORMAT:
            raise ValueError(f"unsupported format {raw['format']!r}")
        return ScoreDistributions(
            model=ModelRef(raw["model"]["model_id"], raw["model"]["version"]),
            kind=raw["kind"],
            edges=np.asarray(raw["edges"], dtype=np.float64),
            genuine=np.asarray(raw["genuine"], dtype=np.int64),
            impostor=np.asarray(raw["impostor"], dtype=np.int64),
            impostor_tail=np.asarray(raw["impostor_tail"], dtype=np.float64),
            source=raw["source"],
            command=raw["command"],
            variant=str(raw.get("variant", "")),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"calibration file {path} is unreadable: {exc}") from exc
