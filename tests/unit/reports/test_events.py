"""The operations event log: one row per attempt, failures included, nothing personal in it."""

from __future__ import annotations

import time

import pytest

from engine.engine import Engine
from engine.errors import QualityRejected
from engine.events import EventFilter, EventLog, station
from engine.records import AdjudicationDecision
from engine.store.events import EventRow
from tests.unit.reports.conftest import bad, image


def test_every_attempt_is_recorded_with_outcome_and_reasons(engine: Engine) -> None:
    engine.enroll("R-1", image(1), partition="camp-a", actor="tok-station1",
                  attributes={"name": "Hawre Ahmed"})
    with pytest.raises(QualityRejected):
        engine.enroll("R-2", bad("dark"), partition="camp-a", actor="tok-station1")
    with pytest.raises(Exception, match="no face"):
        engine.enroll(None, bad("none"), partition="camp-b", actor="tok-station2")
    token = station.set("tok-investigator")
    try:
        engine.identify(image(1))
    finally:
        station.reset(token)
    engine.verify("R-1", image(999))
    engine.delete("R-1", actor="tok-admin")
    assert engine.events is not None
    rows = list(engine.events.select())
    assert [(r.op, r.outcome) for r in rows] == [
        ("enroll", "enrolled"), ("enroll", "refused_quality"), ("enroll", "failed_capture"),
        ("identify", "candidates"), ("verify", "no_match"), ("delete", "deleted")]
    assert [r.station for r in rows] == ["tok-station1", "tok-station1", "tok-station2", "tok-investigator",
                                         "local", "tok-admin"]
    assert rows[1].reasons == "face:TOO_DARK" and rows[1].error == "QUALITY_CHECK_FAILED"
    assert rows[2].reasons == "face:NO_FACE" and rows[2].partition == "camp-b"
    assert rows[0].modalities == "face" and rows[0].models == "synthetic-face@1"
    assert all(r.latency_ms >= 0 for r in rows)


def test_no_reference_id_or_attribute_reaches_the_event_table(engine: Engine) -> None:
    engine.enroll("SECRET-REF-77", image(2), partition="camp-a", attributes={"name": "Hawre Ahmed"})
    engine.enroll("SECRET-REF-78", image(2), partition="camp-a", attributes={"name": "Hawre Ahmed"})
    engine.adjudicate("SECRET-REF-78", AdjudicationDecision.DISTINCT, actor="tok-adj")
    assert engine.events is not None
    engine.events.flush()
    with engine.gallery.store.db.read() as conn:
        dump = "\n".join(str(row) for row in conn.execute("SELECT * FROM events"))
    assert "SECRET-REF" not in dump and "Hawre" not in dump
    assert "adjudicate" in dump and "distinct" in dump


def test_filter_and_retention(engine: Engine) -> None:
    assert engine.events is not None
    db = engine.gallery.store.db
    now = time.time()
    log = EventLog(db, retention_days=30, flush_interval=60)
    log.record(EventRow(now - 40 * 86_400, "enroll", "enrolled", partition="old"))
    log.record(EventRow(now - 1, "enroll", "enrolled", partition="new"))
    log.record(EventRow(now - 1, "identify", "no_candidate", partition="new"))
    log.flush()
    assert [r.op for r in log.select(EventFilter(partition="new", op="identify"))] == ["identify"]
    assert log.prune() == 1
    assert {r.partition for r in log.select()} == {"new"}
    log.close()


def test_a_full_queue_drops_and_counts_never_blocks(engine: Engine) -> None:
    log = EventLog(engine.gallery.store.db, flush_interval=60, max_queue=2)
    for _ in range(5):
        log.record(EventRow(time.time(), "identify", "no_candidate"))
    assert log.dropped == 3
    log.close()
    assert len(list(log.select())) >= 2


def test_job_events_record_ok_failed_and_cancelled(engine: Engine) -> None:
    from engine.errors import Unavailable
    from engine.events import job_event
    from engine.jobs import JobCancelled

    log = engine.events
    assert log is not None
    with job_event(log, "backup", station="tok-admin") as ev:
        ev.count = 12
    with pytest.raises(Unavailable), job_event(log, "transfer_import"):
        raise Unavailable("disk full", reason="STORE_UNAVAILABLE")
    with pytest.raises(JobCancelled), job_event(log, "dedup"):
        raise JobCancelled("cancelled")
    rows = [(r.op, r.outcome, r.count, r.station) for r in log.select()]
    assert rows == [("backup", "ok", 12, "tok-admin"), ("transfer_import", "failed", 0, "local"),
                    ("dedup", "cancelled", 0, "local")]
    assert [r.error for r in log.select()][:2] == ["", "STORE_UNAVAILABLE"]


def test_a_dropped_frame_is_no_warning_of_an_accepted_capture(engine: Engine) -> None:
    # three frames, one too dark: enrolled with the two others; the dark frame's reason was a refusal
    engine.enroll("R-3", [*image(3), *bad("dark"), *image(3, quality=0.8)], actor="tok-station1")
    assert engine.events is not None
    [row] = list(engine.events.select())
    assert (row.op, row.outcome, row.reasons) == ("enroll", "enrolled", "")
