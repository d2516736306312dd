"""What the ``nasname`` command prints: verdicts in words, aligned tables, ISO-8601 times, rounded scores.

Every client command's reply goes through :func:`render` (for people, the default) or :func:`to_json`
(``--json``: protobuf field names, false/zero/empty fields included, numbers as numbers, nested JSON
strings decoded). Exit codes are one table (:data:`EXIT_CODES`) shown in every ``--help``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from server._gen.nasname.v1 import nasname_pb2 as pb

__all__ = [
    "ERROR_INSTRUCTIONS",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_NO_MATCH",
    "EXIT_OK",
    "EXIT_USAGE",
    "Rendered",
    "instruction_for",
    "render",
    "table",
    "timestamp",
    "to_json",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_MATCH = 0, 1, 2, 3
EXIT_CODES = (
    "exit codes: 0 success (for enroll also POSSIBLE DUPLICATE, which is held for adjudication);\n"
    "  1 error (refused sample, server or connection problem; the message says what to do);\n"
    "  2 usage (wrong options); 3 NO MATCH (verify) or no candidate above the threshold (identify)")

# Quality reason -> what the clerk does about it (engine.types.QualityReason).
_INSTRUCTIONS = {
    "NO_FACE": "no face found: photograph the person's face, facing the camera",
    "MULTIPLE_FACES": "more than one face: photograph the person alone",
    "FACE_TOO_SMALL": "face too small: come closer or zoom in",
    "BLURRED": "blurred: hold the camera still and focus",
    "TOO_DARK": "too dark: add light",
    "TOO_BRIGHT": "too bright: avoid direct light on the face",
    "LOW_CONTRAST": "low contrast: use even light",
    "EXTREME_POSE": "head turned or tilted: face the camera",
    "LOW_DETECTOR_CONFIDENCE": "face unclear: retake the photo",
    "NO_IRIS": "no iris found: retake with the eye open and centred",
    "UNRELIABLE_BOUNDARY": "iris boundary unclear: retake in focus",
    "OCCLUDED": "iris covered: ask the person to open the eye wider",
    "PUPIL_RATIO_OUT_OF_RANGE": "pupil size unusual: retake in steady light",
    "IRIS_TOO_SMALL": "iris too small: move the camera closer",
    "OFF_AXIS": "gaze off axis: ask the person to look into the camera",
}
ERROR_INSTRUCTIONS = {
    "INVALID_IMAGE": "the file is not a readable image: capture again",
    "IMAGE_TOO_LARGE": "the image is too large: send a smaller image",
    "REFERENCE_ID_EXISTS": "this reference id is already enrolled: use another id or `nasname get --id`",
    "REFERENCE_ID_NOT_FOUND": "no such reference id: check it with `nasname records`",
    "MODEL_MISMATCH": "the template's model differs from the gallery's: send images instead",
    "VERIFICATION_NEEDED": "capture the other modalities named above and pass them with --verify-face / "
                           "--verify-iris-left / --verify-iris-right",
    "MISSING_MATE": "name the enrolled record this person already is with --mate ID (see `nasname pending`)",
    "NOT_PENDING": "this record waits for no decision: see `nasname get --id` for its history",
    "BIOMETRICS_ERASED": "a 'same' decision erased the biometrics: enroll the person again if it was wrong",
    "ALREADY_ADJUDICATED": "the record was decided before: an admin can reopen it "
                           "(`nasname reopen --id ... --reason ...`)",
}


class Rendered:
    """Text for people plus the exit code the outcome deserves."""

    def __init__(self, text: str, code: int = EXIT_OK) -> None:
        self.text, self.code = text, code


# -- small formatters --------------------------------------------------------------------------------

def timestamp(seconds: float) -> str:
    """ISO-8601 local time and, when it differs, UTC: ``2026-12-04T19:42:01+01:00 (18:42:01Z)``;
    ``-`` for 0 (never)."""
    if not seconds:
        return "-"
    utc = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)
    local = utc.astimezone()
    if local.utcoffset() == dt.timedelta(0):
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{local.isoformat()} ({utc.strftime('%Y-%m-%dT%H:%M:%SZ')})"


def score(value: float, digits: int = 2) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def rate(value: float) -> str:
    """A small probability as people read it: 0.003 -> '0.3%', 1e-06 -> '1e-06'."""
    return f"{value:.2g}" if 0 < value < 1e-4 else f"{value * 100:.3g}%"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns (numbers right-aligned), a rule under the header."""
    cells = [[str(c) for c in row] for row in rows]
    numeric = [all(_is_number(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%"))
    except ValueError:
        return False
    return True


def _modality(value: int) -> str:
    return pb.Modality.Name(value).removeprefix("MODALITY_").lower()


def _status(value: int) -> str:
    return pb.RecordStatus.Name(value).removeprefix("RECORD_STATUS_").lower()


def _decision(value: int) -> str:
    return pb.AdjudicationDecision.Name(value).removeprefix("ADJUDICATION_DECISION_").lower()


def instruction_for(reasons: Iterable[str]) -> str:
    """The clerk's instructions for quality reason codes, joined ('; ')."""
    return "; ".join(_INSTRUCTIONS.get(r, r.lower().replace("_", " ")) for r in reasons if r)


# -- JSON for machines -------------------------------------------------------------------------------

def to_json(msg: Message) -> str:
    """Protobuf field names, every field present (false, 0, empty), 64-bit counts as numbers, and
    ``summary_json`` strings decoded into a ``summary`` object (no JSON inside JSON)."""
    data = json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    return json.dumps(_numbers(data), indent=2, ensure_ascii=False)


def _numbers(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "summary_json" and isinstance(v, str):
                out["summary"] = json.loads(v) if v else {}
            else:
                out[k] = _numbers(v)
        return out
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)  # proto3 JSON writes (u)int64 as strings; these fields hold counts
    return value


# -- text for people ---------------------------------------------------------------------------------

# what became of a sample when its modality came with several (nothing said for the one used)
_SAMPLE_USE = {pb.SAMPLE_USE_NOT_SELECTED: "  - not used: another frame was better",
               pb.SAMPLE_USE_REFUSED: "  - REFUSED, not used (another frame was usable)"}


def _samples(samples: Sequence[pb.SampleResult]) -> list[str]:
    lines = []
    for s in samples:
        model = f"{s.model.model_id}@{s.model.version}" if s.model.model_id else "-"
        if not s.HasField("quality"):
            lines.append(f"  {_modality(s.modality):<10} template  model {model}")
            continue
        q = s.quality
        verdict = "ok" if q.ok else "POOR"
        line = f"  {_modality(s.modality):<10} quality {q.score:.2f} {verdict:<4}  model {model}"
        if q.reasons:
            line += f"  ({instruction_for(q.reasons)})"
        line += _SAMPLE_USE.get(s.use, "")
        lines.append(line)
        face = _face_used(q.measures)
        if face:
            lines.append(f"  {'':<10} {face}")
    return ["samples:", *lines] if lines else []


def _face_used(m: Mapping[str, float]) -> str:
    """The face the matcher used, when the photo showed more than one (engine.face quality measures)."""
    if m.get("faces_found", 1.0) <= 1.0 or "face_box_w" not in m:
        return ""
    return (f"used 1 of {int(m['faces_found'])} faces: box x={int(m['face_box_x'])} "
            f"y={int(m['face_box_y'])} w={int(m['face_box_w'])} h={int(m['face_box_h'])}, "
            f"{m.get('face_share', 0.0) * 100:.0f}% of the image")


def _threshold(t: pb.Threshold, what: str = "FPIR") -> str:
    return (f"threshold {score(t.fused_threshold)} (target {what} {rate(t.target_fpir)}, "
            f"gallery {t.gallery_size:,})")


def _candidates(cands: Sequence[pb.Candidate]) -> str:
    mods = sorted({s.modality for c in cands for s in c.scores})
    headers = ["rank", "reference id", "partition", "fused", *(_modality(m) for m in mods)]
    rows = []
    for i, c in enumerate(cands, start=1):
        by = {s.modality: s for s in c.scores}
        rows.append([i, c.reference_id, c.partition or "-", score(c.fused),
                     *(f"{by[m].similarity:.3f}" if m in by else "-" for m in mods)])
    return table(headers, rows) + "\n(fused: summed log-likelihood ratios; per modality: similarity)"


def _no_candidate(t: pb.Threshold) -> str:
    return (f"no candidate above the threshold (gallery {t.gallery_size:,}, FPIR {rate(t.target_fpir)}, "
            f"threshold {score(t.fused_threshold)})")


def enroll_text(r: pb.EnrollResponse) -> Rendered:
    if r.outcome == pb.ENROLL_OUTCOME_PENDING_ADJUDICATION:
        head = (f"POSSIBLE DUPLICATE (pending adjudication): {r.reference_id} is held, not enrolled; "
                f"{len(r.candidates)} candidate(s), {_threshold(r.threshold)}")
        body = [head, _candidates(r.candidates)]
    else:
        body = [f"ENROLLED {r.reference_id}: {_no_candidate(r.threshold)}"]
    return Rendered("\n".join(body + _samples(r.samples)))


def insert_text(r: pb.InsertResponse) -> Rendered:
    return Rendered("\n".join([f"INSERTED {r.reference_id} (no de-duplication)", *_samples(r.samples)]))


def identify_text(r: pb.IdentifyResponse) -> Rendered:
    if not r.candidates:
        return Rendered("\n".join([f"NO MATCH: {_no_candidate(r.threshold)}", *_samples(r.samples)]),
                        EXIT_NO_MATCH)
    head = f"MATCH: {len(r.candidates)} candidate(s) above the {_threshold(r.threshold)}"
    return Rendered("\n".join([head, _candidates(r.candidates), *_samples(r.samples)]))


def verify_text(r: pb.VerifyResponse) -> Rendered:
    verdict = "MATCH" if r.match else "NO MATCH"
    t = r.threshold
    relation = ">=" if r.match else "<"
    head = (f"{verdict}: {r.reference_id}, fused score {score(r.fused)} {relation} "
            f"threshold {score(t.fused_threshold)} (target FMR {rate(t.target_fpir)})")
    rows = [[_modality(s.modality), f"{s.similarity:.3f}", score(s.llr)] for s in r.scores]
    body = [head, table(["modality", "similarity", "llr"], rows)] if rows else [head]
    return Rendered("\n".join(body + _samples(r.samples)), EXIT_OK if r.match else EXIT_NO_MATCH)


def _history(entries: Sequence[pb.HistoryEntry]) -> list[str]:
    if not entries:
        return []
    rows = [[timestamp(e.time), e.event, _decision(e.decision) if e.decision else "-",
             e.mate_reference_id or "-", e.actor or "-", e.comment or "-"] for e in entries]
    return ["history:", table(["time", "event", "decision", "mate", "actor", "reason"], rows)]


def record_text(rec: pb.Record, history: Sequence[pb.HistoryEntry] = ()) -> str:
    models = ", ".join(f"{_modality(m.modality)} {m.model.model_id}@{m.model.version}" for m in rec.models)
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(rec.attributes.items()))
    lines = [f"record     {rec.reference_id}",
             f"status     {_status(rec.status).upper()}",
             f"partition  {rec.partition}",
             f"models     {models or '- (biometrics erased)'}",
             f"created    {timestamp(rec.created)}",
             f"updated    {timestamp(rec.updated)}"]
    if attrs:
        lines.append(f"attributes {attrs}")
    return "\n".join(lines + _history(history))


def stats_text(r: pb.StatsResponse) -> Rendered:
    parts = [f"{r.total:,} record(s) in the gallery",
             table(["status", "records"], sorted(r.by_status.items()))]
    if r.by_partition:
        parts.append(table(["partition", "active"], sorted(r.by_partition.items())))
    if r.by_modality:
        parts.append(table(["modality", "templates", "model"],
                           [[k, v, r.models.get(k, "-")] for k, v in sorted(r.by_modality.items())]))
    return Rendered("\n\n".join(parts))


def pending_text(r: pb.ListPendingAdjudicationsResponse) -> Rendered:
    if not r.items:
        return Rendered("no record waits for adjudication")
    rows = []
    for item in r.items:
        best = max(item.candidates, key=lambda c: c.fused, default=None)
        rows.append([item.reference_id, item.partition, timestamp(item.created), len(item.candidates),
                     best.reference_id if best else "-", score(best.fused) if best else "-",
                     len(item.decisions)])
    return Rendered(f"{len(r.items)} record(s) wait for adjudication\n" + table(
        ["reference id", "partition", "held since", "candidates", "best", "fused", "decisions"], rows))


def adjudicate_text(r: pb.AdjudicateResponse) -> Rendered:
    return Rendered(f"DECIDED: {r.record.reference_id} is now {_status(r.record.status).upper()}\n"
                    + record_text(r.record, r.history))


def records_text(r: pb.ListRecordsResponse) -> Rendered:
    if not r.records:
        return Rendered(f"no record on this page ({r.total:,} match the filters)")
    rows = [[x.reference_id, x.partition, _status(x.status),
             ",".join(_modality(m.modality) for m in x.models) or "-", timestamp(x.created)]
            for x in r.records]
    return Rendered(f"{len(r.records)} of {r.total:,} record(s) matching\n"
                    + table(["reference id", "partition", "status", "modalities", "created"], rows))


_UPDATE_VERDICT = {
    pb.UPDATE_OUTCOME_UPDATED: "UPDATED",
    pb.UPDATE_OUTCOME_NOT_VERIFIED: "NOT UPDATED: the person did not verify as this record (NO MATCH)",
    pb.UPDATE_OUTCOME_POSSIBLE_DUPLICATE: "NOT UPDATED: POSSIBLE DUPLICATE, the new sample matches "
                                          "another record",
}


def update_text(r: pb.UpdateBiometricsResponse) -> Rendered:
    head = f"{_UPDATE_VERDICT.get(r.outcome, 'UNKNOWN')}: {r.reference_id}"
    verify = verify_text(r.verification).text.splitlines()[0]
    parts = [head, f"1:1 check: {verify}"]
    if r.outcome == pb.UPDATE_OUTCOME_POSSIBLE_DUPLICATE:
        parts += [f"1:N search: {len(r.candidates)} candidate(s) above the {_threshold(r.threshold)}",
                  _candidates(r.candidates)]
    elif r.outcome == pb.UPDATE_OUTCOME_UPDATED:
        parts.append(f"1:N search: {_no_candidate(r.threshold)}")
    return Rendered("\n".join(parts + _samples(r.samples)),
                    EXIT_OK if r.outcome == pb.UPDATE_OUTCOME_UPDATED else EXIT_NO_MATCH)


def tokens_text(tokens: Sequence[pb.Token]) -> str:
    rows = [[t.token_id, t.name, t.role, timestamp(t.created), timestamp(t.last_used),
             "REVOKED " + timestamp(t.revoked) if t.revoked else "active"] for t in tokens]
    return table(["token id", "name", "role", "created", "last used", "state"], rows)


def created_token_text(r: pb.CreateTokenResponse) -> Rendered:
    return Rendered(f"CREATED token {r.token.token_id} ({r.token.name}, role {r.token.role})\n"
                    f"secret: {r.secret}\n(the secret is shown only this once)")


def _duration(seconds: float) -> str:
    if seconds < 0:
        return "unknown"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def progress_text(p: pb.DedupProgress) -> str:
    pct = f"{100 * p.done / p.total:.1f}%" if p.total else "-"
    line = (f"job {p.job_id}: {p.state.upper()} ({p.stage}) {pct} of {p.total:,} comparisons, "
            f"{p.candidates:,} candidate pair(s), elapsed {_duration(p.elapsed_s)}")
    if p.state == "running":
        line += f", remaining {_duration(p.eta_s)}"
    if p.queued >= 0:
        line += f", {p.queued:,} record(s) queued for adjudication"
    if p.message:
        line += f"\n  {p.message}"
    return line


def dedup_result_text(r: pb.GetDedupResultResponse) -> Rendered:
    summary = json.loads(r.summary_json) if r.summary_json else {}
    head = f"job {r.job_id}: {r.total_clusters:,} cluster(s) of possible duplicates"
    facts = [f"  {k.replace('_', ' ')}: {_plain(k, v)}" for k, v in summary.items()
             if isinstance(v, int | float | str) and not isinstance(v, bool) and v != ""]
    rows = [[c.cluster, f"{c.risk:.2f}", len(c.members), " ".join(m.reference_id for m in c.members),
             score(c.weakest_link.fused), "yes" if c.chained else "no"] for c in r.clusters]
    parts = [head, *facts]
    if rows:
        parts.append(table(["cluster", "risk", "size", "members", "weakest", "chained"], rows))
    return Rendered("\n".join(parts))


_TIME_WORDS = ("finished", "started", "created", "time")


def _plain(key: str, v: Any) -> str:
    if isinstance(v, float) and v > 1e9 and any(w in key for w in _TIME_WORDS):
        return timestamp(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


_RENDERERS: dict[type, Callable[[Any], Rendered]] = {
    pb.EnrollResponse: enroll_text,
    pb.InsertResponse: insert_text,
    pb.IdentifyResponse: identify_text,
    pb.VerifyResponse: verify_text,
    pb.StatsResponse: stats_text,
    pb.ListPendingAdjudicationsResponse: pending_text,
    pb.AdjudicateResponse: adjudicate_text,
    pb.CreateTokenResponse: created_token_text,
    pb.GetDedupResultResponse: dedup_result_text,
    pb.GetRecordResponse: lambda r: Rendered(record_text(r.record, r.history)),
    pb.DeleteResponse: lambda r: Rendered(f"DELETED {r.reference_id}: biometrics erased"),
    pb.ListTokensResponse: lambda r: Rendered(tokens_text(r.tokens)),
    pb.RevokeTokenResponse: lambda r: Rendered(f"REVOKED token {r.token_id}"),
    pb.StartDedupResponse: lambda r: Rendered(
        f"STARTED de-duplication job {r.job_id}\n(follow it: nasname dedup watch {r.job_id})"),
    pb.DedupStatusResponse: lambda r: Rendered(progress_text(r.progress)),
    pb.DedupProgress: lambda r: Rendered(progress_text(r)),
    pb.ListRecordsResponse: records_text,
    pb.UpdateBiometricsResponse: update_text,
    pb.ReopenCaseResponse: lambda r: Rendered(
        f"REOPENED: {r.record.reference_id} waits for adjudication again\n"
        + record_text(r.record, r.history)),
}


def render(out: Message | str) -> Rendered:
    """The people's text of a reply (strings are printed as they are)."""
    if isinstance(out, str):
        return Rendered(out)
    fn = _RENDERERS.get(type(out))
    return fn(out) if fn is not None else Rendered(to_json(out))
