"""Presentation of bench figures: terminal table, PNG plots, Markdown report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display on servers
import matplotlib.pyplot as plt

__all__ = ["markdown", "plots", "terminal_table"]

COLUMNS = (
    ("N", "size", "{:,}"), ("contender", "contender", "{}"), ("p50 ms", "p50_ms", "{:.3f}"),
    ("p99 ms", "p99_ms", "{:.3f}"), ("q/s 1", "qps_single", "{:,.0f}"),
    ("q/s 32", "qps_concurrent", "{:,.0f}"),
    ("recall@k", "recall_at_k", "{:.3f}"), ("mate@1", "mate_rank1", "{:.3f}"),
    ("enroll/s", "enroll_per_s", "{:,.0f}"), ("B/tmpl RSS", "rss_bytes_per_template", "{:,.0f}"),
    ("B/tmpl snap", "snapshot_bytes_per_template", "{:,.0f}"), ("open s", "open_s", "{:.3f}"),
)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    if fmt == "{:,.0f}" and 0 < abs(v) < 10:
        return f"{v:.2f}"  # slow contenders: 0.35 q/s must not print as 0
    return fmt.format(v)


def _rows(figures: dict[str, Any], family: str) -> list[dict[str, Any]]:
    return [r for r in figures["runs"] if r["family"] == family]


def terminal_table(figures: dict[str, Any]) -> str:
    lines = []
    for family in ("face", "iris"):
        rows = _rows(figures, family)
        if not rows:
            continue
        lines.append(f"== {family} ==")
        table = [[h for h, _, _ in COLUMNS]]
        for r in rows:
            if r["status"] != "ok":
                table.append([f"{r['size']:,}", r["contender"], f"{r['status']}: {r['note'][:60]}"])
                continue
            table.append([_cell(r, k, f) for _, k, f in COLUMNS])
        widths = [max(len(t[i]) for t in table if i < len(t) and len(t) == len(COLUMNS))
                  for i in range(len(COLUMNS))]
        for t in table:
            if len(t) == len(COLUMNS):
                lines.append("  ".join(c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in
                                       enumerate(zip(t, widths, strict=True))))
            else:
                lines.append(f"{t[0].rjust(widths[0])}  {t[1].ljust(widths[1])}  {t[2]}")
    for e in figures["extraction"]:
        if e["status"] == "ok":
            stages = ", ".join(f"{k} {v:.1f}" for k, v in e["median_stage_ms"].items())
            lines.append(f"extraction {e['kind']}: median {e['median_total_ms']:.1f} ms/image "
                         f"({e['images']} images; stages ms: {stages or 'not reported'})")
        else:
            lines.append(f"extraction {e['kind']}: {e['status']} ({e['note']})")
    for g in figures["gallery"]:
        lines.append(_gallery_line(g))
    return "\n".join(lines)


def plots(figures: dict[str, Any], out: Path) -> list[Path]:
    paths = []
    for family in ("face", "iris"):
        rows = [r for r in _rows(figures, family) if r["status"] == "ok"]
        if not rows:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(16, 5))
        for name in dict.fromkeys(r["contender"] for r in rows):
            rs = sorted((r for r in rows if r["contender"] == name), key=lambda r: r["size"])
            n = [r["size"] for r in rs]
            style = "-" if rs[0]["role"] == "engine" else "--"
            axes[0].plot(n, [r["p50_ms"] for r in rs], style, marker="o", label=name)
            axes[1].plot(n, [r["qps_single"] for r in rs], style, marker="o", label=name)
            axes[2].plot(n, [r["qps_concurrent"] for r in rs], style, marker="o", label=name)
        for ax, title in zip(axes, ("p50 latency (ms), 1 request", "queries/s, 1 caller",
                                    f"queries/s, {rows[0]['callers']} callers"), strict=True):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("gallery size N")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{family} identify (synthetic templates; dashed = baseline)")
        fig.tight_layout()
        path = out / f"bench_{family}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _md_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    head = ["N", "contender", "role", "p50 ms", "p99 ms", "q/s (1)", "q/s (32)", "recall@k", "mate@1",
            "enroll/s", "B/tmpl RSS", "B/tmpl snapshot", "open s"]
    keys = ["size", "contender", "role", "p50_ms", "p99_ms", "qps_single", "qps_concurrent", "recall_at_k",
            "mate_rank1", "enroll_per_s", "rss_bytes_per_template", "snapshot_bytes_per_template", "open_s"]
    fmt = dict((k, f) for _, k, f in COLUMNS) | {"role": "{}"}
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['size']:,} | {r['contender']} | {r['role']} | {r['status']}: "
                         f"{r['note'][:100]} |" + " |" * (len(head) - 4))
            continue
        lines.append("| " + " | ".join(_cell(r, k, fmt[k]) for k in keys) + " |")
    return lines


def markdown(raw: dict[str, Any], figures: dict[str, Any], command: str, plot_names: list[str]) -> str:
    m = raw["machine"]
    g = raw["grid"]
    mem = f"{m['memory_bytes'] / 2**30:.1f} GiB" if m.get("memory_bytes") else "unknown"
    out = [
        "# nasname benchmarks",
        "",
        f"Generated by `{command}` on {raw['started_utc']} (grid `{g['name']}`, {raw['seconds']:.0f} s).",
        f"Raw observations: `bench_raw.json` in the run's output directory ({raw.get('out', 'see --out')}); "
        "figures computed from them: `bench_figures.json`. `nasname bench --from-raw bench_raw.json` "
        "recomputes figures and this report without measuring again.",
        "",
        "## Machine",
        f"- CPU: {m['cpu_model']}, {m['cpus']} logical CPUs (threads/core {m.get('threads_per_core')}, "
        f"hypervisor {m.get('hypervisor') or 'none'}), memory {mem}",
        f"- Python {m['python']} on {m['platform']}; load average at start {m['load_average_at_start']}"
        f", at end {raw.get('load_average_at_end', 'not recorded')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        "",
        "Timings on a shared, busy machine are noisy: latencies are medians (p50) and 99th percentiles",
        "over the queries run (p99 of fewer than 100 queries is the maximum, not a stable tail).",
        "",
        "## What is measured",
        f"- Identify: top-{g['k']} search for one query at a time (latency p50/p99, q/s (1)) and "
        f"{g['callers']} threads issuing queries at once (q/s (32)), up to {g['queries']} single queries "
        f"or {g['budget_s']} s per contender and size.",
        "- Every engine option runs in the same process and the same run as its baselines: "
        "numpy brute force, FAISS with default settings, and (approximate search) FAISS HNSW and hnswlib "
        "with their defaults. `recall@k` is measured against the exact reference "
        f"({', '.join(f'{k}: {v}' for k, v in g['reference'])}); `mate@1` = share of mated queries whose "
        "planted mate is the top result.",
        "- enroll/s = gallery size / build time (engine rows include making template objects); B/tmpl RSS = "
        "resident memory growth during the build / N (noisy); B/tmpl snapshot and open s = engine index "
        "snapshot size / N and the time to load it (the index part of opening a gallery). numpy rows build "
        "nothing (an array copy), so their enroll/s only says there is no build step.",
        "- recall@k on isotropic random vectors is the hardest case for approximate indexes (the k nearest "
        "impostors are barely nearer than the rest); mate@1 is the figure that matters for de-duplication.",
        f"- Face: synthetic {g['face_dim']}-d unit vectors; iris: {g['iris_nbytes']}-byte codes of "
        f"{g['iris_columns']} columns with masks. Planted mates mimic genuine score ranges "
        "(measured below).",
        "",
        "### Synthetic data",
        "Similarities of the planted mates (genuine) and of non-mated queries (impostor): face cosine; "
        "iris 1 - fractional Hamming distance (not normalised), best of +-15 columns.",
        "",
        "| family | N | queries | generator | genuine mean (sd) | impostor mean (sd) |",
        "|---|---|---|---|---|---|",
    ]
    for d in figures["datasets"]:
        s = d["scores"]

        def ms(x: Any) -> str:
            return f"{x['mean']:.3f} ({x['std']:.3f})" if x else "-"

        out.append(f"| {d['family']} | {d['size']:,} | {d['queries']} | {d['generator']} | "
                   f"{ms(s['genuine'])} | {ms(s['impostor'])} |")
    for family in ("face", "iris"):
        rows = _rows(figures, family)
        if rows:
            out += ["", f"## {family.capitalize()} identify", "", *_md_table(rows)]
            if f"bench_{family}.png" in plot_names:
                out += ["", f"![{family}](bench_{family}.png)"]
    out += ["", "## Extraction time per stage (real images)", ""]
    for e in figures["extraction"]:
        if e["status"] != "ok":
            out.append(f"- {e['kind']}: {e['status']} — {e['note']}")
            continue
        stages = ", ".join(f"{k} {v:.1f} ms" for k, v in e["median_stage_ms"].items()) or "not reported"
        out.append(f"- {e['kind']}: median {e['median_total_ms']:.1f} ms per image over {e['images']} "
                   f"images ({stages})")
    out += accuracy_section(figures.get("accuracy", []))
    out += ["", "## Gallery: durable enroll and open (engine.gallery, face, synthetic templates)", ""]
    out += [f"- {_gallery_line(g)}" for g in figures["gallery"]]
    return "\n".join(out) + "\n"


def _gallery_line(g: dict[str, Any]) -> str:
    if g["status"] != "ok":
        return f"gallery: {g['status']} ({g['note']})"
    return (f"gallery N={g['size']:,}: enroll {g['enroll_per_s']:,.0f} records/s (one SQLite commit each), "
            f"open from snapshot {g['open_snapshot_s']:.2f} s, open by rebuild from the store "
            f"{g['open_rebuild_s']:.2f} s, snapshot on close {g['close_snapshot_s']:.2f} s, "
            f"disk {g['disk_bytes_per_record']:,.0f} B/record")


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def accuracy_section(docs: Sequence[dict[str, Any]]) -> list[str]:
    """Accuracy figures of ``nasname evaluate`` runs (real images), with the counts behind each."""
    if not docs:
        return []
    out = ["", "## Accuracy (nasname evaluate, real images)", "",
           "Headline rates are *generalised*: a sample that gives no template counts as a miss "
           "(FNMR/FNIR) and never as a false match; `matcher-only EER` leaves those pairs out. "
           "An FNMR/FNIR at a target rate is `n/a` when there are too few non-mated attempts to "
           "measure it (rule of 3: at least 3/target).", "",
           "| data | modality | samples | FTE | FTA | EER | matcher-only EER | FNMR @ FMR 1e-2 / 1e-3 / 1e-4 "
           "| FNIR @ FPIR 0.01 / 0.003 / 0.001 | rank-1 | rank-10 | genuine / impostor pairs "
           "| mated / non-mated searches |",
           "|" + "---|" * 13]
    notes: list[str] = []
    for d in docs:
        inputs = d.get("inputs", {})
        where = str(inputs.get("manifest") or inputs.get("rescored_from") or d["source"])
        name = " + ".join(Path(part).name for part in where.split(" + "))
        if inputs.get("limit"):
            name += f" (first {inputs['limit']} subjects)"
        for kind, f in d["per_modality"].items():
            if "eer" not in f:
                out.append(f"| {name} | {kind} | {f.get('note', 'not available')} |" + " |" * 10)
                continue
            fnmr = " / ".join(_pct(p["fnmr"]) for p in f["fnmr_at_fmr"])
            fnir = " / ".join(_pct(p["fnir"]) for p in f["fnir_at_fpir"])
            c, s = f["comparisons"], f["searches"]
            matcher_eer = f.get("matcher_only", {}).get("eer", {}).get("eer")
            cal = ", ".join(f"{k} {v}" for k, v in f.get("calibration", {}).items())
            label = kind if kind != "fused" else f"fused (calibration: {cal or 'not recorded'})"
            out.append(
                f"| {name} | {label} | {f['samples']:,} | {_pct(f['fte_rate'])} | {_pct(f['fta_rate'])} "
                f"| {_pct(f['eer']['eer'])} | {_pct(matcher_eer)} | {fnmr} | {fnir} "
                f"| {_pct(f['rank1_hit_rate']['rate'])} | {_pct(f['rank10_hit_rate']['rate'])} "
                f"| {c['genuine']:,} / {c['impostor']:,} "
                f"| {s['mated_searches']:,} / {s['nonmated_searches']:,} |")
        notes.append(f"- {name}: `{inputs.get('command', 'command not recorded')}`")
        for kind, acc in d.get("verification_accuracy", {}).items():
            limit = acc.get("pairs_per_fold_limit")
            scope = f"first {limit} same + {limit} different pairs per fold" if limit else "all pairs"
            notes.append(f"  - {kind} pairs ({scope}): k-fold accuracy {100 * acc['mean']:.2f} % "
                         f"+- {100 * acc['std']:.2f} over {acc['folds']} folds, {acc['n_pairs']} pairs, "
                         f"{acc.get('failed_pairs', 0)} with a failed image")
    out += ["", "Commands:", *notes]
    return out
