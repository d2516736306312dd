"""Data-quality checks (``nasname check --data-quality`` and the report's summary of them).

Each check gives a count; the list behind it (reference ids, stations) only with ``details`` for
authorised roles. The checks:
- records missing an expected modality (the server's configured modalities);
- templates whose recorded quality score is under the floor for its modality;
- identical templates under different reference ids (a data-entry error: the same capture filed twice);
- pending adjudication cases older than ``stale_days``;
- partitions and stations whose FTE over the period is more than twice the site median.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.events import EventRow
from engine.reports.build import ReportPeriod, fte_by, load_events
from engine.store import reporting

if TYPE_CHECKING:
    from engine.engine import Engine

__all__ = ["DEFAULT_QUALITY_FLOOR", "QualityCheck", "data_quality"]

# Quality scores are the extractors' [0, 1] scores; a template is flagged "low" under these floors.
# Not calibrated: accepted SFace captures of ordinary photos score around 0.5, so the floors sit well
# under that; a site that knows its captures should set its own (``data_quality(floors=...)``).
DEFAULT_QUALITY_FLOOR = {"face": 0.3, "iris_left": 0.3, "iris_right": 0.3}
_MIN_ATTEMPTS = 20  # a group with fewer enroll attempts has no meaningful FTE to compare


@dataclass
class QualityCheck:
    name: str
    title: str
    count: int
    items: list[dict[str, Any]] = field(default_factory=list)  # detail (restricted)

    @property
    def passed(self) -> bool:
        return self.count == 0

    def as_json(self, details: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "title": self.title, "count": self.count,
                               "passed": self.passed}
        if details:
            out["items"] = self.items
        return out


def _fte_outliers(events: list[EventRow]) -> QualityCheck:
    items = []
    for key in ("partition", "station"):
        groups = {k: v for k, v in fte_by(events, key).items() if v[0] >= _MIN_ATTEMPTS}
        rates = {k: r / n for k, (n, r) in groups.items()}
        if len(rates) < 2:
            continue
        median = statistics.median(rates.values())
        for k, value in sorted(rates.items()):
            if value > 2 * median and value > 0:
                items.append({"kind": key, "name": k, "fte_percent": round(100 * value, 2),
                              "site_median_percent": round(100 * median, 2),
                              "enroll_attempts": groups[k][0]})
    return QualityCheck("fte_outliers", "Partitions or stations with FTE above twice the site median "
                        f"(groups with at least {_MIN_ATTEMPTS} enroll attempts)", len(items), items)


def data_quality(engine: Engine, period: ReportPeriod, *, floors: dict[str, float] | None = None,
                 events: list[EventRow] | None = None) -> list[QualityCheck]:
    """Run every check over the open engine's store and the period's events (read here unless
    ``events`` already holds them)."""
    store = engine.gallery.store
    floors = floors or DEFAULT_QUALITY_FLOOR
    now = time.time()
    with store.db.read() as conn:
        missing = reporting.missing_modalities(conn, engine.config.modalities, period.partition)
        low = reporting.templates_below(conn, floors, period.partition)
        cases = reporting.adjudication_cases(conn, period.partition)
    checks = []
    items = [{"reference_id": r, "missing": m} for m, refs in missing.items() for r in refs]
    checks.append(QualityCheck("missing_modality", "Active records missing an expected modality",
                               len(items), items))
    checks.append(QualityCheck("low_quality", "Active templates under the quality floor "
                               + ", ".join(f"{m} {v:g}" for m, v in sorted(floors.items())), len(low),
                               [{"reference_id": r, "modality": m, "quality": round(q, 3)}
                                for r, m, q in low]))
    groups = reporting.identical_templates(store.pages(5000), store.ref_ids_of)
    checks.append(QualityCheck("identical_templates",
                               "Identical templates under different reference ids (same capture filed twice; "
                               "all partitions)",
                               len(groups), [{"reference_ids": g} for g in groups]))
    stale = [c for c in cases if c["outcome"] is None and now - c["created"] > period.stale_days * 86_400]
    checks.append(QualityCheck("stale_cases", f"Pending cases older than {period.stale_days:g} days",
                               len(stale), [{"reference_id": c["ref_id"], "partition": c["partition"],
                                             "age_days": round((now - c["created"]) / 86_400, 1)}
                                            for c in stale]))
    checks.append(_fte_outliers(load_events(engine, period) if events is None else events))
    return checks
