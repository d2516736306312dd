"""Self-contained HTML report for reviewers (no external assets, no script): summary figures, a score
histogram with the threshold(s) as inline SVG, and the cluster list with per-modality scores, the
weakest link and the members' attributes.

Face thumbnails appear only when the caller passes ``thumbnail_of`` (a function giving a data: URI for
a gallery ref id): the caller decides whether images are stored *and* whether the reader's role may see
them; by default a report carries no image at all.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

__all__ = ["render", "thumbnail_from_store"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f2f2f2}.num{text-align:right;font-variant-numeric:tabular-nums}
.chained{background:#fff3cd}.weak{font-weight:bold;color:#a33}.adj{color:#888}
.cluster{border:1px solid #bbb;border-radius:4px;padding:.6em 1em;margin:1em 0}
.figs td{min-width:8em}img.thumb{width:72px;height:72px;object-fit:cover}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _histogram_svg(hist: dict[str, Any]) -> str:
    edges, counts = hist.get("edges", []), hist.get("counts", [])
    if not counts:
        return "<p>No candidate pairs: nothing to plot.</p>"
    w, h, pad = 720, 240, 40
    lo, hi = edges[0], edges[-1]
    top = float(max(math.log10(1 + c) for c in counts)) or 1.0

    def x(v: float) -> float:
        return float(pad + (v - lo) / (hi - lo) * (w - 2 * pad))

    bars = []
    for i, c in enumerate(counts):
        bh = math.log10(1 + c) / top * (h - 2 * pad)
        bw = max(x(edges[i + 1]) - x(edges[i]) - 1, 1)
        bars.append(
            f'<rect x="{x(edges[i]):.1f}" y="{h - pad - bh:.1f}" width="{bw:.1f}" '
            f'height="{bh:.1f}" fill="#6a8caf"><title>{edges[i]:.2f}..{edges[i + 1]:.2f}: {c}</title></rect>'
        )
    lines = []
    shown = [(name, t) for name, t in sorted(hist.get("thresholds", {}).items())
             if t is not None and math.isfinite(t) and lo <= t <= hi]
    for k, (name, t) in enumerate(shown):
        # one text row per label (13 px apart, below the axis title), written away from the nearer
        # edge, so labels of close thresholds neither overlap each other nor run off the chart
        right = x(t) > w / 2
        lines.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{pad - 10}" y2="{h - pad}" stroke="#c33" '
            f'stroke-dasharray="4 3"/><text x="{x(t) + (-3 if right else 3):.1f}" y="{pad - 4 + 13 * k}" '
            f'font-size="11" text-anchor="{"end" if right else "start"}" '
            f'fill="#c33">threshold {_e(name)} = {t:.2f}</text>'
        )
    axis = (
        f'<line x1="{pad}" x2="{w - pad}" y1="{h - pad}" y2="{h - pad}" stroke="#333"/>'
        f'<text x="{pad}" y="{h - 12}" font-size="11">{lo:.1f}</text>'
        f'<text x="{w - pad - 30}" y="{h - 12}" font-size="11">{hi:.1f}</text>'
        f'<text x="{w / 2 - 90:.0f}" y="{h - 4}" font-size="11">fused LLR of candidate pairs (nats)</text>'
        f'<text x="4" y="14" font-size="11">count (log scale)</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        f'aria-label="score histogram">{"".join(bars)}{axis}{"".join(lines)}</svg>'
    )


def _summary(s: dict[str, Any]) -> str:
    th = s["thresholds"]
    rows = [
        ("Job", s["job_id"]),
        (
            "Kind",
            {
                "nn": "N:N over the gallery",
                "manifest": "manifest batch vs gallery",
                "gallery": "other gallery vs gallery",
            }.get(s["kind"], s["kind"]),
        ),
        ("Mode", s["mode"]),
        ("Partition", s.get("partition") or "all"),
        ("Records compared", s["records"]),
        ("Templates", ", ".join(f"{k}: {v}" for k, v in s["templates"].items())),
        ("Target FPIR", th.get("target_fpir")),
        ("Per-comparison FMR", f"{th['fmr']:.3g}"),
        ("Target not met", s.get("target_not_met") or "no: every modality set meets it"),
        ("Candidate pairs examined", s["candidates"]),
        ("Pairs above threshold", s["pairs"]),
        ("...already adjudicated distinct", s["pairs_adjudicated_distinct"]),
        ("Clusters", s["clusters"]),
        ("Records in clusters", s["records_in_clusters"]),
        ("Chained clusters", s["chained_clusters"]),
        ("Largest cluster", s["largest_cluster"]),
        ("Rejected manifest rows", s.get("manifest", {}).get("row_errors", 0)),
    ]
    rec = s.get("pair_recall_sample")
    if rec:
        rows.append(
            (
                "Measured pair recall (fast mode, sampled probes)",
                ", ".join(
                    f"{m}: {r['recall']:.4f} ({r['found']}/{r['exact_pairs']})" for m, r in rec.items()
                ),
            )
        )
    return (
        '<table class="figs">'
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _cluster(
    c: dict[str, Any], pairs: list[dict[str, Any]], thumb: Callable[[str], str | None] | None
) -> str:
    mods = sorted({m for k in c["pairs"] for m in pairs[k]["scores"]})
    attr_keys = sorted({k for m in c["members"] for k in m["attributes"]})
    head = (
        f"<h3>Cluster {c['cluster']}: {c['size']} records, risk {c['risk']:.2f}"
        + (
            f' <span class="weak">chained: {c["missing_pairs"]} member pair(s) do not match</span>'
            if c["chained"]
            else ""
        )
        + "</h3>"
    )
    members = [
        "<table><tr>" + ("<th></th>" if thumb else "") + "<th>reference id</th><th>origin</th>"
        "<th>partition</th>" + "".join(f"<th>{_e(k)}</th>" for k in attr_keys) + "</tr>"
    ]
    for m in c["members"]:
        img = ""
        if thumb:
            uri = thumb(m["ref_id"]) if m["origin"] == "gallery" else None
            img = f'<td><img class="thumb" alt="" src="{_e(uri)}"></td>' if uri else "<td></td>"
        members.append(
            f"<tr>{img}<td>{_e(m['ref_id'])}</td><td>{_e(m['origin'])}</td><td>{_e(m['partition'])}</td>"
            + "".join(f"<td>{_e(m['attributes'].get(k, ''))}</td>" for k in attr_keys)
            + "</tr>"
        )
    members.append("</table>")
    plist = [
        "<table><tr><th>record</th><th>record</th><th>fused LLR</th><th>threshold</th>"
        + "".join(f"<th>{_e(m)}</th>" for m in mods)
        + "<th></th></tr>"
    ]
    for k in sorted(c["pairs"], key=lambda k: -(pairs[k]["fused"] or 0)):
        p = pairs[k]
        weak = k == c["weakest_link"]
        plist.append(
            f"<tr{' class=weak' if weak else ''}><td>{_e(p['a'])}</td><td>{_e(p['b'])}</td>"
            f'<td class="num">{_e(p["fused"])}</td><td class="num">{_e(p["threshold"])}</td>'
            + "".join(f'<td class="num">{_e(p["scores"].get(m, "-"))}</td>' for m in mods)
            + f"<td>{'weakest link' if weak else ''}</td></tr>"
        )
    plist.append("</table>")
    cls = "cluster chained" if c["chained"] else "cluster"
    return f'<div class="{cls}">{head}{"".join(members)}{"".join(plist)}</div>'


def render(doc: dict[str, Any], thumbnail_of: Callable[[str], str | None] | None = None) -> str:
    s = doc["summary"]
    adj = [p for p in doc["pairs"] if p["adjudicated_distinct"]]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>nasname de-duplication {_e(s['job_id'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>De-duplication report, job {_e(s['job_id'])}</h1>",
        "<p>Suspected duplicates for manual adjudication: a score above the threshold is a reason to look, "
        "never a decision. Clusters are ranked by risk (sum of the spanning links' margins above the "
        "threshold); the <span class=weak>weakest link</span> is the pair holding the cluster together "
        "with the lowest score: check it first in chained clusters.</p>",
        "<h2>Summary</h2>",
        _summary(s),
        "<h2>Score distribution</h2>",
        _histogram_svg(doc["histogram"]),
        f"<h2>Clusters ({len(doc['clusters'])})</h2>",
        *(_cluster(c, doc["pairs"], thumbnail_of) for c in doc["clusters"]),
    ]
    if adj:
        parts.append(
            f"<h2>Pairs already adjudicated distinct ({len(adj)}; not raised again)</h2><table>"
            "<tr><th>record</th><th>record</th><th>fused LLR</th></tr>"
            + "".join(
                f'<tr class="adj"><td>{_e(p["a"])}</td><td>{_e(p["b"])}</td>'
                f'<td class="num">{_e(p["fused"])}</td></tr>'
                for p in adj
            )
            + "</table>"
        )
    parts.append("</body></html>\n")
    return "".join(parts)


def thumbnail_from_store(store: Any, size: int = 96) -> Callable[[str], str | None]:
    """Thumbnails of kept face images (``Store.get_image``), as JPEG data: URIs; None when not kept."""
    import base64
    import io

    from PIL import Image

    from engine.errors import NasnameError
    from engine.types import Modality

    def get(ref_id: str) -> str | None:
        try:
            raw = store.get_image(ref_id, Modality.FACE)
        except NasnameError:
            return None
        if raw is None:
            return None
        try:
            with Image.open(io.BytesIO(raw)) as src:
                im = src.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()

    return get
