"""Prometheus metrics: the engine's extraction hook feeds the stage histograms; RPC observations and the
scrape-time gallery gauges appear in the exposition text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from engine.config import EngineConfig
from engine.engine import Engine
from engine.extractor import Extraction
from engine.records import Sample
from engine.types import FaceTemplate, Modality, ModelRef, Quality
from server.metrics import EngineCollector, exposition, observe_extraction, observe_rpc
from tests.web_support import open_engine, seed_gallery


class TimedFace:
    """A face extractor that reports fixed stage timings."""

    kind = "face"
    model = ModelRef("synthetic-face", "1")

    def extract(self, image: bytes) -> Extraction:
        v = np.ones(128, np.float32) / np.sqrt(128)
        return Extraction(FaceTemplate(v, self.model), Quality(0.9, True),
                          {"stage_ms": {"detect": 12.0, "embed": 30.0}})


def test_extraction_stages_and_rpcs_are_exported(tmp_path: Path) -> None:
    cfg = EngineConfig(data_dir=tmp_path / "d", modalities=("face",), snapshot_every=0)
    engine = Engine.open(cfg, extractors=lambda kind: TimedFace())
    seen: list[tuple[str, dict[str, float]]] = []
    engine.on_extraction(lambda kind, stages: seen.append((kind, dict(stages))))
    engine.insert("R-x", [Sample(Modality.FACE, image=b"jpeg bytes")])
    assert seen == [("face", {"detect": 12.0, "embed": 30.0})]
    engine.on_extraction(observe_extraction)
    engine.insert("R-y", [Sample(Modality.FACE, image=b"jpeg bytes")])
    observe_rpc("Enroll", "OK", 0.2)
    text = exposition(CollectorRegistry()).decode()
    assert 'nasname_extraction_stage_seconds_count{kind="face",stage="embed"}' in text
    assert 'nasname_rpc_requests_total{code="OK",rpc="Enroll"}' in text
    engine.close()


def test_gallery_gauges_are_read_at_scrape_time(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "data")
    try:
        registry = CollectorRegistry()
        registry.register(EngineCollector(engine.stats, lambda: [], started=0.0))
        before = exposition(registry).decode()
        assert "nasname_adjudication_pending 0.0" in before
        seed_gallery(engine)
        after = exposition(registry).decode()
        assert "nasname_adjudication_pending 2.0" in after
        assert 'nasname_gallery_records{status="active"} 2.0' in after
        assert 'nasname_gallery_templates{modality="iris_left"} 2.0' in after
    finally:
        engine.close()


def test_backup_age_and_transfer_gauges(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "data")
    peers = [{"site_id": "camp-b", "backlog": 7, "last_sent_seq": 40, "last_sent": "2026-11-30T10:00:00Z",
              "last_received_seq": 12, "last_received": None}]
    try:
        registry = CollectorRegistry()
        registry.register(EngineCollector(engine.stats, lambda: [], started=0.0, transfers=lambda: peers))
        text = exposition(registry).decode()
        assert "nasname_backup_age_seconds +Inf" in text  # never backed up: any "older than" alert fires
        assert "nasname_backup_last_success_timestamp_seconds 0.0" in text
        assert 'nasname_transfer_backlog_records{peer="camp-b"} 7.0' in text
        assert 'nasname_transfer_seq{direction="sent",peer="camp-b"} 40.0' in text
        assert 'nasname_transfer_last_timestamp_seconds{direction="sent",peer="camp-b"} 1.7960328e+09' in text
        assert 'nasname_transfer_last_timestamp_seconds{direction="received",peer="camp-b"} 0.0' in text
    finally:
        engine.close()
