"""Transfer between sites: round trips between two and three real galleries, de-duplication on import,
erasure propagation, and every refusal (tampered, replayed, out of order, foreign, cut off, untrusted,
revoked, other model) leaving the receiving gallery untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.errors import Conflict, IntegrityError, InvalidInput, ModelMismatch, PermissionDenied
from engine.fusion import Fusion
from engine.records import AdjudicationDecision, RecordStatus
from engine.transfer.export import export_to_file
from engine.transfer.importer import KIND, import_packet
from engine.transfer.site import PublicSite, load_site, peer, revoke, trust
from engine.transfer.status import transfer_status
from engine.types import FaceTemplate, Modality, ModelRef
from tests.unit.transfer.conftest import MODEL, Sites, face, mate, unit


def enroll_people(sites: Sites, name: str, vectors: dict[str, np.ndarray]) -> None:
    engine = sites[name]
    for ref, v in vectors.items():
        engine.insert(ref, face(v), partition=name, attributes={"household": f"HH-{ref}-secret"})


def state(sites: Sites, name: str) -> dict[str, str]:
    store = sites[name].datadir.store
    with store.db.read() as conn:
        return {str(r): str(s) for r, s in conn.execute("SELECT ref_id, status FROM records")}


def same_candidates(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """Equal candidate lists, fused scores and LLRs to 1e-3: blocks of other sizes search through other
    float32 kernels (FAISS switches to BLAS at 20 probes), and a face LLR near a match is steep enough
    that the last bit of a similarity moves its fourth decimal."""

    def numbers(c: dict[str, Any]) -> list[float]:
        return [float(c.get("fused", 0)), *(float(v) for _, v in sorted(c.get("llrs", {}).items()))]

    def rest(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in ("fused", "llrs")} | {
            "llrs": sorted(c.get("llrs", {}))
        }

    return [rest(c) for c in got] == [rest(c) for c in want] and all(
        np.allclose(numbers(a), numbers(b), rtol=0, atol=1e-3) for a, b in zip(got, want, strict=True)
    )


def pending_refs(sites: Sites, name: str) -> set[str]:
    return {r for r, s in state(sites, name).items() if s == "pending"}


@pytest.fixture()
def people() -> dict[str, dict[str, np.ndarray]]:
    """camp-a's 40 people, camp-b's 30 of whom 4 are camp-a people enrolled again (planted mates),
    camp-c's 20 of whom 3 are camp-a people."""
    rng = np.random.default_rng(7)
    a = {f"A{i:03d}": unit(rng) for i in range(40)}
    b = {f"B{i:03d}": unit(rng) for i in range(26)}
    b.update({f"B-dup-A{i:03d}": mate(a[f"A{i:03d}"], rng) for i in (3, 11, 17, 29)})
    c = {f"C{i:03d}": unit(rng) for i in range(17)}
    c.update({f"C-dup-A{i:03d}": mate(a[f"A{i:03d}"], rng) for i in (5, 11, 33)})
    return {"camp-a": a, "camp-b": b, "camp-c": c}


