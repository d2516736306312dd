"""Figures computed from raw bench records (never measured here, only derived)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["compute_figures"]


def _pct_ms(lat: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(lat) * 1e3, q)) if lat else None


def _recall(labels: list[list[int]], ref: list[list[int]], k: int) -> float | None:
    n = min(len(labels), len(ref))
    if n == 0:
        return None
    hits = []
    for j in range(n):
        truth = {x for x in ref[j][:k] if x >= 0}
        hits.append(len(set(labels[j][:k]) & truth) / max(1, len(truth)))
    return float(np.mean(hits))


def _mate_hit(labels: list[list[int]], mate: list[int]) -> float | None:
    mated = [j for j in range(min(len(labels), len(mate))) if mate[j] >= 0]
    if not mated:
        return None
    return float(np.mean([bool(labels[j]) and labels[j][0] == mate[j] for j in mated]))


def compute_figures(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` as written by ``nasname bench`` (``records``, ``grid``, ``machine``) -> figures:
    ``runs`` (one row per family/size/contender) and ``extraction`` (median ms per stage)."""
    records = raw["records"]
    datasets = {(r["family"], r["size"]): r for r in records if r["type"] == "dataset"}
    reference = dict(raw["grid"]["reference"])
    by_key = {(r["family"], r["size"], r["contender"]): r for r in records if r["type"] == "run"}
    rows = []
    for r in records:
        if r["type"] != "run":
            continue
        row: dict[str, Any] = {k: r[k] for k in ("family", "size", "contender", "role", "approximate",
                                                  "status", "note")}
        if r["status"] == "ok":
            ds = datasets[(r["family"], r["size"])]
            ref = by_key.get((r["family"], r["size"], reference.get(r["family"], "")))
            lat = r["single_latencies_s"]
            conc = r["concurrent"]
            growth = r["rss_growth_bytes"]
            row.update(
                p50_ms=_pct_ms(lat, 50), p99_ms=_pct_ms(lat, 99), queries=len(lat),
                qps_single=len(lat) / sum(lat) if lat else None,
                qps_concurrent=conc["queries"] / conc["wall_s"] if conc["wall_s"] > 0 else None,
                callers=conc["callers"], concurrent_queries=conc["queries"],
                concurrent_p50_ms=_pct_ms(conc["latencies_s"], 50),
                concurrent_p99_ms=_pct_ms(conc["latencies_s"], 99),
                recall_at_k=(_recall(r["labels"], ref["labels"], r["k"])
                             if ref is not None and ref.get("status") == "ok" else None),
                recall_reference=reference.get(r["family"]),
                mate_rank1=_mate_hit(r["labels"], ds["mate"]),
                build_s=r["fit_s"], enroll_per_s=r["size"] / r["fit_s"] if r["fit_s"] > 0 else None,
                rss_bytes_per_template=growth / r["size"] if growth > 0 else None,
                snapshot_bytes_per_template=(r["snapshot_bytes"] / r["size"] if "snapshot_bytes" in r
                                             else None),
                open_s=r.get("open_s"),
            )
        rows.append(row)
    extraction = []
    for r in records:
        if r["type"] != "extraction":
            continue
        e = {k: r[k] for k in ("kind", "status", "note", "images")}
        if r["status"] == "ok":
            e["median_total_ms"] = float(np.median(r["total_ms"])) if r["total_ms"] else None
            e["median_stage_ms"] = {s: float(np.median(v)) for s, v in r["stage_ms"].items()}
        extraction.append(e)
    other = []
    for r in records:
        if r["type"] != "gallery":
            continue
        g = dict(r)
        if r["status"] == "ok":
            g["enroll_per_s"] = r["size"] / r["insert_s"] if r["insert_s"] > 0 else None
            g["disk_bytes_per_record"] = r["disk_bytes"] / r["size"]
        other.append(g)
    return {"runs": rows, "extraction": extraction, "gallery": other, "accuracy": raw.get("accuracy", []),
            "datasets": [{k: v for k, v in d.items() if k != "mate"} for d in datasets.values()]}
