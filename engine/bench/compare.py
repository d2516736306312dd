"""Differences between two bench runs (same family, size and contender): what changed since the last
version, on the same machine. Ratios > 1 in q/s are faster; in p50 they are slower."""

from __future__ import annotations

from typing import Any

__all__ = ["compare_rows", "compare_section"]

KEYS = ("p50_ms", "qps_single", "qps_concurrent", "recall_at_k", "mate_rank1")


def compare_rows(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run present and ok in both figure sets: old and new value and new/old ratio."""
    before = {(r["family"], r["size"], r["contender"]): r for r in old["runs"] if r["status"] == "ok"}
    rows = []
    for r in new["runs"]:
        key = (r["family"], r["size"], r["contender"])
        o = before.get(key)
        if r["status"] != "ok" or o is None:
            continue
        row: dict[str, Any] = {"family": key[0], "size": key[1], "contender": key[2]}
        for k in KEYS:
            a, b = o.get(k), r.get(k)
            row[k] = {"old": a, "new": b, "ratio": (b / a) if a and b is not None else None}
        rows.append(row)
    return rows


def compare_section(rows: list[dict[str, Any]], old_label: str) -> list[str]:
    if not rows:
        return ["", f"## Compared with {old_label}", "", "No run in common (family, size, contender)."]
    out = ["", f"## Compared with {old_label}", "",
           "new / old ratio: p50 > 1 is slower; q/s > 1 is faster; recall and mate@1 show old -> new.", "",
           "| family | N | contender | p50 | q/s (1) | q/s (32) | recall@k | mate@1 |", "|" + "---|" * 8]
    for r in rows:
        out.append(f"| {r['family']} | {r['size']:,} | {r['contender']} | {_ratio(r['p50_ms'])} "
                   f"| {_ratio(r['qps_single'])} | {_ratio(r['qps_concurrent'])} "
                   f"| {_change(r['recall_at_k'])} | {_change(r['mate_rank1'])} |")
    return out


def _ratio(cell: dict[str, Any]) -> str:
    v = cell["ratio"]
    return "-" if v is None else f"{v:.2f}x"


def _change(cell: dict[str, Any]) -> str:
    a, b = cell["old"], cell["new"]
    return "-" if a is None or b is None else f"{a:.3f} -> {b:.3f}"
