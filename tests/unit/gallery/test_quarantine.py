"""Issue 18, item 1: exact template validation, and unreadable stored records quarantined instead of
stopping start-up (rebuild without a snapshot, snapshot + replay, snapshot with a quarantine list)."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.crypto import KeyRing, associated_data
from engine.errors import InvalidInput, NotFound
from engine.gallery import Gallery, GalleryConfig
from engine.store import RecordStatus
from engine.types import FaceTemplate, Modality, ModelRef, check_template
from tests.unit.gallery.conftest import FACE_MODEL, QUIET, OpenGallery, face, iris

F, IL = Modality.FACE, Modality.IRIS_LEFT


# -- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1e30, 3e38, -3e38, 1e-45])
def test_extreme_but_finite_vectors_normalise_in_float64(value: float) -> None:
    t = FaceTemplate(np.full(128, value, dtype=np.float32), FACE_MODEL)
    assert np.all(np.isfinite(t.vector))
    assert abs(float(np.linalg.norm(t.vector.astype(np.float64))) - 1.0) < 1e-6


@pytest.mark.parametrize("vector", [
    np.zeros(128, np.float32),
    np.array([np.nan] + [0.1] * 127, np.float32),
    np.array([np.inf] + [0.1] * 127, np.float32),
    np.full(128, 1e39, np.float64),  # finite in float64, inf once stored as float32
    np.ones((2, 64), np.float32),
    np.array([], np.float32),
    np.array(["a", "b"]),
])
def test_invalid_face_vectors_are_refused(vector: np.ndarray) -> None:
    with pytest.raises(InvalidInput) as err:
        FaceTemplate(vector, FACE_MODEL)
    assert err.value.reason == "INVALID_TEMPLATE"


def test_check_template_names_shape_errors_as_invalid_input() -> None:
    assert check_template(F, face(1, d=64)) == "f32x64"
    with pytest.raises(InvalidInput, match="differs"):
        check_template(F, face(1, d=64), "f32x128")
    with pytest.raises(InvalidInput, match="cannot fill"):
        check_template(IL, face(1))
    with pytest.raises(InvalidInput, match="differs"):
        check_template(IL, iris(1, nbytes=128, columns=32), "iris:256x64")


def test_wrong_dimension_is_invalid_input_everywhere(open_gallery: OpenGallery) -> None:
    g = open_gallery()
    g.insert({F: face(1), IL: iris(1)}, ref_id="A")
    for call in (lambda: g.insert({F: face(2, d=64)}, ref_id="B"),
                 lambda: g.insert({IL: iris(2, nbytes=128, columns=32)}, ref_id="B"),
                 lambda: g.search(F, face(3, d=64), 1),
                 lambda: g.search(IL, iris(3, nbytes=128, columns=64), 1),
                 lambda: g.search(IL, face(3), 1),
                 lambda: g.score(F, face(3, d=64), np.array([1]))):
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.reason == "INVALID_TEMPLATE"
    assert g.count() == 1 and g.store.count(None) == 1


def test_a_huge_vector_is_stored_as_a_unit_vector(open_gallery: OpenGallery, tmp_path: Path) -> None:
    g = open_gallery()
    g.insert({F: FaceTemplate(np.full(128, 3e38, np.float32), FACE_MODEL)}, ref_id="HUGE")
    stored = g.get("HUGE").templates[F]
    assert isinstance(stored, FaceTemplate) and abs(float(np.linalg.norm(stored.vector)) - 1.0) < 1e-5
    assert g.search(F, FaceTemplate(np.ones(128, np.float32), FACE_MODEL), 1)[0].ref_id == "HUGE"


# -- quarantine ------------------------------------------------------------------------------------

def _db(directory: Path) -> sqlite3.Connection:
    return sqlite3.connect(directory / "nasname.db", isolation_level=None)


def _blob(directory: Path, label: int, modality: Modality) -> bytes:
    with _db(directory) as conn:
        return bytes(conn.execute("SELECT blob FROM templates WHERE record_id = ? AND modality = ?",
                                  (label, modality.value)).fetchone()[0])


def _set_blob(directory: Path, label: int, modality: Modality, blob: bytes) -> None:
    conn = _db(directory)
    try:
        conn.execute("UPDATE templates SET blob = ? WHERE record_id = ? AND modality = ?",
                     (blob, label, modality.value))
    finally:
        conn.close()


def _plain_face(vector: np.ndarray, model: ModelRef = FACE_MODEL) -> bytes:
    """``FaceTemplate.to_bytes`` without the constructor's checks (what a bad old row could hold)."""
    mid, ver = model.model_id.encode(), model.version.encode()
    return (b"NT1F" + bytes([len(mid)]) + mid + bytes([len(ver)]) + ver
            + np.asarray(vector, dtype="<f4").tobytes())


