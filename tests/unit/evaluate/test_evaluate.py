"""``nasname evaluate`` end to end on tiny synthetic "images" with fake extractors passed in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine.errors import AcquisitionFailed, InvalidInput
from engine.evaluate import evaluate, main, rescore
from engine.extractor import Extraction
from engine.types import FaceTemplate, IrisTemplate, ModelRef, Quality, QualityReason
from tests.scripts import model_script

FACE_MODEL = ModelRef("fake-face", "1")
IRIS_MODEL = ModelRef("fake-iris", "1")


def _unit(seed: str, d: int = 16) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    v = rng.normal(size=d).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeFace:
    """An "image" is the text ``subject:n``; its template is the subject's direction plus a little
    sample noise, so mates score ~0.95 and others ~0. ``FAIL`` images raise AcquisitionFailed."""

    kind = "face"
    model = FACE_MODEL

    def extract(self, image: bytes | npt.NDArray[np.uint8]) -> Extraction:
        text = bytes(image).decode()
        if text.startswith("FAIL"):
            raise AcquisitionFailed("no face", reasons=["NO_FACE"])
        subject = text.split(":")[0]
        v = _unit(subject) + 0.1 * _unit(text)
        return Extraction(FaceTemplate(v, FACE_MODEL), Quality(1.0, True), {"stage_ms": {"detect": 1.0}})


class FakeIris:
    kind = "iris"
    model = IRIS_MODEL

    def extract(self, image: bytes | npt.NDArray[np.uint8]) -> Extraction:
        text = bytes(image).decode()
        subject = text.split(":")[0]
        rng = np.random.default_rng(int(hashlib.sha256(subject.encode()).hexdigest()[:8], 16))
        code = rng.integers(0, 256, 64, dtype=np.uint8)
        noise = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
        flips = (noise.random(64 * 8) < 0.1).astype(np.uint8)
        code = code ^ np.packbits(flips)
        mask = np.full(64, 255, dtype=np.uint8)
        return Extraction(IrisTemplate(code, mask, 16, IRIS_MODEL), Quality(1.0, True))


def _write_set(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["identity,modality,path"]
    for identity, modality, content in rows:
        rel = f"img/{len(lines)}.bin"
        (root / "img").mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
        lines.append(f"{identity},{modality},{rel}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


FACE_ROWS = [
    *[("alice", "face", f"alice:{i}") for i in range(3)],
    *[("bob", "face", f"bob:{i}") for i in range(3)],
    ("carol", "face", "FAIL:enrol"),  # carol's enrolment sample fails -> FTE
    ("carol", "face", "carol:1"),
    ("dave", "face", "dave:0"),  # singletons -> non-mated probes
    ("erin", "face", "erin:0"),
    ("bob", "face", "FAIL:probe"),  # a failed mated probe
]


def test_evaluate_face_counts_failures_and_finds_mates(tmp_path: Path) -> None:
    manifest = _write_set(tmp_path / "set", FACE_ROWS)
    doc = evaluate(manifest, tmp_path / "out", extractors={"face": FakeFace()}, progress=False)
    fig = doc["per_modality"]["face"]
    # gallery: alice:0, bob:0, carol(FAIL) -> FTE 1/3
    assert doc["fte_rate"]["face"] == pytest.approx(1 / 3)
    s = fig["searches"]
    assert (s["gallery_subjects"], s["enrolled"], s["mated_searches"]) == (3, 2, 6)
    # non-mated: 2 singletons + the 4 usable mated probes searched with their mate left out
    assert (s["nonmated_searches_singletons"], s["nonmated_searches_mate_excluded"]) == (2, 4)
    assert doc["per_modality"]["face"]["fta_rate"] == pytest.approx(1 / 8)
    assert s["failed_mated_searches"] == 1 and s["mated_searches_without_enrolled_mate"] == 1
    # mated: alice 1,2 / bob 1,2 found; carol:1 (no enrolled mate) and the failed bob probe are misses
    assert doc["rank1_hit_rate"]["face"]["rate"] == pytest.approx(4 / 6)
    assert doc["rank10_hit_rate"]["face"]["rate"] == pytest.approx(4 / 6)
    assert fig["cmc"]["hit_rate"][:2] == pytest.approx([4 / 6, 4 / 6])
    # 1:1 over all 11 samples: 55 pairs; genuine = alice 3 + bob 6 + carol 1 = 10
    c = fig["comparisons"]
    assert (c["genuine"], c["impostor"]) == (10, 45)
    assert c["failed_genuine"] == 4  # bob:FAIL with 3 bobs, carol pair
    assert fig["failure_reasons"] == {"NO_BIOMETRIC_FOUND": 2}
    # 45 impostor pairs cannot support FMR 1e-2 (needs 300)
    assert all(not p["measurable"] and p["fnmr"] is None for p in doc["fnmr_at_fmr"]["face"])
    assert doc["eer"]["face"] == pytest.approx(0.4)  # set by the 4 failed of 10 genuine pairs
    out = tmp_path / "out"
    assert (out / "det.png").stat().st_size > 1000 and (out / "fnir_fpir.png").is_file()
    assert (out / "det_matcher_only.png").is_file()
    on_disk = json.loads((out / "metrics.json").read_text())
    assert set(on_disk) >= {"fte_rate", "eer", "fnmr_at_fmr", "fnir_at_fpir", "rank1_hit_rate"}


def test_rescore_reproduces_the_figures(tmp_path: Path) -> None:
    manifest = _write_set(tmp_path / "set", FACE_ROWS)
    doc = evaluate(manifest, tmp_path / "a", extractors={"face": FakeFace()}, progress=False)
    again = rescore(tmp_path / "a" / "scores.npz", tmp_path / "b")
    for key in ("fte_rate", "eer", "rank1_hit_rate", "fnir_at_fpir"):
        assert again[key] == doc[key]


def test_all_failures_to_enroll(tmp_path: Path) -> None:
    rows = [(s, "face", f"FAIL:{i}") for i, s in enumerate("aabb")]
    doc = evaluate(_write_set(tmp_path / "s", rows), tmp_path / "o", extractors={"face": FakeFace()},
                   progress=False)
    assert doc["fte_rate"]["face"] == 1.0
    assert doc["rank1_hit_rate"]["face"]["rate"] == 0.0
    assert doc["eer"]["face"] == 0.5  # FNMR 1 > FMR 0 everywhere: mean of the two (documented)
    assert doc["per_modality"]["face"]["failed_samples"] == 4


def test_pairs_kfold_accuracy(tmp_path: Path) -> None:
    root = tmp_path / "face"
    lfw = root / "lfw"
    people = ["Ann_A", "Ben_B", "Cid_C", "Dee_D"]
    for name in people:
        (lfw / name).mkdir(parents=True)
        for i in (1, 2):
            (lfw / name / f"{name}_{i:04d}.jpg").write_text(f"{name}:{i}")
    lines = ["2\t2", "Ann_A\t1\t2", "Ben_B\t1\t2", "Ann_A\t1\tBen_B\t1", "Cid_C\t1\tDee_D\t2",
             "Cid_C\t1\t2", "Dee_D\t1\t2", "Ann_A\t2\tDee_D\t1", "Ben_B\t2\tCid_C\t2"]
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    manifest = _write_set(tmp_path / "m", [("x", "face", "x:1"), ("x", "face", "x:2")])
    doc = evaluate(manifest, tmp_path / "o", pairs=pairs, extractors={"face": FakeFace()}, progress=False)
    acc = doc["verification_accuracy"]["face"]
    assert acc["mean"] == 1.0 and acc["folds"] == 2 and acc["n_pairs"] == 8 and acc["failed_pairs"] == 0
    small = evaluate(manifest, tmp_path / "p", pairs=pairs, pairs_per_fold=1, extractors={"face": FakeFace()},
                     progress=False)["verification_accuracy"]["face"]
    assert small["n_pairs"] == 4 and small["pairs_per_fold_limit"] == 1


def test_iris_and_chimeric_fusion_with_a_given_fusion(tmp_path: Path) -> None:
    rows: list[tuple[str, str, str]] = []
    for p in ("p1", "p2", "p3"):
        rows += [(p, "face", f"{p}:{i}") for i in range(2)]
        rows += [(p, "iris_left", f"{p}L:{i}") for i in range(2)]

    class Identity:
        def llr_of(self, s: Any) -> Any:
            return np.asarray(s, dtype=np.float64)

    class FakeFusion:
        def calibration(self, modality: Any) -> Identity:
            return Identity()

    doc = evaluate(_write_set(tmp_path / "s", rows), tmp_path / "o",
                   extractors={"face": FakeFace(), "iris": FakeIris()}, fusion=FakeFusion(), progress=False)
    assert doc["rank1_hit_rate"]["iris"]["rate"] == 1.0
    assert doc["per_modality"]["iris"]["score_summary"]["genuine"]["mean"] > 0.8
    assert doc["rank1_hit_rate"]["fused"]["rate"] == 1.0
    assert doc["per_modality"]["fused"]["comparisons"]["genuine"] == 3
    assert doc["per_modality"]["fused"]["calibration"] == {"face": "unknown", "iris": "unknown"}


def test_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("identity,modality,path\nx,palm,a.jpg\n")
    with pytest.raises(InvalidInput, match="unknown modality"):
        evaluate(bad, tmp_path / "o", extractors={"face": FakeFace()}, progress=False)
    assert main(["--manifest", str(bad), "--out", str(tmp_path / "o")]) == 2


def test_limit_keeps_first_subjects(tmp_path: Path) -> None:
    manifest = _write_set(tmp_path / "s", FACE_ROWS)
    doc = evaluate(manifest, tmp_path / "o", limit=2, extractors={"face": FakeFace()}, progress=False)
    assert doc["per_modality"]["face"]["subjects"] == 2
    assert doc["per_modality"]["face"]["samples"] == 7  # alice x3, bob x4 (incl. the failed probe)


def test_mate_excluded_searches_can_be_turned_off(tmp_path: Path) -> None:
    manifest = _write_set(tmp_path / "s", FACE_ROWS)
    doc = evaluate(manifest, tmp_path / "o", extractors={"face": FakeFace()}, mate_excluded=False,
                   progress=False)
    s = doc["per_modality"]["face"]["searches"]
    assert s["nonmated_searches"] == 2 and s["nonmated_searches_mate_excluded"] == 0


def test_bench_report_shows_evaluate_figures_with_counts(tmp_path: Path) -> None:
    from engine.bench.report import accuracy_section

    manifest = _write_set(tmp_path / "set", FACE_ROWS)
    evaluate(manifest, tmp_path / "out", extractors={"face": FakeFace()}, progress=False)
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    text = "\n".join(accuracy_section([{**doc, "source": "m"}]))
    assert "| manifest.csv | face | 11 | 33.33 % | 12.50 % | 40.00 % |" in text
    assert "| 10 / 45 | 6 / 6 |" in text  # genuine / impostor pairs, mated / non-mated searches


def test_two_manifests_combine_into_chimeric_subjects(tmp_path: Path) -> None:
    face = _write_set(tmp_path / "f", [(p, "face", f"{p}:{i}") for p in ("a", "b") for i in range(2)])
    iris = _write_set(tmp_path / "i", [(p, "iris", f"{p}E:{i}") for p in ("x", "y") for i in range(2)])

    class Identity:
        def llr_of(self, s: Any) -> Any:
            return np.asarray(s, dtype=np.float64)

    class FakeFusion:
        def calibration(self, modality: Any) -> Identity:
            return Identity()

    doc = evaluate([face, iris], tmp_path / "o", extractors={"face": FakeFace(), "iris": FakeIris()},
                   fusion=FakeFusion(), progress=False)
    assert set(doc["per_modality"]) == {"face", "iris", "fused"}
    assert doc["per_modality"]["fused"]["subjects"] == 2
    assert " + " in doc["inputs"]["manifest"]


def test_evaluate_measures_the_configured_face_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No extractor given: the face model is --face-model, else the engine configuration's
    (NASNAME_FACE_MODEL); the metrics file and the summary name it."""
    from engine import extractors

    asked: list[str | None] = []

    def fake_load(kind: str, model: str | None = None) -> FakeFace:
        asked.append(model)
        face = FakeFace()
        face.model = ModelRef(f"{model}-id", "1")  # type: ignore[misc]
        return face

    monkeypatch.setattr(extractors, "load_extractor", fake_load)
    monkeypatch.delenv("NASNAME_CONFIG", raising=False)
    monkeypatch.setenv("NASNAME_DATA_DIR", str(tmp_path / "data"))
    manifest = _write_set(tmp_path / "set", FACE_ROWS)
    monkeypatch.setenv("NASNAME_FACE_MODEL", "dlib_resnet_v1")
    doc = evaluate(manifest, tmp_path / "a", progress=False)
    assert asked == ["dlib_resnet_v1"]
    assert doc["models"]["face"] == {"name": "dlib_resnet_v1", "ref": "dlib_resnet_v1-id@1"}
    assert doc["per_modality"]["face"]["model"] == "dlib_resnet_v1-id@1"
    assert main(["--manifest", str(manifest), "--out", str(tmp_path / "b"), "--no-progress",
                 "--face-model", "sface"]) == 0
    assert asked[-1] == "sface"
    on_disk = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert on_disk["models"]["face"] == {"name": "sface", "ref": "sface-id@1"}
    monkeypatch.delenv("NASNAME_FACE_MODEL")
    evaluate(manifest, tmp_path / "c", progress=False)
    assert asked[-1] == "sface"  # the default configuration
    rescored = rescore(tmp_path / "b" / "scores.npz", tmp_path / "d")
    assert rescored["models"]["face"]["name"] == "sface"


