"""Prometheus metrics (``prometheus-client``), served as ``/metrics`` on the console port.

Request counts and latency per RPC and outcome are observed by the gRPC interceptor
(:func:`observe_rpc`, process-wide); extraction stage timings by the engine's ``on_extraction`` hook
(:func:`observe_extraction`, set by ``serve``). Gallery sizes, the adjudication backlog, dedup progress and
uptime are read when scraped (:class:`EngineCollector`, one per console), so they are never stale
and cost nothing between scrapes.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["EngineCollector", "exposition", "observe_extraction", "observe_rpc"]

RPC_REQUESTS = Counter("nasname_rpc_requests", "gRPC calls by method and status code", ["rpc", "code"])
RPC_LATENCY = Histogram("nasname_rpc_latency_seconds", "gRPC call duration by method and status code",
                        ["rpc", "code"],
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))


EXTRACTION_STAGE = Histogram("nasname_extraction_stage_seconds", "extraction time per extractor stage",
                             ["kind", "stage"],
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))


def observe_extraction(kind: str, stage_ms: Mapping[str, float]) -> None:
    """``Engine.on_extraction`` callback: one observation per stage of one extraction."""
    for stage, ms in stage_ms.items():
        EXTRACTION_STAGE.labels(kind, stage).observe(float(ms) / 1000.0)


def observe_rpc(rpc: str, code: str, seconds: float) -> None:
    RPC_REQUESTS.labels(rpc, code).inc()
    RPC_LATENCY.labels(rpc, code).observe(seconds)


class EngineCollector(Collector):
    """Gauges read at scrape time. ``stats`` returns ``Engine.stats()``; ``jobs`` the dedup jobs'
    ``Progress`` objects (empty when dedup never ran); ``transfers`` the peers of
    ``engine.transfer.status.transfer_status`` (None: no transfer gauges)."""

    def __init__(self, stats: Callable[[], Any], jobs: Callable[[], list[Any]], started: float,
                 transfers: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self._stats = stats
        self._jobs = jobs
        self._started = started
        self._transfers = transfers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self._stats()
        templates = GaugeMetricFamily("nasname_gallery_templates",
                                      "templates of active records by modality", labels=["modality"])
        for modality, n in sorted(s.by_modality.items()):
            templates.add_metric([modality], n)
        yield templates
        records = GaugeMetricFamily("nasname_gallery_records", "records by status", labels=["status"])
        for status, n in sorted(s.by_status.items()):
            records.add_metric([status], n)
        yield records
        yield GaugeMetricFamily("nasname_adjudication_pending", "open adjudication cases",
                                value=s.pending_cases)
        progress = GaugeMetricFamily("nasname_dedup_job_progress_ratio",
                                     "completed fraction of each dedup job", labels=["job_id", "state"])
        for p in self._jobs():
            progress.add_metric([p.job_id, p.state], p.done / p.total if p.total else 0.0)
        yield progress
        yield GaugeMetricFamily("nasname_uptime_seconds", "seconds since the service started",
                                value=time.time() - self._started)
        age = s.last_backup_age_s
        yield GaugeMetricFamily("nasname_backup_age_seconds",
                                "seconds since the last good backup (+Inf: never backed up)",
                                value=math.inf if age is None else age)
        yield GaugeMetricFamily("nasname_backup_last_success_timestamp_seconds",
                                "Unix time of the last good backup (0: never)",
                                value=s.last_backup_time or 0.0)
        if self._transfers is not None:
            yield from _transfer_gauges(self._transfers())


def _transfer_gauges(peers: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    """Per peer site: the backlog (records changed since the last packet sent) and the last packet
    each way (change seq and time; time 0 when never)."""
    backlog = GaugeMetricFamily("nasname_transfer_backlog_records",
                                "records changed here since the last packet sent to the peer",
                                labels=["peer"])
    seqs = GaugeMetricFamily("nasname_transfer_seq", "change seq of the last packet, by direction",
                             labels=["peer", "direction"])
    times = GaugeMetricFamily("nasname_transfer_last_timestamp_seconds",
                              "Unix time of the last packet, by direction (0: never)",
                              labels=["peer", "direction"])
    for p in peers:
        peer = str(p["site_id"])
        backlog.add_metric([peer], float(p["backlog"]))
        for direction in ("sent", "received"):
            seqs.add_metric([peer, direction], float(p[f"last_{direction}_seq"]))
            when = p[f"last_{direction}"]
            stamp = dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp() if when else 0.0
            times.add_metric([peer, direction], stamp)
    yield from (backlog, seqs, times)


def exposition(own: CollectorRegistry) -> bytes:
    """The process-wide metrics (RPCs) followed by one console's ``own`` registry."""
    return generate_latest(REGISTRY) + generate_latest(own)
