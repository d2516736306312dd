"""An incoming batch: a folder of images and a CSV ``reference_id,modality,path[,attributes...]``.

One row is one sample; rows sharing a ``reference_id`` form one record (its face and irises); extra
columns are the record's attributes (first row wins). ``path`` is relative to the folder (default: the
CSV's folder), like the evaluation manifests (``engine.evaluation.manifest``); that reader stops at the
first bad row, which suits an evaluation but not an investigator's batch, hence this one.

Every bad row is reported with its line number and a stable reason code, and the job goes on with the
good rows: ``EMPTY_REFERENCE_ID``, ``UNKNOWN_MODALITY``, ``DUPLICATE_ID`` (the same reference id and
modality twice; the later row is dropped), ``MISSING_FILE``, ``PATH_OUTSIDE_FOLDER``, ``BAD_IMAGE``
(undecodable or too large), ``NO_SAMPLE`` / ``QUALITY_REJECTED`` (the extractor found nothing usable),
``MODEL_MISMATCH``. Nothing of the image or template is logged.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import AcquisitionFailed, InvalidInput, ModelMismatch, SampleRejected
from engine.extractor import Extractor
from engine.fsutil import open_private
from engine.types import Modality, ModelRef, Template

__all__ = ["COLUMNS", "BatchRecord", "RowError", "read_batch", "write_errors"]

log = logging.getLogger(__name__)

COLUMNS = ("reference_id", "modality", "path")
MAX_IMAGE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class RowError:
    """One rejected manifest row (``line`` = 1-based line in the CSV, header = line 1)."""

    line: int
    reference_id: str
    modality: str
    path: str
    reason: str
    message: str


@dataclass
class BatchRecord:
    reference_id: str
    attributes: dict[str, str]
    templates: dict[Modality, Template] = field(default_factory=dict)


ExtractorFor = Callable[[str], Extractor]


def _default_extractor(kind: str) -> Extractor:
    from engine.extractors import load_extractor

    return load_extractor(kind)


def read_batch(
    manifest: Path,
    *,
    folder: Path | None = None,
    extractor_for: ExtractorFor | None = None,
    models: dict[Modality, ModelRef] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[BatchRecord], list[RowError]]:
    """Records with at least one good sample (manifest order), and the per-row errors.

    ``models``: the gallery's model per modality; a template of another model is a row error.
    Raises ``InvalidInput`` only when the file itself is unreadable or lacks the required columns."""
    folder = (folder or manifest.parent).resolve()
    get = extractor_for or _default_extractor
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"cannot read manifest {manifest}: {exc}", reason="INVALID_MANIFEST") from exc
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InvalidInput(
            f"manifest {manifest} lacks column(s) {', '.join(missing)}; expected "
            f"{','.join(COLUMNS)}[,attributes...]",
            reason="INVALID_MANIFEST",
        )
    records: dict[str, BatchRecord] = {}
    errors: list[RowError] = []
    seen: set[tuple[str, str]] = set()
    for line, raw in enumerate(rows, start=2):
        row = {str(k).strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        ref, mod, rel = row.get("reference_id", ""), row.get("modality", ""), row.get("path", "")

        def fail(
            reason: str, message: str, ref: str = ref, mod: str = mod, rel: str = rel, line: int = line
        ) -> None:
            errors.append(RowError(line, ref, mod, rel, reason, message))

        if progress is not None:
            progress(1)
        if not ref:
            fail("EMPTY_REFERENCE_ID", "reference_id is empty")
            continue
        try:
            modality = Modality.parse(mod)
        except InvalidInput:
            fail(
                "UNKNOWN_MODALITY",
                f"unknown modality {mod!r}; expected one of {', '.join(m.value for m in Modality)}",
            )
            continue
        if (ref, modality.value) in seen:
            fail("DUPLICATE_ID", f"{ref} already has a {modality.value} sample on an earlier row")
            continue
        seen.add((ref, modality.value))
        path = (folder / rel).resolve()
        if not rel or not path.is_relative_to(folder):
            fail("PATH_OUTSIDE_FOLDER", "path is empty or leaves the batch folder")
            continue
        if not path.is_file():
            fail("MISSING_FILE", "file not found")
            continue
        try:
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise InvalidInput("file larger than 32 MiB")
            extraction = get(modality.kind).extract(path.read_bytes())
        except (AcquisitionFailed, SampleRejected) as exc:
            fail("NO_SAMPLE", f"no usable {modality.kind} sample: {exc.message}")
            continue
        except (InvalidInput, OSError) as exc:
            fail("BAD_IMAGE", f"image unusable: {exc}")
            continue
        if not extraction.quality.ok:
            fail(
                "QUALITY_REJECTED",
                "quality check failed: " + ",".join(r.value for r in extraction.quality.reasons),
            )
            continue
        expected = (models or {}).get(modality)
        if expected is not None and extraction.template.model != expected:
            fail("MODEL_MISMATCH", f"template of {extraction.template.model}; the gallery uses {expected}")
            continue
        rec = records.get(ref)
        if rec is None:
            attrs = {k: v for k, v in row.items() if k not in COLUMNS and v}
            rec = records[ref] = BatchRecord(ref, attrs)
        rec.templates[modality] = extraction.template
    if errors:
        log.warning("manifest: %d row(s) rejected, %d record(s) kept", len(errors), len(records))
    return list(records.values()), errors


def write_errors(path: Path, errors: list[RowError]) -> None:
    """The per-row error report as CSV (line, reference_id, modality, path, reason, message)."""
    with open_private(path, newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["line", "reference_id", "modality", "path", "reason", "message"])
        for e in errors:
            w.writerow([e.line, e.reference_id, e.modality, e.path, e.reason, e.message])


def check_models(records: list[BatchRecord]) -> None:
    """Refuse a batch mixing models within one modality (``ModelMismatch``)."""
    seen: dict[Modality, ModelRef] = {}
    for r in records:
        for m, t in r.templates.items():
            if seen.setdefault(m, t.model) != t.model:
                raise ModelMismatch(f"{m.value} samples of the batch come from two models")