class BlurryFace(FakeFace):
    """Samples whose text ends in ``!`` are flagged BLURRED and refused by the gate, yet match."""

    def extract(self, image: bytes | npt.NDArray[np.uint8]) -> Extraction:
        out = super().extract(image)
        if bytes(image).decode().endswith("!"):
            q = Quality(0.2, False, (QualityReason.BLURRED,), {}, (QualityReason.BLURRED,))
            return Extraction(out.template, q, out.details)
        return out


def test_keep_refused_scores_the_refused_samples_for_calibration(tmp_path: Path) -> None:
    rows = [*FACE_ROWS, ("alice", "face", "alice:9!"), ("frank", "face", "frank:0!")]
    manifest = _write_set(tmp_path / "set", rows)
    doc = evaluate(manifest, tmp_path / "out", extractors={"face": BlurryFace()}, progress=False,
                   keep_refused=True)
    assert doc["per_modality"]["face"]["failure_reasons"]["QUALITY_CHECK_FAILED"] == 2
    with np.load(tmp_path / "out" / "scores.npz") as z:
        ok, have, reasons = z["face_ok"], z["face_extracted"], z["face_reasons"]
        full, gated = z["face_scores_ungated"], z["face_scores"]
    refused = np.flatnonzero(have & ~ok)
    assert len(refused) == 2 and all(reasons[i] == "BLURRED" for i in refused)
    assert np.isfinite(full[refused[0], 0]) and np.isnan(gated[refused[0], 0])  # alice:9! vs alice:0
    cq = model_script("calibrate_quality")
    result = cq.calibrate(tmp_path / "out", 0.01)["face"]
    (rule,) = result["rules"]
    assert rule["rule"] == "BLURRED" and rule["flagged_samples"] == 2 and rule["verdict"] == "warn"
    assert result["gate_off"]["refused"] == 0 and result["gate_all_reject"]["refused"] == 2


def test_multi_sample_design_through_evaluate_and_its_summary(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _write_set(tmp_path / "set", FACE_ROWS)
    doc = evaluate(manifest, tmp_path / "out", extractors={"face": FakeFace()}, progress=False,
                   multi_sample=[2])
    multi = doc["multi_sample"]["face"]["2"]
    # alice and bob have more than 2 samples: enrolled with their first 1 or 2, probed with the rest
    assert multi["design"]["gallery_subjects"] == 2 and multi["design"]["mated_probes"] == 3
    assert set(multi["variants"]) == {"1", "2_best", "2_fuse", "2_fuse_probes"}
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["multi_sample"]["face"]["2"] == multi
    from engine.evaluate import _summary_text

    text = _summary_text(doc)
    assert "face multi-sample enrolment, 1 to 2 samples: 2 subjects" in text and "2_fuse" in text
    assert "engine 1:N FPIR / FNIR" in text and "single-sample" in text
