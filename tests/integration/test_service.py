"""The service end to end: real server on 127.0.0.1:0, real stubs, real Engine on a temporary data
directory (precomputed synthetic face templates keep it fast). The MOSIP ABIS conformance cases of
../shared/docs/DOMAIN.md are adapted to this API and marked ``MOSIP:``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine.fusion import Fusion, ModalityCalibration
from engine.types import Modality, ModelRef
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.auth import Role
from server.client import error_info, error_reason
from tests.integration.test_service_support import (
    MODEL,
    Service,
    Vec,
    face,
    make_fusion,
    mate,
    open_engine,
    start_service,
    unit,
)

SC = grpc.StatusCode
N_PEOPLE = 60


@pytest.fixture(scope="module")
def fusion(tmp_path_factory: pytest.TempPathFactory) -> Fusion:
    return make_fusion(tmp_path_factory.mktemp("cal"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, fusion: Fusion) -> Iterator[Service]:
    s = start_service(open_engine(tmp_path_factory.mktemp("svc") / "data", fusion))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def people(service: Service) -> dict[str, Vec]:
    rng = np.random.default_rng(5)
    vectors = {f"P{i:03d}": unit(rng) for i in range(N_PEOPLE)}
    station = service.client(Role.STATION)
    for ref, v in vectors.items():
        r = station.insert(face(v), reference_id=ref, partition="camp-a" if int(ref[1:]) % 2 else "camp-b",
                           request_id=f"ins-{ref}")
        assert (r.reference_id, r.request_id) == (ref, f"ins-{ref}")  # MOSIP: insert echoes the request id
    return vectors


def fails(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        call()  # type: ignore[operator]
    return exc.value


def test_mosip_ping(service: Service) -> None:
    assert service.client(Role.STATION).health() == "SERVING"


def test_mosip_insert_of_an_existing_id_fails(service: Service, people: dict[str, Vec]) -> None:
    err = fails(lambda: service.client(Role.STATION).insert(face(people["P001"]), reference_id="P000"))
    assert err.code() == SC.ALREADY_EXISTS and error_reason(err) == "REFERENCE_ID_EXISTS"


def test_mosip_unique_person_has_no_candidates(service: Service, people: dict[str, Vec]) -> None:
    r = service.client(Role.INVESTIGATOR).identify(face(unit(np.random.default_rng(77))), request_id="u-1")
    assert r.request_id == "u-1" and list(r.candidates) == []
    assert r.threshold.gallery_size >= N_PEOPLE and 0 < r.threshold.target_fpir < 1
    assert r.samples[0].model.model_id == MODEL.model_id and r.samples[0].model.version == MODEL.version


def test_mosip_duplicate_returns_exactly_its_mate(service: Service, people: dict[str, Vec]) -> None:
    rng = np.random.default_rng(8)
    r = service.client(Role.STATION).identify(face(mate(people["P007"], rng)))
    assert [c.reference_id for c in r.candidates] == ["P007"]
    [c] = r.candidates
    assert c.fused >= r.threshold.fused_threshold
    [score] = c.scores
    assert score.modality == pb.MODALITY_FACE and score.similarity > 0.6
    assert score.llr == pytest.approx(c.fused)


def test_mosip_gallery_restricted_to_one_id(service: Service, people: dict[str, Vec]) -> None:
    c = service.client(Role.INVESTIGATOR)
    probe = face(mate(people["P010"], np.random.default_rng(9)))
    assert [x.reference_id for x in c.identify(probe, reference_ids=["P010"]).candidates] == ["P010"]
    assert list(c.identify(probe, reference_ids=["P011"]).candidates) == []
    assert list(c.identify(probe, partition="camp-a").candidates) == []  # P010 lives in camp-b
    assert [x.reference_id for x in c.identify(probe, partition="camp-b").candidates] == ["P010"]


def test_mosip_max_results_one_returns_only_the_best(service: Service, people: dict[str, Vec]) -> None:
    rng = np.random.default_rng(12)
    v = unit(rng)
    station = service.client(Role.STATION)
    station.insert(face(mate(v, rng, 0.03)), reference_id="T-a")
    station.insert(face(mate(v, rng, 0.08)), reference_id="T-b")
    probe = face(v)
    both = station.identify(probe)
    assert [c.reference_id for c in both.candidates] == ["T-a", "T-b"]
    assert both.candidates[0].fused >= both.candidates[1].fused
    assert [c.reference_id for c in station.identify(probe, max_results=1).candidates] == ["T-a"]


def test_mosip_delete_then_identify_no_longer_finds(service: Service, people: dict[str, Vec]) -> None:
    rng = np.random.default_rng(13)
    v = unit(rng)
    service.client(Role.STATION).insert(face(v), reference_id="D-1")
    inv = service.client(Role.INVESTIGATOR)
    assert [c.reference_id for c in inv.identify(face(mate(v, rng))).candidates] == ["D-1"]
    assert service.client(Role.ADMIN).delete("D-1", request_id="del-1").request_id == "del-1"
    assert list(inv.identify(face(mate(v, rng))).candidates) == []
    assert inv.get_record("D-1").record.status == pb.RECORD_STATUS_DELETED


def test_mosip_delete_of_unknown_id_fails(service: Service) -> None:
    err = fails(lambda: service.client(Role.ADMIN).delete("nobody", request_id="d-x"))
    assert err.code() == SC.NOT_FOUND and error_reason(err) == "REFERENCE_ID_NOT_FOUND"
    info = error_info(err)
    assert info is not None and info.metadata["request_id"] == "d-x"


def test_identify_by_reference_id_excludes_itself(service: Service, people: dict[str, Vec]) -> None:
    rng = np.random.default_rng(14)
    station = service.client(Role.STATION)
    station.insert(face(mate(people["P020"], rng)), reference_id="P020-again")
    r = service.client(Role.INVESTIGATOR).identify(reference_id="P020")
    assert [c.reference_id for c in r.candidates] == ["P020-again"]
    err = fails(lambda: service.client(Role.INVESTIGATOR).identify(reference_id="missing"))
    assert err.code() == SC.NOT_FOUND


def test_enroll_deduplicates_and_adjudication_resolves(service: Service, people: dict[str, Vec]) -> None:
    rng = np.random.default_rng(15)
    station, adj = service.client(Role.STATION), service.client(Role.ADJUDICATOR)
    fresh = station.enroll(face(unit(rng)), reference_id="E-new", partition="camp-a")
    assert fresh.outcome == pb.ENROLL_OUTCOME_ENROLLED and list(fresh.candidates) == []
    dup = station.enroll(face(mate(people["P030"], rng)), reference_id="E-dup")
    assert dup.outcome == pb.ENROLL_OUTCOME_PENDING_ADJUDICATION
    assert [c.reference_id for c in dup.candidates] == ["P030"]
    assert dup.candidates[0].fused >= dup.threshold.fused_threshold
    pending = {i.reference_id: i for i in adj.list_pending().items}
    assert "E-dup" in pending and pending["E-dup"].candidates[0].reference_id == "P030"
    inv = service.client(Role.INVESTIGATOR)
    assert inv.get_record("E-dup").record.status == pb.RECORD_STATUS_PENDING
    out = adj.adjudicate("E-dup", same=False, comment="twins")
    assert out.record.status == pb.RECORD_STATUS_ACTIVE
    assert "E-dup" not in {i.reference_id for i in adj.list_pending().items}
    err = fails(lambda: adj.adjudicate("E-dup", same=True))  # "same" names the mate, always
    assert err.code() == SC.INVALID_ARGUMENT and error_reason(err) == "MISSING_MATE"
    err = fails(lambda: adj.adjudicate("E-dup", same=True, mate_reference_id="P030"))
    assert err.code() == SC.FAILED_PRECONDITION and error_reason(err) == "NOT_PENDING"
    history = inv.get_record("E-dup").history
    assert [(h.event, h.comment) for h in history] == [("opened", ""), ("decided", "twins")]
    assert history[1].decision == pb.ADJUDICATION_DECISION_DISTINCT and history[1].actor.startswith("tok_")


def test_verify(service: Service, people: dict[str, Vec]) -> None:
    rng = np.random.default_rng(16)
    station = service.client(Role.STATION)
    yes = station.verify("P040", face(mate(people["P040"], rng)))
    assert yes.match and yes.fused >= yes.threshold.fused_threshold and yes.threshold.gallery_size == 1
    no = station.verify("P040", face(people["P041"]))
    assert not no.match and no.scores[0].similarity < 0.5
    assert fails(lambda: station.verify("nobody", face(people["P041"]))).code() == SC.NOT_FOUND


def test_model_mismatch(service: Service, people: dict[str, Vec]) -> None:
    other = face(people["P001"], ModelRef("another-face-model", "9"))
    err = fails(lambda: service.client(Role.STATION).identify(other))
    assert err.code() == SC.FAILED_PRECONDITION and error_reason(err) == "MODEL_MISMATCH"


def test_wrong_dimension_template_is_invalid(service: Service) -> None:
    short = face(np.ones(16, dtype=np.float32) / 4.0)
    err = fails(lambda: service.client(Role.STATION).identify(short))
    assert err.code() == SC.INVALID_ARGUMENT and error_reason(err) == "INVALID_TEMPLATE"
    err = fails(lambda: service.client(Role.STATION).insert(short, reference_id="SHORT"))
    assert err.code() == SC.INVALID_ARGUMENT and error_reason(err) == "INVALID_TEMPLATE"


def test_modality_not_enabled(service: Service) -> None:
    err = fails(lambda: service.client(Role.STATION).identify([pb.Sample(modality=pb.MODALITY_IRIS_LEFT,
                                                                         image=b"\x89PNG")]))
    assert err.code() == SC.INVALID_ARGUMENT and error_reason(err)


def test_batch_identify_streams_results_in_order(service: Service, people: dict[str, Vec]) -> None:
    rng = np.random.default_rng(17)
    inv = service.client(Role.INVESTIGATOR)
    refs = [f"P{i:03d}" for i in range(0, N_PEOPLE, 6)]
    reqs = [inv.identify_request(face(mate(people[r], rng)), request_id=f"b-{r}") for r in refs]
    reqs.insert(3, inv.identify_request(reference_id="missing", request_id="b-missing"))
    out = list(inv.batch_identify(reqs))
    assert [o.request_id for o in out] == [r.request_id for r in reqs]
    for o in out:
        if o.request_id == "b-missing":
            assert o.WhichOneof("outcome") == "error" and o.error.code == SC.NOT_FOUND.value[0]
        else:
            assert [c.reference_id for c in o.result.candidates][:1] == [o.request_id[2:]]


def test_stats(service: Service, people: dict[str, Vec]) -> None:
    s = service.client(Role.INVESTIGATOR).stats()
    assert s.total >= N_PEOPLE and s.by_status["active"] >= N_PEOPLE
    assert s.by_partition["camp-a"] >= N_PEOPLE // 2 and s.models["face"] == str(MODEL)


def test_tokens_over_the_admin_service(service: Service) -> None:
    admin = service.client(Role.ADMIN)
    made = admin.create_token("station 9", "station")
    assert made.secret and made.token.role == "station"
    listed = {t.token_id: t for t in admin.list_tokens().tokens}
    assert made.token.token_id in listed and not listed[made.token.token_id].revoked
    assert all("nsk_" not in str(t) for t in listed.values())  # secrets never listed
    admin.revoke_token(made.token.token_id)
    assert admin.list_tokens().tokens and next(
        t for t in admin.list_tokens().tokens if t.token_id == made.token.token_id).revoked > 0


def test_acknowledged_writes_survive_a_restart(tmp_path: Path, fusion: Fusion) -> None:
    """Graceful shutdown while enrolls are in flight: every acknowledged enroll is there after reopening."""
    import threading

    s = start_service(open_engine(tmp_path / "data", fusion))
    acked: list[str] = []
    errors: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def station(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        c = s.client(Role.STATION, retries=0)
        for i in range(200):
            try:
                r = c.enroll(face(unit(rng)), reference_id=f"S{k}-{i}", timeout=5)
            except grpc.RpcError as exc:
                with lock:
                    errors.append(exc.code())
                return
            with lock:
                acked.append(r.reference_id)

    threads = [threading.Thread(target=station, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # let some enrolls through first
        with lock:
            if len(acked) >= 20:
                break
        time.sleep(0.01)
    s.server.stop(5.0)
    for t in threads:
        t.join(10)
    s.engine.close()
    assert set(errors) <= {SC.UNAVAILABLE, SC.CANCELLED}, errors  # refused or cut: never acknowledged
    engine = open_engine(tmp_path / "data", fusion)
    try:
        assert len(acked) <= engine.count() <= len(acked) + len(errors)
        for ref in acked:
            assert engine.get(ref).reference_id == ref
    finally:
        engine.close()


def test_face_and_iris_templates_fuse_per_modality(tmp_path: Path, fusion: Fusion) -> None:
    """A record with face + left iris; the probe's per-modality scores both come back over the wire."""
    from engine.config import EngineConfig
    from engine.engine import Engine
    from engine.types import IrisTemplate
    from server.client import template_sample

    cfg = EngineConfig(data_dir=tmp_path / "data", modalities=("face", "iris_left", "iris_right"),
                       snapshot_every=0)
    iris_model = ModelRef("synthetic-iris", "1")  # known to the engine through its calibration
    both = Fusion({Modality.FACE: fusion.calibration(Modality.FACE),
                   Modality.IRIS_LEFT: ModalityCalibration.default(iris_model, "iris")})
    s = start_service(Engine.open(cfg, fusion=both))
    try:
        rng = np.random.default_rng(30)

        def iris(code: np.ndarray) -> pb.Sample:
            return template_sample("iris_left", IrisTemplate(code, np.full(code.size, 255, np.uint8), 64,
                                                             iris_model))

        people = {f"M{i}": (unit(rng), rng.integers(0, 256, 1024, dtype=np.uint8)) for i in range(10)}
        station = s.client(Role.STATION)
        for ref, (v, code) in people.items():
            station.insert([*face(v), iris(code)], reference_id=ref)
        v, code = people["M4"]
        r = station.identify([*face(mate(v, rng)), iris(code)])
        assert [c.reference_id for c in r.candidates] == ["M4"]
        scores = {sc.modality: sc for sc in r.candidates[0].scores}
        assert set(scores) == {pb.MODALITY_FACE, pb.MODALITY_IRIS_LEFT}
        assert r.candidates[0].fused == pytest.approx(sum(sc.llr for sc in scores.values()))
        assert {x.modality for x in r.samples} == {pb.MODALITY_FACE, pb.MODALITY_IRIS_LEFT}
        assert {x.model.model_id for x in r.samples} == {MODEL.model_id, "synthetic-iris"}
        record = s.client(Role.INVESTIGATOR).get_record("M4").record
        assert {m.modality for m in record.models} == {pb.MODALITY_FACE, pb.MODALITY_IRIS_LEFT}
    finally:
        s.stop()


