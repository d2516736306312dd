"""What people and machines read: verdicts in words, exit codes, JSON with every field."""

from __future__ import annotations

import json

from server import output
from server._gen.nasname.v1 import nasname_pb2 as pb

T = pb.Threshold(target_fpir=0.003, gallery_size=10, fused_threshold=6.66)


def test_verify_no_match_is_a_verdict_with_score_threshold_and_its_own_exit_code() -> None:
    r = pb.VerifyResponse(reference_id="P1", match=False, fused=4.6712, threshold=T,
                          scores=[pb.ModalityScore(modality=pb.MODALITY_FACE, similarity=0.41234,
                                                   llr=4.6712)])
    shown = output.render(r)
    assert shown.code == output.EXIT_NO_MATCH
    assert shown.text.splitlines()[0] == "NO MATCH: P1, fused score 4.67 < threshold 6.66 (target FMR 0.3%)"
    assert "0.412" in shown.text and "0.41234" not in shown.text


def test_identify_without_candidates_says_so() -> None:
    shown = output.render(pb.IdentifyResponse(threshold=T))
    assert shown.code == output.EXIT_NO_MATCH
    assert "no candidate above the threshold (gallery 10, FPIR 0.3%" in shown.text


def test_enroll_outcomes_in_words() -> None:
    enrolled = output.render(pb.EnrollResponse(reference_id="N1", outcome=pb.ENROLL_OUTCOME_ENROLLED,
                                               threshold=T))
    assert enrolled.code == 0 and enrolled.text.startswith("ENROLLED N1: no candidate above the threshold")
    held = output.render(pb.EnrollResponse(
        reference_id="N2", outcome=pb.ENROLL_OUTCOME_PENDING_ADJUDICATION, threshold=T,
        candidates=[pb.Candidate(reference_id="P1", partition="camp-a", fused=9.0)]))
    assert held.code == 0 and held.text.startswith("POSSIBLE DUPLICATE (pending adjudication): N2")


def test_json_keeps_false_and_zero_fields_numbers_and_decodes_summaries() -> None:
    data = json.loads(output.to_json(pb.VerifyResponse(reference_id="P1", match=False, threshold=T)))
    assert data["match"] is False and data["fused"] == 0 and data["threshold"]["gallery_size"] == 10
    data = json.loads(output.to_json(pb.GetDedupResultResponse(job_id="j", summary_json='{"pairs": 3}')))
    assert data["summary"] == {"pairs": 3} and "summary_json" not in data
    assert json.loads(output.to_json(pb.IdentifyResponse(threshold=T)))["candidates"] == []


def test_times_are_iso_8601_with_utc() -> None:
    assert output.timestamp(0) == "-"
    assert "2021-01-01T00:00:00Z" in output.timestamp(1609459200.25)


def test_table_aligns_columns_and_right_aligns_numbers() -> None:
    lines = output.table(["name", "n"], [["a", 5], ["bbb", 120]]).splitlines()
    assert lines == ["name    n", "----  ---", "a       5", "bbb   120"]


def test_a_photo_with_several_faces_names_the_face_used() -> None:
    q = pb.Quality(score=0.8, ok=True, reasons=["MULTIPLE_FACES"],
                   measures={"faces_found": 2, "face_box_x": 260, "face_box_y": 140, "face_box_w": 92,
                             "face_box_h": 92, "face_share": 0.0276})
    r = pb.EnrollResponse(reference_id="N1", outcome=pb.ENROLL_OUTCOME_ENROLLED, threshold=T,
                          samples=[pb.SampleResult(modality=pb.MODALITY_FACE, quality=q)])
    text = output.render(r).text
    assert "more than one face: photograph the person alone" in text
    assert "used 1 of 2 faces: box x=260 y=140 w=92 h=92, 3% of the image" in text


def test_several_frames_say_which_were_not_used() -> None:
    ok = pb.Quality(score=0.8, ok=True)
    refused = pb.Quality(score=0.0, ok=False, reasons=["NO_FACE"], instructions=["show the whole face"])
    r = pb.EnrollResponse(reference_id="N2", outcome=pb.ENROLL_OUTCOME_ENROLLED, threshold=T, samples=[
        pb.SampleResult(modality=pb.MODALITY_FACE, quality=ok, use=pb.SAMPLE_USE_USED),
        pb.SampleResult(modality=pb.MODALITY_FACE, quality=refused, use=pb.SAMPLE_USE_REFUSED,
                        error_reason="NO_BIOMETRIC_FOUND"),
        pb.SampleResult(modality=pb.MODALITY_FACE, quality=ok, use=pb.SAMPLE_USE_NOT_SELECTED)])
    lines = output.render(r).text.splitlines()[-3:]
    assert "not used" not in lines[0]
    assert "POOR" in lines[1] and "REFUSED, not used (another frame was usable)" in lines[1]
    assert lines[2].endswith("not used: another frame was better")
