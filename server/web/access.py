"""Which console page needs which permission: each page names the RPC whose permission it needs, and
the roles come from THE table (``server.auth.RPC_ROLES``). A role may open a page exactly when it may
call that RPC, so the console never grants more than the gRPC service does.
"""

from __future__ import annotations

from server.auth import RPC_ROLES, Role, may_see_images

__all__ = ["PAGE_RPC", "allowed", "may_view_case_images"]

_N = "/nasname.v1.Nasname/"

PAGE_RPC: dict[str, str] = {
    "queue": _N + "ListPendingAdjudications",  # the adjudication queue
    "case": _N + "ListPendingAdjudications",  # a case: candidates, scores, decisions, history
    "decide": _N + "Adjudicate",  # recording a decision
    "record": _N + "GetRecord",  # record page: status, history
    "dedup": _N + "GetDedup",  # dedup job list, progress and clusters
    "dedup_push": _N + "StartDedup",  # pushing a finished job's clusters into the adjudication queue
    "dedup_start": _N + "StartDedup",  # starting a job from the console
    "reports": _N + "GetReport",  # registration reports: build, view, download
    "health": _N + "Stats",  # gallery counts, models, uptime, last backup
    "transfers": "/nasname.v1.Admin/TransferStatus",  # the health page's transfer-per-peer panel
    "metrics": "/nasname.v1.Admin/ListTokens",  # /metrics from a non-loopback address: admins only
    "users": "/nasname.v1.Admin/CreateToken",  # console accounts: who may use the service, like tokens
}


def allowed(role: Role, page: str) -> bool:
    return role in RPC_ROLES[PAGE_RPC[page]]


def may_view_case_images(role: Role) -> bool:
    """The faces and irises of a case: whoever may decide it (adjudicators cannot decide what they
    cannot see) and the roles that may see stored images anyway (``server.auth.IMAGE_ROLES``)."""
    return allowed(role, "decide") or may_see_images(role)