def test_two_sites_round_trip_dedup_and_erasure(
    sites: Sites, people: dict[str, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    for name in ("camp-a", "camp-b"):
        enroll_people(sites, name, people[name])
    sites.pair("camp-a", "camp-b")
    a, b = sites["camp-a"], sites["camp-b"]

    out = export_to_file(a.datadir, "camp-b", tmp_path / "p1.nastx")
    assert (out.packet, out.counts) == (1, {"record": 40})
    summary = import_packet(b, tmp_path / "p1.nastx")
    assert summary.text() == "packet 1 from camp-a: 36 new, 4 sent to adjudication, 0 erasures applied"
    # exactly the camp-a people that camp-b had enrolled again are in adjudication, nobody else
    assert pending_refs(sites, "camp-b") == {"A003", "A011", "A017", "A029"}
    case = b.datadir.store.case("A011")
    assert case is not None
    [cand] = case.candidates
    assert cand["ref_id"] == "B-dup-A011" and cand["site"] == "camp-b"
    assert cand["incoming"]["origin_site"] == "camp-a" and cand["incoming"]["origin_ref"] == "A011"
    assert b.get("A000").attributes == {"household": "HH-A000-secret"}

    # the other way: camp-b's records reach camp-a; camp-a's own records are not sent back
    back = export_to_file(b.datadir, "camp-a", tmp_path / "b1.nastx")
    assert back.counts == {"record": 30}
    s = import_packet(a, tmp_path / "b1.nastx")
    assert s.text() == "packet 1 from camp-b: 26 new, 4 sent to adjudication, 0 erasures applied"
    assert pending_refs(sites, "camp-a") == {f"B-dup-A{i:03d}" for i in (3, 11, 17, 29)}

    # erasure at camp-a propagates; an adjudicated duplicate is a decision, not an erasure
    for ref in ("A000", "A001", "A002"):
        a.delete(ref)
    a.adjudicate("B-dup-A003", AdjudicationDecision.SAME, actor="officer", mate_reference_id="A003")
    p2 = export_to_file(a.datadir, "camp-b", tmp_path / "p2.nastx")
    assert p2.packet == 2 and p2.counts == {"tombstone": 3, "decision": 1}
    s2 = import_packet(b, tmp_path / "p2.nastx")
    assert s2.text() == "packet 2 from camp-a: 0 new, 0 sent to adjudication, 3 erasures applied"
    after = state(sites, "camp-b")
    assert [after[r] for r in ("A000", "A001", "A002")] == ["deleted"] * 3
    assert after["B-dup-A003"] == "active"  # camp-b's own record is never erased by a peer

    status = {p["site_id"]: p for p in transfer_status(b.datadir)["peers"]}
    assert status["camp-a"]["last_received_packet"] == 2
    assert status["camp-a"]["last_sent_packet"] == 1


def test_three_sites_provenance_and_no_double_import(
    sites: Sites, people: dict[str, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    for name in ("camp-a", "camp-b", "camp-c"):
        enroll_people(sites, name, people[name])
    sites.pair("camp-a", "camp-b")
    sites.pair("camp-b", "camp-c")
    sites.pair("camp-a", "camp-c")
    export_to_file(sites["camp-a"].datadir, "camp-b", tmp_path / "ab.nastx")
    import_packet(sites["camp-b"], tmp_path / "ab.nastx")
    # camp-b forwards camp-a's records (with camp-a as their origin) and its own to camp-c
    export_to_file(sites["camp-b"].datadir, "camp-c", tmp_path / "bc.nastx")
    s = import_packet(sites["camp-c"], tmp_path / "bc.nastx")
    # camp-b sends its 30 and camp-a's 36 active records (the 4 it holds for adjudication wait);
    # camp-c holds mates of A005, A011 and A033: A005 and A033 match, and so does camp-b's own
    # re-enrolment of A011 (A011 itself is still pending at camp-b); nothing else does
    assert s.counts == {"new": 63, "adjudication": 3}
    assert pending_refs(sites, "camp-c") == {"A005", "A033", "B-dup-A011"}
    case = sites["camp-c"].datadir.store.case("A005")
    assert case is not None and case.candidates[0]["incoming"]["origin_site"] == "camp-a"
    assert case.candidates[0]["incoming"]["via"] == "camp-b"
    # straight from camp-a: the 36 that came through camp-b are not doubled; the 4 new ones are each
    # a camp-a person camp-b or camp-c enrolled again, so all 4 go to adjudication
    export_to_file(sites["camp-a"].datadir, "camp-c", tmp_path / "ac.nastx")
    again = import_packet(sites["camp-c"], tmp_path / "ac.nastx")
    assert again.counts == {"unchanged": 36, "adjudication": 4}
    assert pending_refs(sites, "camp-c") == {"A005", "A033", "B-dup-A011", "A003", "A011", "A017", "A029"}


def test_same_reference_id_other_content_is_a_conflict_case(sites: Sites, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sites["camp-a"].insert("R-1", face(unit(rng)))
    sites["camp-b"].insert("R-1", face(unit(rng)))
    sites.pair("camp-a", "camp-b")
    export_to_file(sites["camp-a"].datadir, "camp-b", tmp_path / "p.nastx")
    s = import_packet(sites["camp-b"], tmp_path / "p.nastx")
    assert s.counts == {"conflict": 1}
    case = sites["camp-b"].datadir.store.case("R-1@camp-a")
    assert case is not None and case.candidates[0]["ref_id"] == "R-1"
    assert case.candidates[0]["conflict"] == "same reference id, different content"
    assert state(sites, "camp-b") == {"R-1": "active", "R-1@camp-a": "pending"}


def _refused(sites: Sites, name: str, path: Path, exc: type[Exception], reason: str) -> None:
    engine = sites[name]

    def snapshot() -> tuple[object, ...]:
        d = engine.datadir
        return (
            state(sites, name),
            d.store.last_seq(),
            transfer_status(d),
            sorted(d.jobs_dir(KIND).iterdir()),
        )

    before = snapshot()
    with pytest.raises(exc) as info:
        import_packet(engine, path)
    assert getattr(info.value, "reason", None) == reason
    assert snapshot() == before


def test_bad_packets_are_refused_and_nothing_is_written(
    sites: Sites, people: dict[str, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    enroll_people(sites, "camp-a", people["camp-a"])
    sites["camp-b"], sites["camp-c"]
    sites.pair("camp-a", "camp-b")
    good = tmp_path / "p1.nastx"
    export_to_file(sites["camp-a"].datadir, "camp-b", good)
    raw = good.read_bytes()

    tampered = tmp_path / "tampered.nastx"
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    tampered.write_bytes(bytes(flipped))
    _refused(sites, "camp-b", tampered, IntegrityError, "PACKET_SIGNATURE")

    header_changed = tmp_path / "header.nastx"
    header_changed.write_bytes(raw.replace(b'"since_seq": 0', b'"since_seq": 1', 1))
    _refused(sites, "camp-b", header_changed, IntegrityError, "PACKET_SIGNATURE")

    for cut in (len(raw) - 10, len(raw) // 2, 200):
        truncated = tmp_path / f"cut{cut}.nastx"
        truncated.write_bytes(raw[:cut])
        with pytest.raises(IntegrityError):
            import_packet(sites["camp-b"], truncated)
    assert pending_refs(sites, "camp-b") == set() and state(sites, "camp-b") == {}

    _refused(sites, "camp-c", good, InvalidInput, "PACKET_FOREIGN")  # for camp-b, not camp-c

    # replay: the second import of the same packet changes nothing
    assert import_packet(sites["camp-b"], good).counts == {"new": 40}
    _refused(sites, "camp-b", good, Conflict, "PACKET_REPLAYED")

    # out of order: packet 3 before packet 2
    sites["camp-a"].delete("A000")
    export_to_file(sites["camp-a"].datadir, "camp-b", tmp_path / "p2.nastx")
    sites["camp-a"].delete("A001")
    export_to_file(sites["camp-a"].datadir, "camp-b", tmp_path / "p3.nastx")
    _refused(sites, "camp-b", tmp_path / "p3.nastx", Conflict, "PACKET_OUT_OF_ORDER")
    assert import_packet(sites["camp-b"], tmp_path / "p2.nastx").counts == {"erased": 1}

    # revoked sender; unknown sender (camp-c never trusted by camp-b)
    revoke(sites["camp-b"].datadir, "camp-a", actor="test")
    _refused(sites, "camp-b", tmp_path / "p3.nastx", PermissionDenied, "PEER_REVOKED")
    trust(sites["camp-c"].datadir, load_site(sites["camp-b"].datadir).public, actor="test")
    export_to_file(sites["camp-c"].datadir, "camp-b", tmp_path / "c.nastx")
    _refused(sites, "camp-b", tmp_path / "c.nastx", PermissionDenied, "PEER_UNKNOWN")


def test_other_face_model_is_refused_with_a_message_that_says_so(sites: Sites, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sites["camp-a"].gallery.insert(
        {Modality.FACE: FaceTemplate(unit(rng), ModelRef("other-face", "2"))}, ref_id="X1"
    )
    sites["camp-b"].insert("Y1", face(unit(rng)))
    sites.pair("camp-a", "camp-b")
    export_to_file(sites["camp-a"].datadir, "camp-b", tmp_path / "p.nastx")
    with pytest.raises(ModelMismatch, match="other-face@2, this site with synthetic-face@1"):
        import_packet(sites["camp-b"], tmp_path / "p.nastx")
    assert state(sites, "camp-b") == {"Y1": "active"}


def test_packet_bytes_hold_no_template_and_no_attribute(
    sites: Sites, people: dict[str, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    enroll_people(sites, "camp-a", people["camp-a"])
    sites.pair("camp-a", "camp-b")
    export_to_file(sites["camp-a"].datadir, "camp-b", tmp_path / "p.nastx")
    raw = (tmp_path / "p.nastx").read_bytes()
    for ref, v in list(people["camp-a"].items())[:10]:
        assert v.tobytes()[:16] not in raw
        assert FaceTemplate(v, ModelRef("synthetic-face", "1")).to_bytes()[-32:] not in raw
        assert f"HH-{ref}-secret".encode() not in raw
        assert ref.encode() not in raw
    assert b"household" not in raw


def test_site_identity_trust_rules(sites: Sites) -> None:
    a = load_site(sites["camp-a"].datadir)
    assert a.site_id == "camp-a"
    doc = json.loads((sites["camp-a"].datadir.site_path).read_text())
    assert "sign_private" in doc and a.sign_key.private_bytes_raw().hex() not in json.dumps(doc)
    with pytest.raises(InvalidInput):
        trust(sites["camp-a"].datadir, a.public, actor="t")  # not itself
    sites.pair("camp-a", "camp-b")
    other = PublicSite("camp-b", load_site(sites["camp-c"].datadir).public.sign_public, a.public.agree_public)
    with pytest.raises(Conflict):
        trust(sites["camp-a"].datadir, other, actor="t")
    assert peer(sites["camp-a"].datadir, "camp-b").revoked is None
    with pytest.raises(PermissionDenied):
        peer(sites["camp-a"].datadir, "camp-x")
    assert RecordStatus.ACTIVE.value == "active"


_KILLED_IMPORT = """
import os, signal, sys
from pathlib import Path
from engine.engine import Engine
from engine.fusion import Fusion
from engine.transfer.importer import import_packet
from engine.types import Modality
from tests.unit.transfer.conftest import MODEL, site_config

root, cal, packet, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
engine = Engine.open(site_config(root, "camp-b"), fusion=Fusion.for_models({Modality.FACE: MODEL}, cal))

def on_item(n: int) -> None:  # called after each commit: blocks of 8 records, or a single other item
    if n >= kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

import_packet(engine, packet, on_item=on_item, block=8)
"""


# mid-packet (after the third block of 8); after the last item, before the ledger moves
@pytest.mark.parametrize("kill_at", [23, 41])
def test_sigkill_during_import_then_resume_gives_the_uninterrupted_result(
    sites: Sites,
    people: dict[str, dict[str, np.ndarray]],
    tmp_path: Path,
    calibration_dir: Path,
    kill_at: int,
) -> None:
    import shutil
    import signal
    import subprocess
    import sys

    enroll_people(sites, "camp-a", people["camp-a"])
    enroll_people(sites, "camp-b", people["camp-b"])
    sites.pair("camp-a", "camp-b")
    sites["camp-a"].delete("A039")
    sites["camp-a"].insert("A039b", face(people["camp-a"]["A039"]))
    export_to_file(sites["camp-a"].datadir, "camp-b", tmp_path / "p1.nastx")
    sites.close("camp-b")
    twin = tmp_path / "twin"
    shutil.copytree(tmp_path / "camp-b", twin / "camp-b")

    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_IMPORT,
            str(tmp_path),
            str(calibration_dir),
            str(tmp_path / "p1.nastx"),
            str(kill_at),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(state(sites, "camp-b")) > 30  # some items were applied ...
    assert transfer_status(sites["camp-b"].datadir)["peers"][0]["last_received_packet"] == 0  # ... not all
    sites.close("camp-b")

    resumed = import_packet(sites["camp-b"], tmp_path / "p1.nastx")
    whole_sites = Sites(twin, sites.fusion)
    try:
        whole = import_packet(whole_sites["camp-b"], tmp_path / "p1.nastx")
        assert whole.counts == {"new": 36, "adjudication": 4, "unchanged": 1}  # the tombstone: never sent
        assert resumed.counts == whole.counts
        assert state(sites, "camp-b") == state(whole_sites, "camp-b")
        for ref in pending_refs(sites, "camp-b"):
            got, want = sites["camp-b"].datadir.store.case(ref), whole_sites["camp-b"].datadir.store.case(ref)
            assert got is not None and want is not None
            assert same_candidates(got.candidates, want.candidates)
    finally:
        for engine in whole_sites.open.values():
            engine.close()


def test_backup_and_restore_keep_the_site_identity_and_its_peers(sites: Sites, tmp_path: Path) -> None:
    from engine.crypto import KeyRing
    from engine.datadir import DataDir
    from engine.ops.backup import create_backup
    from engine.ops.check import run_check
    from engine.ops.restore import key_source, restore_backup

    sites.pair("camp-a", "camp-b")
    a = sites["camp-a"]
    assert run_check(a.gallery)["ok"]  # site.json is not an orphan file
    result = create_backup(a.gallery, tmp_path / "backups", config=a.config)
    assert "site.json" in result.manifest["members"]
    key = a.datadir.root / "nasname.key"
    restore_backup(result.path, tmp_path / "restored", key_source(key, None), check=run_check)
    with DataDir.open(tmp_path / "restored", keyring=KeyRing.from_file(key)) as restored:
        site = load_site(restored)
        assert site.public == load_site(a.datadir).public
        assert peer(restored, "camp-b").sign_public == load_site(sites["camp-b"].datadir).public.sign_public


def test_kept_images_travel_only_when_asked(tmp_path: Path, fusion: Fusion) -> None:
    from dataclasses import replace

    from engine.engine import Engine
    from tests.unit.transfer.conftest import site_config

    engines = {
        n: Engine.open(replace(site_config(tmp_path, n), keep_images=True), fusion=fusion)
        for n in ("camp-a", "camp-b")
    }
    try:
        a, b = engines["camp-a"], engines["camp-b"]
        for x, y in ((a, b), (b, a)):
            trust(x.datadir, load_site(y.datadir).public, actor="test")
        rng = np.random.default_rng(2)
        a.gallery.insert(
            {Modality.FACE: FaceTemplate(unit(rng), MODEL)},
            ref_id="P1",
            images={Modality.FACE: b"\xff\xd8 a photo"},
        )
        export_to_file(a.datadir, "camp-b", tmp_path / "p1.nastx")  # without images
        a.gallery.insert(
            {Modality.FACE: FaceTemplate(unit(rng), MODEL)},
            ref_id="P2",
            images={Modality.FACE: b"\xff\xd8 another photo"},
        )
        export_to_file(a.datadir, "camp-b", tmp_path / "p2.nastx", with_images=True)
        assert b"another photo" not in (tmp_path / "p2.nastx").read_bytes()
        import_packet(b, tmp_path / "p1.nastx")
        import_packet(b, tmp_path / "p2.nastx")
        assert b.datadir.store.get_image("P1", Modality.FACE) is None
        assert b.datadir.store.get_image("P2", Modality.FACE) == b"\xff\xd8 another photo"
    finally:
        for e in engines.values():
            e.close()
