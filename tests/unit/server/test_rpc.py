"""Every RPC through a real server and real stubs, around a fake engine: translation both ways, request
ids, the auth matrix, failures with their status and reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engine import errors as e
from engine.records import AdjudicationDecision
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.auth import RPC_ROLES, Role
from server.client import Client, error_info, error_reason, image_sample, template_sample
from tests.unit.server.conftest import Running

SC = grpc.StatusCode
FACE = image_sample("face", b"\xff\xd8 not really a jpeg")
FACE_T = FaceTemplate(np.arange(1, 9, dtype=np.float32), ModelRef("m", "1"))
IRIS_T = IrisTemplate(np.arange(16, dtype=np.uint8), np.full(16, 255, np.uint8), 4, ModelRef("i", "2"))


def fails(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value


def test_enroll_translates_both_ways(fresh: Running) -> None:
    c = fresh.client(Role.STATION)
    r = c.enroll([FACE, template_sample("iris_left", IRIS_T)], reference_id="R-1", partition="camp-a",
                 attributes={"site": "7"}, target_fpir=0.001, search_partition="camp-a", request_id="rq-1")
    name, (ref, samples, kw) = fresh.engine.calls[-1]
    assert (name, ref) == ("enroll", "R-1")
    assert [s.modality for s in samples] == [Modality.FACE, Modality.IRIS_LEFT]
    assert samples[0].image == FACE.image
    assert np.array_equal(samples[1].template.code, IRIS_T.code) and samples[1].template.columns == 4
    assert kw == {"partition": "camp-a", "attributes": {"site": "7"}, "target_fpir": 0.001,
                  "search_partition": "camp-a", "actor": "tok_1", "request_id": "rq-1"}
    assert r.request_id == "rq-1" and r.reference_id == "R-1"
    assert r.outcome == pb.ENROLL_OUTCOME_PENDING_ADJUDICATION
    [cand] = r.candidates
    assert (cand.reference_id, cand.partition, cand.fused) == ("R-mate", "camp-a", 12.5)
    scores = [(s.modality, round(s.similarity, 2), s.llr) for s in cand.scores]
    assert scores == [(pb.MODALITY_FACE, 0.81, 12.5)]
    t = r.threshold
    assert (t.target_fpir, t.gallery_size, t.fused_threshold) == (0.003, 42, 7.5)
    assert r.samples[0].quality.reasons == ["BLURRED"] and r.samples[0].model.model_id == "fake-face"
    assert list(r.samples[0].quality.instructions) == ["hold still and focus"]  # a warning's instruction
    assert not r.samples[1].HasField("quality")  # precomputed template: no quality


def test_defaults_and_generated_request_id(fresh: Running) -> None:
    r = fresh.client(Role.STATION).enroll([FACE])
    _, (ref, _, kw) = fresh.engine.calls[-1]
    assert ref is None and kw["partition"] == "default" and kw["target_fpir"] is None
    assert kw["search_partition"] is None
    assert len(r.request_id) == 32


def test_insert(fresh: Running) -> None:
    r = fresh.client(Role.STATION).insert([template_sample("face", FACE_T)], reference_id="R-2",
                                          request_id="x")
    name, (ref, samples, kw) = fresh.engine.calls[-1]
    assert (name, ref, kw["partition"]) == ("insert", "R-2", "default")
    assert np.allclose(samples[0].template.vector, FACE_T.vector)
    assert (r.request_id, r.reference_id) == ("x", "R-2")


def test_identify_by_samples_and_by_reference(fresh: Running) -> None:
    c = fresh.client(Role.INVESTIGATOR)
    r = c.identify([FACE], max_results=3, target_fpir=0.01, partition="p", reference_ids=["a", "b"])
    _, (samples, kw) = fresh.engine.calls[-1]
    assert len(samples) == 1
    assert kw == {"reference_id": None, "max_results": 3, "target_fpir": 0.01, "partition": "p",
                  "reference_ids": ["a", "b"]}
    assert r.candidates[0].reference_id == "R-mate"
    c.identify(reference_id="R-1")
    _, (samples, kw) = fresh.engine.calls[-1]
    assert samples is None and kw["reference_id"] == "R-1" and kw["max_results"] == 10
    assert kw["reference_ids"] is None and kw["partition"] is None


def test_identify_needs_exactly_one_probe(fresh: Running) -> None:
    c = fresh.client(Role.INVESTIGATOR)
    for kwargs in ({}, {"samples": [FACE], "reference_id": "R"}):
        err = fails(lambda kw=kwargs: c.identify(**kw))
        assert err.code() == SC.INVALID_ARGUMENT and error_reason(err) == "INVALID_PROBE"
    assert not fresh.engine.calls


def test_batch_identify_streams_in_order_with_per_item_errors(fresh: Running) -> None:
    c = fresh.client(Role.INVESTIGATOR)
    reqs = [c.identify_request([FACE], request_id="a"), c.identify_request(request_id="b"),
            c.identify_request(reference_id="R-1", request_id="c")]
    out = list(c.batch_identify(reqs))
    assert [o.request_id for o in out] == ["a", "b", "c"]
    assert [o.WhichOneof("outcome") for o in out] == ["result", "error", "result"]
    assert out[0].result.candidates[0].reference_id == "R-mate"
    assert out[1].error.code == SC.INVALID_ARGUMENT.value[0]


def test_batch_identify_engine_error_is_an_item(fresh: Running) -> None:
    fresh.engine.fail = e.NotFound("no such record")
    c = fresh.client(Role.INVESTIGATOR)
    [item] = list(c.batch_identify([c.identify_request(reference_id="nope")]))
    assert item.error.code == SC.NOT_FOUND.value[0] and "no such record" in item.error.message


def test_verify(fresh: Running) -> None:
    r = fresh.client(Role.STATION).verify("R-1", [FACE], target_fmr=1e-4)
    _, (ref, _, kw) = fresh.engine.calls[-1]
    assert (ref, kw) == ("R-1", {"target_fmr": 1e-4})
    assert r.match and r.fused == 12.5 and r.scores[0].modality == pb.MODALITY_FACE
    assert r.reference_id == "R-1" and r.threshold.fused_threshold == 7.5


def test_delete_get_pending_adjudicate_stats(fresh: Running) -> None:
    admin = fresh.client(Role.ADMIN)
    assert admin.delete("R-9", request_id="d-9").reference_id == "R-9"
    assert fresh.engine.calls[-1] == ("delete", ("R-9", {"actor": "tok_4", "request_id": "d-9"}))
    rec = fresh.client(Role.INVESTIGATOR).get_record("R-3").record
    assert (rec.reference_id, rec.status) == ("R-3", pb.RECORD_STATUS_ACTIVE)
    assert dict(rec.attributes) == {"site": "x"}
    assert rec.models[0].model.model_id == "fake-face"
    [item] = fresh.client(Role.ADJUDICATOR).list_pending(limit=5, offset=2).items
    assert fresh.engine.calls[-1] == ("list_pending", {"limit": 5, "offset": 2})
    assert item.reference_id == "R-p" and item.candidates[0].reference_id == "R-mate"
    assert item.decisions[0].decision == pb.ADJUDICATION_DECISION_SAME and item.decisions[0].actor == "tok_9"
    out = fresh.client(Role.ADJUDICATOR).adjudicate("R-p", same=False, comment="twins",
                                                     mate_reference_id="R-mate", request_id="a-1")
    assert out.record.reference_id == "R-p"
    assert [h.event for h in out.history] == ["opened", "decided"]
    assert (out.history[1].mate_reference_id, out.history[1].comment) == ("R-mate", "same scar")
    assert fresh.engine.calls[-2] == ("adjudicate", ("R-p", AdjudicationDecision.DISTINCT,
                                                     {"actor": "tok_3", "comment": "twins",
                                                      "mate_reference_id": "R-mate", "request_id": "a-1"}))
    s = fresh.client(Role.INVESTIGATOR).stats()
    assert s.total == 3 and dict(s.by_status) == {"active": 2, "pending": 1}
    assert s.models["face"] == "fake-face@1"
    assert s.quarantined == 1 and "seq 4" in s.audit_problem


@pytest.mark.parametrize(("call", "reason"), [
    (lambda c: c.verify("", [FACE]), "MISSING_REFERENCE_ID"),
    (lambda c: c.delete(""), "MISSING_REFERENCE_ID"),
    (lambda c: c.get_record(""), "MISSING_REFERENCE_ID"),
    (lambda c: c.enroll([pb.Sample(image=b"x")]), "MISSING_MODALITY"),
    (lambda c: c.enroll([pb.Sample(modality=pb.MODALITY_FACE)]), "MISSING_SAMPLE_DATA"),
    (lambda c: c.enroll([pb.Sample(modality=pb.MODALITY_IRIS_LEFT,
                                   template=template_sample("face", FACE_T).template)]), "WRONG_MODALITY"),
    (lambda c: c.insert([pb.Sample(modality=pb.MODALITY_FACE, template=pb.Template(
        face=pb.FaceTemplate(vector=[1.0])))]), "MISSING_MODEL"),
    (lambda c: c.insert([pb.Sample(modality=pb.MODALITY_FACE, template=pb.Template(
        model=pb.ModelRef(model_id="m", version="1"), face=pb.FaceTemplate(vector=[0.0, 0.0])))]),
     "INVALID_TEMPLATE"),
    (lambda c: c.stub.Adjudicate(pb.AdjudicateRequest(reference_id="R"), metadata=c.metadata),
     "MISSING_DECISION"),
    (lambda c: c.enroll([FACE], request_id="bad id with spaces"), "INVALID_REQUEST_ID"),
])
def test_missing_or_malformed_fields(fresh: Running, call: Callable[[Client], Any], reason: str) -> None:
    err = fails(lambda: call(fresh.client(Role.ADMIN)))
    assert err.code() == SC.INVALID_ARGUMENT
    assert error_reason(err) == reason
    assert not fresh.engine.calls


@pytest.mark.parametrize(("exc", "code", "reason"), [
    (e.InvalidImage("not an image"), SC.INVALID_ARGUMENT, "INVALID_IMAGE"),
    (e.ImageTooLarge("too big"), SC.INVALID_ARGUMENT, "IMAGE_TOO_LARGE"),
    (e.AcquisitionFailed("no face", reasons=["NO_FACE"]), SC.INVALID_ARGUMENT, "NO_BIOMETRIC_FOUND"),
    (e.QualityRejected("poor", reasons=["BLURRED", "TOO_DARK"]), SC.INVALID_ARGUMENT, "QUALITY_CHECK_FAILED"),
    (e.AlreadyExists("exists"), SC.ALREADY_EXISTS, "REFERENCE_ID_EXISTS"),
    (e.NotFound("unknown"), SC.NOT_FOUND, "REFERENCE_ID_NOT_FOUND"),
    (e.ModelMismatch("other model"), SC.FAILED_PRECONDITION, "MODEL_MISMATCH"),
    (e.Conflict("not pending"), SC.FAILED_PRECONDITION, "INVALID_STATE"),
    (e.ResourceExhausted("queue full"), SC.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"),
    (e.Unavailable("closing", reason="SHUTTING_DOWN"), SC.UNAVAILABLE, "SHUTTING_DOWN"),
    (e.IntegrityError("tampered"), SC.DATA_LOSS, "DATA_INTEGRITY"),
])
def test_engine_errors_reach_the_client(fresh: Running, exc: e.NasnameError, code: grpc.StatusCode,
                                        reason: str) -> None:
    fresh.engine.fail = exc
    err = fails(lambda: fresh.client(Role.STATION, retries=0).enroll([FACE], request_id="r-7"))
    assert err.code() == code and err.details() == exc.message
    info = error_info(err)
    assert info is not None and info.reason == reason and info.domain == "nasname"
    assert info.metadata["request_id"] == "r-7"
    if isinstance(exc, e.SampleRejected):
        assert info.metadata["quality_reasons"] == ",".join(exc.reasons)


def test_unexpected_exception_is_internal_without_details(fresh: Running) -> None:
    fresh.engine.fail = KeyError("secret internals")
    err = fails(lambda: fresh.client(Role.STATION).enroll([FACE]))
    assert err.code() == SC.INTERNAL and err.details() == "internal error"
    assert "secret" not in str(error_info(err))


# -- authentication and roles ------------------------------------------------------------------------

def _valid_request(method: str) -> Any:
    name = method.rsplit("/", 1)[-1]
    return {
        "Enroll": pb.EnrollRequest(samples=[FACE]), "Insert": pb.InsertRequest(samples=[FACE]),
        "Verify": pb.VerifyRequest(reference_id="R", samples=[FACE]),
        "Identify": pb.IdentifyRequest(samples=[FACE]), "BatchIdentify": pb.IdentifyRequest(samples=[FACE]),
        "GetRecord": pb.GetRecordRequest(reference_id="R"), "Delete": pb.DeleteRequest(reference_id="R"),
        "ListPendingAdjudications": pb.ListPendingAdjudicationsRequest(),
        "Adjudicate": pb.AdjudicateRequest(reference_id="R", decision=pb.ADJUDICATION_DECISION_SAME),
        "Stats": pb.StatsRequest(), "CreateToken": pb.CreateTokenRequest(name="n", role="station"),
        "ListTokens": pb.ListTokensRequest(), "RevokeToken": pb.RevokeTokenRequest(token_id="tok_none"),
        "StartDedup": pb.StartDedupRequest(), "GetDedupResult": pb.GetDedupResultRequest(job_id="0" * 12),
        "FetchDedupReport": pb.FetchDedupReportRequest(job_id="0" * 12),
        "GetReport": pb.GetReportRequest(),
        "ListRecords": pb.ListRecordsRequest(),
        "ReopenCase": pb.ReopenCaseRequest(reference_id="R", reason="r"),
        "UpdateBiometrics": pb.UpdateBiometricsRequest(reference_id="R", sample=FACE),
        "CreateBackup": pb.CreateBackupRequest(), "CheckIntegrity": pb.CheckIntegrityRequest(),
        "RunMaintenance": pb.RunMaintenanceRequest(),
        "ExportTransfer": pb.ExportTransferRequest(to_site="camp-x"), "ImportTransfer": pb.TransferChunk(),
        "TransferStatus": pb.TransferStatusRequest(),
        "TrustPeer": pb.TrustPeerRequest(public_json="{}"), "RevokePeer": pb.RevokePeerRequest(site_id="x"),
        "ListPeers": pb.ListPeersRequest(),
        **{m: pb.DedupJobRequest(job_id="0" * 12)
           for m in ("WatchDedup", "GetDedup", "CancelDedup", "ResumeDedup")},
    }[name]


def _invoke(c: Client, method: str, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    name = method.rsplit("/", 1)[-1]
    stub = c.admin if "/nasname.v1.Admin/" in method else c.stub
    try:
        if name in ("BatchIdentify", "ImportTransfer"):  # client streams
            result = getattr(stub, name)(iter([_valid_request(method)]), metadata=metadata, timeout=10)
            if name == "BatchIdentify":
                list(result)
        elif name in ("WatchDedup", "FetchDedupReport", "ExportTransfer"):
            list(getattr(stub, name)(_valid_request(method), metadata=metadata, timeout=10))
        else:
            getattr(stub, name)(_valid_request(method), metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return SC.OK


NASNAME_METHODS = sorted(m for m in RPC_ROLES if m.startswith("/nasname.v1."))


@pytest.mark.parametrize("method", NASNAME_METHODS)
def test_auth_matrix(fresh: Running, method: str) -> None:
    c = fresh.client(None)
    assert _invoke(c, method, ()) == SC.UNAUTHENTICATED
    assert _invoke(c, method, (("authorization", "Bearer nsk_forged"),)) == SC.UNAUTHENTICATED
    assert _invoke(c, method, (("authorization", "nsk_no_scheme"),)) == SC.UNAUTHENTICATED
    assert not fresh.engine.calls
    for role in Role:
        code = _invoke(c, method, (("authorization", f"Bearer {fresh.secrets[role]}"),))
        if role in RPC_ROLES[method]:
            # RevokeToken of an unknown id is NOT_FOUND after passing auth; the fake engine has no
            # data directory, so dedup and operations RPCs answer UNAVAILABLE after passing auth
            ops = "Dedup" in method or "Transfer" in method or method.endswith(
                ("Backup", "Integrity", "Maintenance", "Peer", "Peers"))
            allowed = (SC.OK, SC.NOT_FOUND, SC.UNAVAILABLE) if ops else (SC.OK, SC.NOT_FOUND)
            assert code in allowed, (role, code)
        else:
            assert code == SC.PERMISSION_DENIED, (role, code)


def test_token_administration(fresh: Running) -> None:
    admin = fresh.client(Role.ADMIN)
    made = admin.create_token("station 12", "station")
    assert made.secret.startswith("nsk_") and made.token.role == "station"
    assert made.token.token_id in {t.token_id for t in admin.list_tokens().tokens}
    new = Client(fresh.address, token=made.secret, plaintext=True)
    assert new.verify("R", [FACE]).match
    admin.revoke_token(made.token.token_id)
    assert fails(lambda: new.verify("R", [FACE])).code() == SC.UNAUTHENTICATED
    err = fails(lambda: admin.create_token("x", "superuser"))
    assert err.code() == SC.INVALID_ARGUMENT and error_reason(err) == "INVALID_ROLE"
    assert fails(lambda: admin.revoke_token("tok_unknown")).code() == SC.NOT_FOUND


# -- health and reflection -----------------------------------------------------------------------

def test_health_needs_no_token(running: Running) -> None:
    c = running.client(None)
    assert c.health() == "SERVING"
    assert c.health("nasname.v1.Nasname") == "SERVING"


def _list_services(c: Client, metadata: tuple[tuple[str, str], ...], version: str = "v1alpha") -> list[str]:
    call = c.channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    [reply] = list(call(iter([req]), metadata=metadata, timeout=10))
    return [s.name for s in reply.list_services_response.service]


def test_reflection_answers_authenticated_callers_only(running: Running) -> None:
    c = running.client(Role.STATION)
    names = _list_services(c, c.metadata)
    assert {"nasname.v1.Nasname", "nasname.v1.Admin", "grpc.health.v1.Health"} <= set(names)
    assert fails(lambda: _list_services(c, ())).code() == SC.UNAUTHENTICATED
    # grpcurl and other generic clients ask for v1 first (same messages on the wire)
    assert set(_list_services(c, c.metadata, "v1")) == set(names)
    assert fails(lambda: _list_services(c, (), "v1")).code() == SC.UNAUTHENTICATED


def test_reflection_serves_the_contract_and_its_dependencies(running: Running) -> None:
    from google.protobuf import descriptor_pb2

    c = running.client(Role.STATION)
    stub = reflection_pb2_grpc.ServerReflectionStub(c.channel)
    reqs = [reflection_pb2.ServerReflectionRequest(file_containing_symbol="nasname.v1.Nasname"),
            reflection_pb2.ServerReflectionRequest(file_by_filename="google/rpc/status.proto")]
    replies = list(stub.ServerReflectionInfo(iter(reqs), metadata=c.metadata, timeout=10))
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw) for r in replies
             for raw in r.file_descriptor_response.file_descriptor_proto]
    contract = next(f for f in files if f.package == "nasname.v1")
    assert {s.name for s in contract.service} == {"Nasname", "Admin"}
    assert "google/rpc/status.proto" in contract.dependency
    assert any(f.name == "google/rpc/status.proto" for f in files)


def test_client_retries_transient_failures_reusing_the_request_id(fresh: Running) -> None:
    c = fresh.client(Role.STATION, retries=2)
    fresh.engine.fail, fresh.engine.fail_times = e.Unavailable("busy", reason="STORE_UNAVAILABLE"), 1
    assert c.identify([FACE]).candidates[0].reference_id == "R-mate"
    assert [name for name, _ in fresh.engine.calls] == ["identify", "identify"]
    fresh.engine.calls.clear()
    # A write is retried too, with the same request id: the server makes the repeat idempotent.
    fresh.engine.fail, fresh.engine.fail_times = e.Unavailable("busy", reason="STORE_UNAVAILABLE"), 1
    r = c.enroll([FACE])
    assert [name for name, _ in fresh.engine.calls] == ["enroll", "enroll"]
    ids = [args[2]["request_id"] for _, args in fresh.engine.calls]
    assert ids[0] and ids == [r.request_id, r.request_id]
    fresh.engine.calls.clear()
    # ... but a call the caller chose no id for gets none from the server: not idempotent there.
    r = fresh.client(Role.STATION, retries=0).enroll([FACE], request_id="mine")
    assert fresh.engine.calls[0][1][2]["request_id"] == "mine"
    fresh.engine.calls.clear()
    fresh.engine.fail, fresh.engine.fail_times = e.Unavailable("down"), 5
    assert fails(lambda: c.identify([FACE])).code() == SC.UNAVAILABLE
    assert len(fresh.engine.calls) == 3  # first try + 2 retries