def _corrupt(directory: Path, ring: KeyRing, labels: dict[str, int]) -> None:
    """Each kind of bad stored record: a flipped ciphertext bit, plaintext that is no template, a zero
    vector and a NaN vector (both sealed correctly, as an older nasname could have written them)."""
    flipped = bytearray(_blob(directory, labels["FLIP"], F))
    flipped[-20] ^= 0x01
    _set_blob(directory, labels["FLIP"], F, bytes(flipped))

    def seal(label: int, plain: bytes) -> None:
        _set_blob(directory, label, F, ring.encrypt(plain, associated_data("template", label, F.value)))

    seal(labels["GARBAGE"], b"not a template at all")
    seal(labels["ZERO"], _plain_face(np.zeros(128)))
    seal(labels["NAN"], _plain_face(np.full(128, np.nan)))


BAD = {"FLIP": "DECRYPTION_FAILED", "GARBAGE": "CORRUPT_TEMPLATE", "ZERO": "CORRUPT_TEMPLATE",
       "NAN": "CORRUPT_TEMPLATE"}


def _fill(g: Gallery) -> dict[str, int]:
    labels = {}
    for i in range(12):
        labels[f"OK{i}"] = g.insert({F: face(i), IL: iris(i)}, ref_id=f"OK{i}", partition="camp").label
    for i, name in enumerate(BAD):
        labels[name] = g.insert({F: face(100 + i), IL: iris(100 + i)}, ref_id=name, partition="camp").label
    return labels


def _filled_and_corrupted(open_gallery: OpenGallery, directory: Path) -> tuple[dict[str, int], KeyRing]:
    """A closed gallery (snapshot written at close) whose store then got each kind of bad record."""
    g = open_gallery(directory=directory)
    labels = _fill(g)
    ring = g._keyring
    g.close()
    _corrupt(directory, ring, labels)
    return labels, ring


def _check_quarantine(g: Gallery, labels: dict[str, int], expected: dict[str, str]) -> None:
    found = {ref: q for ref, q in g.quarantined()}
    assert {ref: q.unreadable for ref, q in found.items()} == {ref: {F: r} for ref, r in expected.items()}
    assert all(found[ref].label == labels[ref] and found[ref].modalities == (F, IL) for ref in expected)
    assert g.stats()["quarantined"] == len(expected)
    assert g.count() == 12 + len(BAD) - len(expected) and g.count(partition="camp") == g.count()
    for i, name in enumerate(BAD):  # a quarantined record answers no search, by any modality
        face_hits = g.search(F, face(100 + i), 1, partition="camp")
        iris_hits = g.search(IL, iris(100 + i), 1)
        assert (face_hits[0].ref_id == name) == (name not in expected)
        assert (iris_hits[0].ref_id == name) == (name not in expected)
    for i in range(12):
        assert g.search(F, face(i), 1)[0].ref_id == f"OK{i}"


