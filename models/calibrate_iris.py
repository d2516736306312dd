"""Measure the iris pipeline on the shared real images and record its calibration distributions.

    .venv/bin/python models/calibrate_iris.py [--shared ../shared/data] [--json results.json]

For CASIA-IrisV1 (54 eyes x 7) and MMU2 (99 eyes x 5): FTE, EER, FNMR at FMR 1e-2/1e-3/1e-4 (all-vs-all
within each set, protocol in ``engine.iris.dataset_eval``). The genuine and impostor similarities of
both sets together are written with ``engine.calibration.save_distributions`` to
``engine/calibration_data/<model_id>@<version>.json`` (numbers only, never images).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.calibration import save_distributions  # noqa: E402
from engine.fusion import calibration_summary  # noqa: E402
from engine.iris.dataset_eval import evaluate, read_manifest  # noqa: E402
from engine.iris.extractor import IrisExtractor  # noqa: E402

DATASETS = ("casia1", "mmu2")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, help="also write the summary figures here")
    ap.add_argument("--no-save", action="store_true", help="measure only, do not write calibration data")
    args = ap.parse_args(argv)
    extractor = IrisExtractor.default()
    results = [evaluate(extractor, read_manifest(args.shared, name), name) for name in DATASETS]
    summaries = [r.summary() for r in results]
    for s in summaries:
        print(json.dumps(s, indent=None, default=float))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2, default=float) + "\n")
    if not args.no_save:
        source = "; ".join(
            f"{r.name}: {r.images} images, {r.failures} FTE, {r.genuine.size} genuine / {r.impostor.size} "
            "impostor all-vs-all pairs" for r in results)
        path = save_distributions(
            extractor.model, "iris",
            np.concatenate([r.genuine for r in results]), np.concatenate([r.impostor for r in results]),
            source=f"shared/data iris (CASIA-IrisV1 + MMU2), matcher max_shift 15: {source}",
            command="python models/calibrate_iris.py",
        )
        print(f"wrote {path}")
        for line in calibration_summary(extractor.model):  # what the engine makes of it
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
