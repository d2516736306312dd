"""Transfer over gRPC against a real server on 127.0.0.1:0: a packet streamed in (ImportTransfer) and out
(ExportTransfer), a replay refused with its reason, the status RPC, admin-only access, the CLI's
--remote forms."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.transfer.export import export_to_file
from engine.transfer.importer import import_packet
from engine.transfer.site import load_site, trust
from engine.types import FaceTemplate, Modality
from server.auth import Role
from server.cli import main as cli_main
from server.client import error_reason
from tests.integration.test_service_support import (
    MODEL,
    Service,
    make_fusion,
    mate,
    open_engine,
    start_service,
    unit,
)

SC = grpc.StatusCode


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Engine, Path]]:
    root = tmp_path_factory.mktemp("transfer")
    fusion = make_fusion(root / "cal")
    service = start_service(open_engine(root / "served", fusion))
    local = Engine.open(
        EngineConfig(data_dir=root / "camp-a", modalities=("face",), snapshot_every=0, site_id="camp-a"),
        fusion=fusion,
    )
    trust(local.datadir, load_site(service.engine.datadir).public, actor="test")
    trust(service.engine.datadir, load_site(local.datadir).public, actor="test")
    rng = np.random.default_rng(5)
    vectors = [unit(rng) for _ in range(10)]
    for i, v in enumerate(vectors):
        local.gallery.insert({Modality.FACE: FaceTemplate(v, MODEL)}, ref_id=f"A{i}")
    for i in (2, 7):  # the served site enrolled two camp-a people again
        service.engine.gallery.insert(
            {Modality.FACE: FaceTemplate(mate(vectors[i], rng), MODEL)}, ref_id=f"S{i}"
        )
    yield service, local, root
    local.close()
    service.stop()


def test_import_and_export_through_the_admin_rpcs(sites: tuple[Service, Engine, Path]) -> None:
    service, local, root = sites
    admin = service.client(Role.ADMIN)
    served_id = load_site(service.engine.datadir).site_id
    export_to_file(local.datadir, served_id, root / "p1.nastx")
    reply = admin.import_transfer(root / "p1.nastx")
    assert reply.summary == "packet 1 from camp-a: 8 new, 2 sent to adjudication, 0 erasures applied"
    assert json.loads(reply.counts_json) == {"new": 8, "adjudication": 2}
    with pytest.raises(grpc.RpcError) as err:
        admin.import_transfer(root / "p1.nastx")
    assert err.value.code() == SC.FAILED_PRECONDITION and error_reason(err.value) == "PACKET_REPLAYED"
    assert not any((service.engine.datadir.jobs_dir("transfer-incoming")).iterdir())  # nothing left behind

    out = io.BytesIO()
    summary = admin.export_transfer("camp-a", out)
    assert summary["packet"] == 1 and summary["counts"] == {"record": 2}  # its own two; camp-a's not echoed
    (root / "s1.nastx").write_bytes(out.getvalue())
    got = import_packet(local, root / "s1.nastx")
    assert got.counts == {"adjudication": 2}
    status = json.loads(admin.transfer_status().status_json)
    [peer] = status["peers"]
    assert (peer["site_id"], peer["last_received_packet"], peer["last_sent_packet"]) == ("camp-a", 1, 1)


def test_transfer_rpcs_are_admin_only(sites: tuple[Service, Engine, Path]) -> None:
    service, _, root = sites
    for role in (Role.STATION, Role.INVESTIGATOR, Role.ADJUDICATOR):
        c = service.client(role)
        for call in (
            c.transfer_status,
            functools.partial(c.export_transfer, "camp-a", io.BytesIO()),
            functools.partial(c.import_transfer, root / "p1.nastx"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == SC.PERMISSION_DENIED


def test_cli_remote_transfer_status(
    sites: tuple[Service, Engine, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    service, _, _ = sites
    conn = ["--remote", "--plaintext", "--address", service.address, "--token", service.secrets[Role.ADMIN]]
    assert cli_main(["transfer", "status", *conn]) == 0
    assert "camp-a" in capsys.readouterr().out


def test_peers_through_the_admin_rpcs_and_the_cli(
    sites: tuple[Service, Engine, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    service, _, root = sites
    third = Engine.open(EngineConfig(data_dir=root / "camp-c", modalities=("face",), site_id="camp-c"))
    try:
        (root / "camp-c.pub").write_text(json.dumps(load_site(third.datadir).public.to_json()))
    finally:
        third.close()
    conn = ["--remote", "--plaintext", "--address", service.address, "--token", service.secrets[Role.ADMIN]]
    assert cli_main(["site", "trust", str(root / "camp-c.pub"), *conn]) == 0
    assert capsys.readouterr().out.startswith("site camp-c is now trusted")
    assert cli_main(["site", "peers", *conn, "--json"]) == 0
    listed = {p["site_id"]: p for p in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"camp-a", "camp-c"} and listed["camp-c"]["revoked"] is None
    assert cli_main(["site", "revoke", "camp-c", *conn]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli_main(["site", "revoke", "camp-c", *conn]) == 1  # revoked already: named, not a crash
    assert "PEER_UNKNOWN" in capsys.readouterr().err
    admin = service.client(Role.ADMIN)
    [c] = [p for p in json.loads(admin.list_peers().peers_json) if p["site_id"] == "camp-c"]
    assert c["revoked"] is not None
    with pytest.raises(grpc.RpcError) as err:
        admin.trust_peer('{"kind": "something else"}')
    assert err.value.code() == SC.INVALID_ARGUMENT and error_reason(err.value) == "NOT_A_SITE_FILE"
    assert cli_main(["site", "trust", str(root / "camp-c.pub"), *conn]) == 0  # trusted again, same keys
    capsys.readouterr()
    for role in (Role.STATION, Role.INVESTIGATOR, Role.ADJUDICATOR):
        client = service.client(role)
        for call in (
            client.list_peers,
            functools.partial(client.revoke_peer, "camp-c"),
            functools.partial(client.trust_peer, (root / "camp-c.pub").read_text()),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == SC.PERMISSION_DENIED
