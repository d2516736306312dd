"""The batched enroll behind a transfer import (``Engine.enroll_many``) decides exactly as
``Engine.enroll`` called on each record in order: same outcomes, same candidates, same thresholds,
whatever the block size; and two records of one packet that are the same person end with the second in
adjudication, as a one-by-one import would leave them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.config import EngineConfig
from engine.engine import BatchEntry, Engine
from engine.errors import ModelMismatch
from engine.extractor import Extraction
from engine.fusion import Fusion
from engine.records import EnrollOutcome, EnrollResult, Sample
from engine.transfer.export import export_to_file
from engine.transfer.importer import import_packet
from engine.transfer.site import load_site, trust
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Quality, QualityReason, Template
from tests.unit.transfer.conftest import MODEL, Sites, mate, unit

IRIS = ModelRef("synthetic-iris", "1")
NBYTES = 256
_MASK = np.full(NBYTES, 255, dtype=np.uint8)
IRISES = (Modality.IRIS_LEFT, Modality.IRIS_RIGHT)

Person = dict[Modality, Template]


def iris(rng: np.random.Generator) -> IrisTemplate:
    return IrisTemplate(rng.integers(0, 256, NBYTES, dtype=np.uint8), _MASK, NBYTES, IRIS)


def iris_mate(t: IrisTemplate, rng: np.random.Generator) -> IrisTemplate:
    """Another capture: 8% of the bits differ (similarity 1.0: the normalised score saturates)."""
    flips = np.packbits(rng.random(NBYTES * 8) < 0.08)
    return IrisTemplate(t.code ^ flips, _MASK, NBYTES, IRIS)


def weak(p: Person, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """A poor photo of the person: cosine 0.3 to their face."""
    v = p[Modality.FACE]
    assert isinstance(v, FaceTemplate)
    u = unit(rng)
    u = u - float(u @ v.vector) * v.vector
    w = 0.3 * v.vector + np.sqrt(1 - 0.09) * u / np.linalg.norm(u)
    return (w / np.linalg.norm(w)).astype(np.float32)


def person(rng: np.random.Generator, modalities: tuple[Modality, ...] = tuple(Modality)) -> Person:
    out: Person = {}
    for m in modalities:
        out[m] = FaceTemplate(unit(rng), MODEL) if m is Modality.FACE else iris(rng)
    return out


def again(p: Person, rng: np.random.Generator, modalities: tuple[Modality, ...] | None = None) -> Person:
    """Another capture of the same person, of ``modalities`` (default: all the person has)."""
    out: Person = {}
    for m in modalities or tuple(p):
        t = p[m]
        if isinstance(t, FaceTemplate):
            out[m] = FaceTemplate(mate(t.vector, rng), MODEL)
        else:
            assert isinstance(t, IrisTemplate)
            out[m] = iris_mate(t, rng)
    return out


@pytest.fixture(scope="module")
def fusion3(calibration_dir: Path) -> Fusion:
    return Fusion.for_models({Modality.FACE: MODEL, **{m: IRIS for m in IRISES}}, calibration_dir)


@pytest.fixture()
def opener(tmp_path: Path, fusion3: Fusion) -> Iterator[object]:
    opened: list[Engine] = []

    def open_engine(name: str, shortlist: int = 100) -> Engine:
        cfg = EngineConfig(data_dir=tmp_path / name, snapshot_every=0, shortlist=shortlist)
        engine = Engine.open(cfg, fusion=fusion3)
        opened.append(engine)
        return engine

    yield open_engine
    for e in opened:
        e.close()


def scenario() -> tuple[dict[str, Person], list[tuple[str, Person]]]:
    """30 people already enrolled (some face only, some irises only) and 40 incoming records: strangers,
    other captures of enrolled people (through every modality mix), and people captured twice or three
    times within the incoming records themselves (also through only one shared modality)."""
    rng = np.random.default_rng(21)
    face_only, iris_only = (Modality.FACE,), IRISES
    held = {
        f"G{i:02d}": person(rng, face_only if i % 5 == 0 else iris_only if i % 5 == 1 else tuple(Modality))
        for i in range(30)
    }
    # three records whose left iris is exactly N38's: with a shortlist of 3 they fill N38's iris list, so
    # G22, its true mate, comes only through a poor face (negative LLR) and is scored in the iris it was
    # not listed in (then ranked below the three, and cut from the 3 candidates kept, as one by one)
    g22 = held["G22"][Modality.IRIS_LEFT]
    assert isinstance(g22, IrisTemplate)
    far = IrisTemplate(g22.code ^ np.packbits(rng.random(NBYTES * 8) < 0.25), _MASK, NBYTES, IRIS)  # < 1.0
    n38 = {Modality.FACE: FaceTemplate(weak(held["G22"], rng), MODEL), Modality.IRIS_LEFT: far}
    for d in range(3):
        held[f"D{d}"] = {
            Modality.FACE: FaceTemplate(unit(rng), MODEL),
            Modality.IRIS_LEFT: n38[Modality.IRIS_LEFT],
        }
    incoming: list[tuple[str, Person]] = []
    x, y, z = person(rng), person(rng), person(rng, iris_only)
    for i in range(40):
        if i in (3, 17):
            t = again(held[f"G{i:02d}"], rng)  # G03 all, G17 all
        elif i == 8:
            t = again(held["G10"], rng)  # G10 face only
        elif i == 9:
            t = again(held["G11"], rng, (Modality.IRIS_LEFT,))  # one iris of an iris-only person
        elif i == 12:
            t = x
        elif i == 13:
            t = again(x, rng)  # matches the record just before it
        elif i == 30:
            t = again(x, rng, (Modality.FACE,))  # x a third time, through the face only
        elif i == 20:
            t = y
        elif i == 35:
            t = again(y, rng, (Modality.IRIS_RIGHT,))
        elif i == 24:
            t = z
        elif i == 38:
            t = n38
        elif i == 25:
            t = {Modality.FACE: FaceTemplate(unit(rng), MODEL), **again(z, rng)}  # z's irises, a new face
        else:
            t = person(rng, face_only if i % 7 == 0 else tuple(Modality))
        incoming.append((f"N{i:02d}", t))
    return held, incoming


def summary(results: list[EnrollResult]) -> list[tuple[str, str, list[str], float, int]]:
    return [
        (
            r.reference_id,
            r.outcome.value,
            [c.reference_id for c in r.candidates],
            r.threshold.fused_threshold,
            r.threshold.gallery_size,
        )
        for r in results
    ]


def fused(results: list[EnrollResult]) -> list[float]:
    return [c.fused for r in results for c in r.candidates]


# shortlist 3: full candidate lists, so most candidates are settled by the bound, unscored
@pytest.mark.parametrize(("block", "shortlist"), [(1, 100), (7, 100), (1000, 100), (7, 3), (1000, 3)])
def test_enroll_many_decides_as_enroll_one_by_one(opener: object, block: int, shortlist: int) -> None:
    held, incoming = scenario()
    open_engine = opener
    assert callable(open_engine)
    one, many = open_engine("one", shortlist), open_engine("many", shortlist)
    for engine in (one, many):
        for ref, t in held.items():
            engine.gallery.insert(t, ref_id=ref, partition="here")
    sequential = [
        one.enroll(ref, [Sample(m, template=t) for m, t in tpl.items()], partition="there")
        for ref, tpl in incoming
    ]
    batched: list[EnrollResult] = []
    for lo in range(0, len(incoming), block):
        batched += many.enroll_many(
            [BatchEntry(ref, tpl, partition="there") for ref, tpl in incoming[lo : lo + block]]
        )
    assert summary(batched) == summary(sequential)
    assert np.allclose(fused(batched), fused(sequential), rtol=0, atol=1e-3)
    pending = {
        r.reference_id: [c.reference_id for c in r.candidates]
        for r in sequential
        if r.outcome is EnrollOutcome.PENDING_ADJUDICATION
    }
    # the planted ones, and only they: a chain ends at its first capture (N13 pending is not searchable)
    assert sorted(pending.pop("N38")) == ["D0", "D1", "D2", "G22"][: 4 if shortlist > 3 else 3]
    assert pending == {
        "N03": ["G03"],
        "N08": ["G10"],
        "N09": ["G11"],
        "N13": ["N12"],
        "N17": ["G17"],
        "N25": ["N24"],
        "N30": ["N12"],
        "N35": ["N20"],
    }
    for ref, _ in incoming:
        assert many.get(ref).status == one.get(ref).status


def test_enroll_many_refuses_a_template_of_another_model_and_writes_nothing(opener: object) -> None:
    open_engine = opener
    assert callable(open_engine)
    engine = open_engine("x")
    rng = np.random.default_rng(1)
    engine.gallery.insert(person(rng), ref_id="G1")
    before = engine.datadir.store.last_seq()
    other = FaceTemplate(unit(rng), ModelRef("other-face", "2"))
    with pytest.raises(ModelMismatch):
        engine.enroll_many([BatchEntry("N1", person(rng)), BatchEntry("N2", {Modality.FACE: other})])
    assert engine.datadir.store.last_seq() == before and engine.count() == 1


def test_a_duplicate_pair_inside_one_packet_lands_in_adjudication(sites: Sites, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    a = sites["camp-a"]
    v = unit(rng)
    for i in range(10):
        a.insert(f"A{i}", [Sample(Modality.FACE, template=FaceTemplate(unit(rng), MODEL))])
    # camp-a registered one person twice without noticing (insert: no de-duplication there)
    a.insert("A-first", [Sample(Modality.FACE, template=FaceTemplate(v, MODEL))])
    a.insert("A-again", [Sample(Modality.FACE, template=FaceTemplate(mate(v, rng), MODEL))])
    sites["camp-b"].insert("B0", [Sample(Modality.FACE, template=FaceTemplate(unit(rng), MODEL))])
    sites.pair("camp-a", "camp-b")
    export_to_file(a.datadir, "camp-b", tmp_path / "p.nastx")
    s = import_packet(sites["camp-b"], tmp_path / "p.nastx")  # one block: both searched together
    assert s.text() == "packet 1 from camp-a: 11 new, 1 sent to adjudication, 0 erasures applied"
    case = sites["camp-b"].datadir.store.case("A-again")
    assert case is not None
    [cand] = case.candidates
    assert (cand["ref_id"], cand["site"], cand["origin_ref"]) == ("A-first", "camp-a", "A-first")
    assert cand["incoming"]["origin_ref"] == "A-again"


OTHER = ModelRef("other-face", "2")


class SubjectFace:
    """A fake extractor of this site's model: the "image" ``b"subject:capture"`` gives the subject's
    direction plus a little capture noise (captures of one subject: cosine ~0.99); ``b"BLUR..."`` is
    refused by the quality check."""

    kind = "face"
    model = MODEL

    def extract(self, image: bytes | npt.NDArray[np.uint8]) -> Extraction:
        text = bytes(image).decode()
        if text.startswith("BLUR"):
            return Extraction(
                FaceTemplate(unit(np.random.default_rng(0)), MODEL),
                Quality(0.1, False, (QualityReason.BLURRED,), rejected=(QualityReason.BLURRED,)),
            )

        def direction(seed: str) -> npt.NDArray[np.float32]:
            return unit(np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16)))

        v = direction(text.split(":")[0]) + 0.1 * direction(text)
        return Extraction(FaceTemplate(v / np.linalg.norm(v), MODEL), Quality(1.0, True))


def test_other_face_model_re_extracted_from_the_packets_images(tmp_path: Path, fusion: Fusion) -> None:
    """camp-a makes face templates with another model; camp-b imports its packet with --re-extract: its
    own extractor makes the templates from the images, de-duplication then works as usual, and a record
    whose image is missing or fails here is refused by name, never imported half-made."""
    from dataclasses import replace

    from tests.unit.transfer.conftest import site_config

    def loader(kind: str) -> SubjectFace:
        assert kind == "face"
        return SubjectFace()

    a = Engine.open(replace(site_config(tmp_path, "camp-a"), keep_images=True), fusion=fusion)
    b = Engine.open(
        replace(site_config(tmp_path, "camp-b"), keep_images=True), fusion=fusion, extractors=loader
    )
    try:
        for x, y in ((a, b), (b, a)):
            trust(x.datadir, load_site(y.datadir).public, actor="test")
        rng = np.random.default_rng(8)
        b.insert("B-P3", [Sample(Modality.FACE, image=b"P3:b")])
        b.insert("B-Q", [Sample(Modality.FACE, image=b"Q:b")])
        for i in range(1, 6):
            image = b"BLUR" if i == 5 else f"P{i}:a".encode()
            a.gallery.insert(
                {Modality.FACE: FaceTemplate(unit(rng), OTHER)}, ref_id=f"X{i}", images={Modality.FACE: image}
            )
        a.gallery.insert({Modality.FACE: FaceTemplate(unit(rng), OTHER)}, ref_id="X6")  # no image kept
        export_to_file(a.datadir, "camp-b", tmp_path / "p.nastx", with_images=True)
        with pytest.raises(ModelMismatch, match="The packet carries images: import it with --re-extract"):
            import_packet(b, tmp_path / "p.nastx")
        export_to_file(a.datadir, "camp-b", tmp_path / "bare.nastx", since=0)  # packet 2, no images
        with pytest.raises(
            ModelMismatch, match="exports with --with-images and this site imports with --re-extract"
        ):
            import_packet(b, tmp_path / "bare.nastx")
        with pytest.raises(ModelMismatch, match="exported without them"):
            import_packet(b, tmp_path / "bare.nastx", re_extract=True)
        assert b.count() == 2

        s = import_packet(b, tmp_path / "p.nastx", re_extract=True)
        assert s.counts == {"new": 3, "adjudication": 1, "refused": 2}
        assert "2 refused: their images could not be re-extracted here" in s.text()
        case = b.datadir.store.case("X3")
        assert case is not None and [c["ref_id"] for c in case.candidates] == ["B-P3"]
        assert b.gallery.get("X1").templates[Modality.FACE].model == MODEL
        with b.datadir.store.db.read() as conn:
            why = sorted(
                json.loads(d)["reason"]
                for (d,) in conn.execute("SELECT details FROM audit WHERE action = 'transfer_refused'")
            )
        assert [w.split(" ")[0:2] for w in why] == [["no", "face"], ["the", "face"]]
        assert {r for r in ("X5", "X6") if b.gallery.store.labels_of([r], status=None)} == set()
    finally:
        a.close()
        b.close()