def test_operation_events_name_the_calling_token(service: Service, people: dict[str, Vec]) -> None:
    """Identify and verify take no actor argument: the event log attributes them to the caller's token."""
    investigator = service.client(Role.INVESTIGATOR)
    investigator.identify(face(people["P010"]))
    events = service.engine.events
    assert events is not None
    token_ids = {t.token_id for t in service.engine.tokens.list_tokens() if t.role == "investigator"}
    identifies = [e for e in events.select() if e.op == "identify"]
    assert identifies and identifies[-1].station in token_ids
    assert identifies[-1].outcome == "candidates"


def test_get_report_over_grpc_for_investigators_only(service: Service, people: dict[str, Vec]) -> None:
    files = service.client(Role.INVESTIGATOR).get_report(min_cell=5)
    assert {"report.html", "report.json", "enrollments_daily.csv", "fte_by_partition.csv"} <= set(files)
    doc = json.loads(files["report.json"])
    assert doc["small_cell_threshold"] == 5 and "stale_cases" not in doc["tables"]
    assert b"data:image/png;base64," in files["report.html"]
    err = fails(lambda: service.client(Role.STATION).get_report())
    assert err.code() == SC.PERMISSION_DENIED
    bad = fails(lambda: service.client(Role.ADMIN).get_report(from_date="2026-13-40"))
    assert bad.code() == SC.INVALID_ARGUMENT and "YYYY-MM-DD" in (bad.details() or "")
