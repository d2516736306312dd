"""A photo showing several faces: a warning by default, refused with ``multiple_faces = "reject"``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import ConfigurationError, QualityRejected
from engine.extractor import Extraction
from engine.fusion import Fusion
from engine.records import Sample
from engine.types import FaceTemplate, Modality, Quality, QualityReason
from tests.unit.core.conftest import MODEL, unit


class TwoFacesExtractor:
    kind = "face"
    model = MODEL

    def extract(self, image: object) -> Extraction:
        quality = Quality(0.8, True, (QualityReason.MULTIPLE_FACES,), {"faces_found": 2.0})
        return Extraction(FaceTemplate(unit(np.random.default_rng(1)), MODEL), quality)


@pytest.mark.parametrize("policy", ["warn", "reject"])
def test_multiple_faces_policy(tmp_path: Path, fusion: Fusion, policy: str) -> None:
    cfg = EngineConfig(data_dir=tmp_path / "d", modalities=("face",), snapshot_every=0, multiple_faces=policy)
    engine = Engine.open(cfg, extractors=lambda kind: TwoFacesExtractor(), fusion=fusion)
    try:
        photo = [Sample(Modality.FACE, image=b"a photo")]
        if policy == "warn":
            [result] = engine.insert("A", photo).samples
            assert result.quality is not None and QualityReason.MULTIPLE_FACES in result.quality.reasons
        else:
            with pytest.raises(QualityRejected) as refused:
                engine.insert("A", photo)
            assert refused.value.reasons == ("MULTIPLE_FACES",)
    finally:
        engine.close()


def test_unknown_policy_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        EngineConfig(multiple_faces="ask")
