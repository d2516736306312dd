"""The status per peer: last packet sent / received, their change seqs and times, and the backlog
(records changed here since the last packet sent to that peer)."""

from __future__ import annotations

from typing import Any

from engine.datadir import DataDir
from engine.transfer.site import load_site, peers

__all__ = ["transfer_status"]


def transfer_status(datadir: DataDir) -> dict[str, Any]:
    site = load_site(datadir)
    out = []
    with datadir.store.db.read() as conn:
        for p in peers(datadir):
            backlog = int(
                conn.execute(
                    "SELECT COUNT(DISTINCT record_id) FROM changes WHERE seq > ?", (p.out_seq,)
                ).fetchone()[0]
            )
            out.append({**p.to_json(), "backlog": backlog})
        last = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])
    return {"site_id": site.site_id, "last_seq": last, "peers": out}


def status_text(doc: dict[str, Any]) -> str:
    lines = [f"site {doc['site_id']} (last change {doc['last_seq']})"]
    if not doc["peers"]:
        lines.append("  no peers yet: `nasname site trust FILE` with a peer's `site export-public` file")
    for p in doc["peers"]:
        state = f"REVOKED {p['revoked']}" if p["revoked"] else "trusted"
        lines.append(f"  {p['site_id']:<16} {state}")
        lines.append(
            f"    sent:     packet {p['last_sent_packet']}, up to change {p['last_sent_seq']}, "
            f"at {p['last_sent'] or 'never'}; backlog {p['backlog']} record(s)"
        )
        lines.append(
            f"    received: packet {p['last_received_packet']}, up to their change "
            f"{p['last_received_seq']}, at {p['last_received'] or 'never'}"
        )
    return "\n".join(lines)