def test_unreadable_records_are_quarantined_on_rebuild_and_kept_in_the_snapshot(
        tmp_path: Path, open_gallery: OpenGallery, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "g"
    labels, ring = _filled_and_corrupted(open_gallery, directory)
    shutil.rmtree(directory / "snapshots")  # snapshot gone: every template is decrypted at open

    with caplog.at_level(logging.INFO):
        g = open_gallery(directory=directory)
    _check_quarantine(g, labels, BAD)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rebuilt" in logged and "4 record(s) quarantined" in logged
    for name, label in ((n, labels[n]) for n in BAD):  # named by label; the reference id stays out
        assert f"record {label} quarantined" in logged and name not in logged
    g.close()  # writes a snapshot that lists the quarantined records

    caplog.clear()
    with caplog.at_level(logging.INFO):
        g = open_gallery(directory=directory)  # snapshot present: loaded, quarantine kept, no rebuild
    assert "loaded snapshot" in "\n".join(r.getMessage() for r in caplog.records)
    _check_quarantine(g, labels, BAD)

    g.delete("ZERO")  # an admin erases one ...
    with pytest.raises(NotFound):
        g.delete("ZERO")
    assert g.get("ZERO").status is RecordStatus.DELETED and not g.get("ZERO").modalities
    g.close()
    original = ring.encrypt(face(100 + list(BAD).index("NAN")).to_bytes(),
                            associated_data("template", labels["NAN"], F.value))
    _set_blob(directory, labels["NAN"], F, original)  # ... and restores another (e.g. from a backup)

    g = open_gallery(directory=directory)
    remaining = {k: v for k, v in BAD.items() if k not in ("ZERO", "NAN")}
    assert {ref for ref, _ in g.quarantined()} == set(remaining)
    assert g.search(F, face(100 + list(BAD).index("NAN")), 1)[0].ref_id == "NAN"
    assert g.stats()["quarantined"] == 2 and g.count() == 12 + 1


def test_a_record_corrupted_after_the_snapshot_is_quarantined_on_replay(tmp_path: Path,
                                                                         open_gallery: OpenGallery) -> None:
    directory = tmp_path / "g"
    g = open_gallery(directory=directory, config=GalleryConfig(snapshot_every=0, snapshot_interval_s=0,
                                                                snapshot_on_close=False))
    for i in range(5):
        g.insert({F: face(i), IL: iris(i)}, ref_id=f"OK{i}")
    g.snapshot()
    labels = {name: g.insert({F: face(100 + i), IL: iris(100 + i)}, ref_id=name).label
              for i, name in enumerate(BAD)}
    ring = g._keyring
    g.close()
    _corrupt(directory, ring, labels)

    g = open_gallery(directory=directory)
    assert g.stats()["snapshot_seq"] == 5  # the snapshot was used; only the newer changes replayed
    assert {ref: q.unreadable[F] for ref, q in g.quarantined()} == BAD
    assert g.count() == 5


def test_a_status_change_of_a_quarantined_record_keeps_it_out(tmp_path: Path,
                                                               open_gallery: OpenGallery) -> None:
    directory = tmp_path / "g"
    g = open_gallery(directory=directory)
    label = g.insert({F: face(1)}, ref_id="A").label
    g.insert({F: face(2)}, ref_id="B")
    blob = bytearray(_blob(directory, label, F))
    blob[-1] ^= 0x80
    _set_blob(directory, label, F, bytes(blob))
    g.set_status("A", RecordStatus.PENDING)
    g.set_status("A", RecordStatus.ACTIVE)  # replays its current state: unreadable -> quarantined
    assert [ref for ref, _ in g.quarantined()] == ["A"]
    assert [h.ref_id for h in g.search(F, face(1), 2)] == ["B"]


def test_an_old_key_missing_from_the_ring_quarantines_and_heals_when_it_is_back(
        tmp_path: Path) -> None:
    from tests.unit.gallery.conftest import face_factory, face_loader

    old, new = KeyRing.generate(), KeyRing.generate()
    old_key = old._keys[bytes.fromhex(old.key_id)]
    new_key = new._keys[bytes.fromhex(new.key_id)]
    with Gallery(tmp_path / "g", old, face_factory, face_loader, config=QUIET) as g:
        g.insert({F: face(1)}, ref_id="OLD")
    rotated = KeyRing(new_key, [old_key])
    with Gallery(tmp_path / "g", rotated, face_factory, face_loader, config=QUIET) as g:
        g.insert({F: face(2)}, ref_id="NEW")
    shutil.rmtree(tmp_path / "g" / "snapshots")
    with Gallery(tmp_path / "g", KeyRing(new_key), face_factory, face_loader, config=QUIET) as g:
        assert [(ref, q.unreadable) for ref, q in g.quarantined()] == [("OLD", {F: "UNKNOWN_KEY"})]
        assert g.count() == 1
    with Gallery(tmp_path / "g", rotated, face_factory, face_loader, config=QUIET) as g:
        assert g.quarantined() == [] and g.count() == 2
        assert g.search(F, face(1), 1)[0].ref_id == "OLD"


def test_the_bad_plaintext_helper_matches_the_real_layout() -> None:
    assert _plain_face(face(3).vector) == face(3).to_bytes()


def test_check_templates_finds_a_record_the_snapshot_still_hides(
        tmp_path: Path, open_gallery: OpenGallery, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "g"
    labels, _ = _filled_and_corrupted(open_gallery, directory)
    g = open_gallery(directory=directory)  # snapshot present: nothing was decrypted, nothing known
    assert g.quarantined() == [] and g.search(F, face(100), 1)[0].ref_id == "FLIP"
    found = g.check_templates()
    assert {ref: q.unreadable[F] for ref, q in found} == BAD
    _check_quarantine(g, labels, BAD)
    g.close()  # the indexes changed at the same change seq: the snapshot is rewritten, not reused stale
    caplog.clear()
    with caplog.at_level(logging.INFO):
        g = open_gallery(directory=directory)
    assert "loaded snapshot" in caplog.text and "rebuilt" not in caplog.text
    _check_quarantine(g, labels, BAD)
