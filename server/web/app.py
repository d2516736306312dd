"""The console as a Starlette application over an open engine (no gRPC in between: the console runs in
the ``nasname serve`` process and calls the engine directly, with the same role table).

    app = create_app(engine, WebConfig(), dedup=servicer.dedup)   # served by server.web.serving

Every response carries a strict CSP and ``Cache-Control: no-store``; every POST needs the session's
CSRF token; every image sent is written to the audit log (who, which record, which image).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.engine import Engine
from engine.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NasnameError,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from engine.ops.schedule import BackupSettings
from engine.records import AdjudicationDecision
from engine.store.values import PendingCase, UserInfo
from engine.types import Modality
from server.auth import Role, may_see_images
from server.config import is_loopback
from server.logs import iso_time
from server.metrics import EngineCollector, exposition
from server.web.access import allowed, may_view_case_images
from server.web.config import WebConfig
from server.web.images import display_jpeg, unwrapped_png
from server.web.reports import BuiltReport, download_prefix, file_response
from server.web.sessions import COOKIE, MAX_REPORTS, LoginLimiter, Session, SessionStore

__all__ = ["SECURITY_HEADERS", "create_app"]

HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}  # no HSTS: on "localhost" it would bind every other local port to HTTPS too
_OWN_HEADERS = {"content-security-policy", "x-frame-options"}
MODALITIES = (Modality.FACE, Modality.IRIS_LEFT, Modality.IRIS_RIGHT)
MIN_REASON, MAX_REASON = 5, 500
NAV = (("queue", "Queue", "/queue"), ("record", "Records", "/record"), ("dedup", "Dedup jobs", "/dedup"),
       ("reports", "Reports", "/reports"), ("health", "Health", "/health"), ("users", "Accounts", "/users"))
PAGE_SIZES = (25, 50, 100, 200)  # queue rows per page
DEFAULT_PAGE_SIZE = 50


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Who:
    session: Session
    user: UserInfo
    role: Role


def _age(t: float) -> str:
    s = max(0.0, time.time() - t)
    if s < 3600:
        return f"{int(s // 60)} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{int(s // 86400)} days"


class _SecurityHeaders:
    """Pure ASGI middleware: the headers of :data:`SECURITY_HEADERS` on every response. A response may
    bring its own ``content-security-policy`` and ``x-frame-options`` (the report shown in a sandboxed
    frame: inline styles, no script); every other header is forced."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = {k.decode().lower() for k, _ in message.get("headers", [])} & _OWN_HEADERS
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in SECURITY_HEADERS or k.decode().lower() in own]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k not in own]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class Console:
    """State and handlers of one console (sessions, limiter, templates) over one engine."""

    def __init__(self, engine: Engine, config: WebConfig, *, dedup: Any = None,
                 started: float | None = None, backup: BackupSettings | None = None) -> None:
        self.engine = engine
        self.backup = backup
        self.store = engine.gallery.store
        self.config = config
        self.dedup = dedup
        self.started = started if started is not None else time.time()
        self.sessions = SessionStore(config.idle_timeout_s)
        self.limiter = LoginLimiter(config.login_failures, config.login_window_s)
        self.jinja = Environment(loader=FileSystemLoader(HERE / "templates"),
                                 autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self.jinja.filters["iso"] = iso_time
        self.jinja.filters["age"] = _age
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EngineCollector(engine.stats, self._jobs, self.started,
                                               transfers=lambda: list(self._transfers()["peers"])))

    # -- plumbing ------------------------------------------------------------------------------

    def _jobs(self) -> list[Any]:
        if self.dedup is None or self.dedup.gallery is None:
            return []
        try:
            return list(self.dedup.runner.list())
        except Unavailable:
            return []

    def render(self, request: Request, name: str, who: Who | None, status: int = 200,
               **context: Any) -> HTMLResponse:
        session = who.session if who else self._session(request)
        nav = []
        if who is not None:
            nav = [(label, url) for page, label, url in NAV if allowed(who.role, page)]
        flash = list(session.flash) if session else []
        if session:
            session.flash.clear()
        csrf = context.pop("csrf_override", None) or (session.csrf if session else "")
        html = self.jinja.get_template(name).render(
            who=who, csrf=csrf, nav=nav, flash=flash, path=request.url.path,
            **context)
        return HTMLResponse(html, status_code=status)

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def who(self, request: Request, page: str | None = None) -> Who:
        """The logged-in account (re-read: a disabled account loses its sessions at once), checked
        against ``page``'s permission. Raises _Redirect (to the login page) or _Refused (403)."""
        session = self._session(request)
        user = self.store.get_user(session.user_id) if session and session.user_id else None
        if session is None or user is None or not user.active:
            if session is not None and session.user_id:
                self.sessions.end(session)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _Redirect("/login?next=" + _quote(target))
        try:
            role = Role(user.role)
        except ValueError:
            raise _Refused(403, f"your account's role {user.role!r} is not known") from None
        who = Who(session, user, role)
        if page is not None and not allowed(role, page):
            raise _Refused(403, f"The {role.value} role may not open this page.")
        return who

    async def form(self, request: Request, who: Who | Session) -> FormData:
        """The POSTed form, after checking its CSRF token against the session's."""
        form = await request.form()
        session = who.session if isinstance(who, Who) else who
        token = form.get("csrf")
        if not isinstance(token, str) or not secrets.compare_digest(token, session.csrf):
            raise _Refused(403, "The form's security token is missing or stale. "
                                "Reload the page and try again.")
        return form

    def actor_names(self) -> dict[str, str]:
        return {u.user_id: u.username for u in self.store.list_users()}

    def audit_view(self, who: Who, ref_id: str, what: str, modality: Modality) -> None:
        self.store.audit_event(who.user.user_id, "view_image", ref_id,
                               {"image": what, "modality": modality.value, "via": "console"})

    # -- login ---------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            session = self.sessions.anonymous()
        response = self.render(request, "login.html", None, next=_safe_next(request.query_params.get("next")),
                               csrf_override=session.csrf)
        _set_cookie(response, session)
        return response

    async def login(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            raise _Refused(403, "Your login form expired. Reload the page and try again.")
        form = await self.form(request, session)
        username = str(form.get("username", "")).strip().lower()
        password = str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "")))
        client = request.client.host if request.client else "?"
        keys = (f"user:{username}", f"addr:{client}")
        wait = self.limiter.blocked(*keys)
        user = None
        if wait <= 0:
            user = await run_in_threadpool(self.store.login, username, password)
        if user is None:
            if wait <= 0:
                self.limiter.failed(*keys)
                message = "Wrong username or password, or the account is disabled."
            else:
                message = f"Too many failed logins. Try again in {int(wait) + 1} seconds."
            fresh = self.sessions.anonymous()
            self.sessions.end(session)
            response = self.render(request, "login.html", None, status=401 if wait <= 0 else 429,
                                   error=message, next=target, username=username, csrf_override=fresh.csrf)
            _set_cookie(response, fresh)
            return response
        self.limiter.succeeded(keys[0])
        new = self.sessions.login(session, user.user_id)
        redirect = RedirectResponse(target or "/", status_code=303)
        _set_cookie(redirect, new)
        return redirect

    async def logout(self, request: Request) -> Response:
        session = self._session(request)
        if session is not None:
            await self.form(request, session)
            self.sessions.end(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    async def home(self, request: Request) -> Response:
        who = self.who(request)
        for page, url in (("queue", "/queue"), ("dedup", "/dedup"), ("health", "/health")):
            if allowed(who.role, page):
                return RedirectResponse(url, status_code=303)
        return self.render(request, "error.html", who, status=403,
                           message=f"The {who.role.value} role has no pages in this console.")

    # -- adjudication --------------------------------------------------------------------------

    async def queue(self, request: Request) -> Response:
        """Open cases, one page at a time: sorted (age or best fused score) and filtered (partition)
        in the store, so every page follows the same order however long the queue is."""
        who = self.who(request, "queue")
        q = request.query_params
        sort = "score" if q.get("sort") == "score" else "age"
        partition = q.get("partition", "")
        size = _int(q.get("size"), DEFAULT_PAGE_SIZE)
        size = size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE
        page = max(1, _int(q.get("page"), 1))

        def fetch(page: int) -> tuple[list[PendingCase], int]:
            return self.store.queue_page(partition=partition or None, order=sort, limit=size,
                                         offset=(page - 1) * size)

        cases, total = await run_in_threadpool(fetch, page)
        pages = max(1, -(-total // size))
        if page > pages:  # past the end (cases were decided meanwhile): the last page
            page = pages
            cases, total = await run_in_threadpool(fetch, page)

        def link(n: int) -> str:
            return "/queue?" + urlencode({"sort": sort, "partition": partition, "size": size, "page": n})

        partitions = sorted(self.engine.stats().by_partition_status)
        return self.render(request, "queue.html", who, rows=[_case_row(c) for c in cases], sort=sort,
                           partition=partition, partitions=partitions, two_person=self.config.two_person_same,
                           total=total, page=page, pages=pages, size=size, sizes=PAGE_SIZES,
                           first=(page - 1) * size + 1, prev=link(page - 1) if page > 1 else None,
                           next=link(page + 1) if page < pages else None)

    def _case(self, ref_id: str) -> PendingCase:
        case = self.store.case(ref_id)
        if case is None:
            raise NotFound(f"record {ref_id} has no adjudication case", details={"ref_id": ref_id})
        return case

    async def case_page(self, request: Request) -> Response:
        who = self.who(request, "case")
        ref_id = request.path_params["ref_id"]
        case = await run_in_threadpool(self._case, ref_id)
        record = self.engine.get(ref_id)
        if not case.candidates:
            raise Conflict(f"the case of {ref_id} names no candidate")
        try:
            index = min(max(int(request.query_params.get("c", "0")), 0), len(case.candidates) - 1)
        except ValueError:
            index = 0
        cand = case.candidates[index]
        cand_ref = str(cand["ref_id"])
        try:
            cand_record = self.engine.get(cand_ref)
        except NotFound:
            cand_record = None
        shared = [Modality(m) for m in cand.get("scores", {})]
        try:
            threshold = self.engine.threshold(shared).fused_threshold if shared else None
        except InvalidInput:
            threshold = None
        held = {ref_id: set(record.models), cand_ref: set(cand_record.models) if cand_record else set()}
        rows = [{"modality": m.value, "label": _modality_label(m), "iris": m.kind == "iris",
                 "held": {ref: m in held[ref] for ref in held},
                 "score": cand.get("scores", {}).get(m.value), "llr": cand.get("llrs", {}).get(m.value)}
                for m in MODALITIES]
        names = self.actor_names()
        decisions = [{"who": names.get(d.actor, d.actor), "decision": d.decision, "comment": d.comment,
                      "time": d.time} for d in case.decisions]
        awaiting = (self.config.two_person_same and case.outcome is None
                    and [d for d in case.decisions if d.decision == "same"])
        history = [_history_row(e, names) for e in self.store.audit_of(ref_id)]
        return self.render(
            request, "case.html", who, case=case, record=record, cand=cand, cand_ref=cand_ref,
            cand_record=cand_record, index=index, candidates=case.candidates, rows=rows, threshold=threshold,
            decisions=decisions, history=history, awaiting=bool(awaiting),
            images=may_view_case_images(who.role), kept=self.engine.config.keep_images,
            may_decide=allowed(who.role, "decide"),
            next_case=self._next_case(ref_id), two_person=self.config.two_person_same)

    def _next_case(self, ref_id: str) -> str | None:
        for c in self.store.pending(limit=2):
            if c.ref_id != ref_id:
                return c.ref_id
        return None

    async def decide(self, request: Request) -> Response:
        who = self.who(request, "decide")
        form = await self.form(request, who)
        ref_id = request.path_params["ref_id"]
        case = self._case(ref_id)
        decision_text = str(form.get("decision", ""))
        reason = " ".join(str(form.get("reason", "")).split())
        mate = str(form.get("mate", "")) or None
        back = f"/case/{_quote(ref_id)}"
        problems = []
        if decision_text not in ("same", "distinct"):
            problems.append("Choose “same person” or “different persons”.")
        if not MIN_REASON <= len(reason) <= MAX_REASON:
            problems.append(f"Give a reason ({MIN_REASON}–{MAX_REASON} characters).")
        names = {str(c["ref_id"]) for c in case.candidates}
        if decision_text == "same" and mate not in names:
            problems.append("Choose which candidate is the same person.")
        if case.outcome is not None:
            problems.append("This case has already been decided.")
        final = True
        if decision_text == "same" and self.config.two_person_same:
            earlier = [d for d in case.decisions if d.decision == "same"]
            if any(d.actor == who.user.user_id for d in case.decisions):
                problems.append("You have already recorded a decision on this case; a second adjudicator "
                                "must confirm it.")
            final = bool(earlier)
        if problems:
            who.session.flash.extend(problems)
            return RedirectResponse(back + (f"?c={_candidate_index(case, mate)}" if mate else ""),
                                    status_code=303)
        decision = AdjudicationDecision(decision_text)
        if form.get("confirm") != "yes":
            return self.render(request, "confirm.html", who, ref_id=ref_id, decision=decision_text,
                               mate=mate if decision is AdjudicationDecision.SAME else None, reason=reason,
                               final=final, back=back, candidates=sorted(names))
        view = await run_in_threadpool(
            lambda: self.engine.adjudicate(ref_id, decision, actor=who.user.user_id, comment=reason,
                                           mate_reference_id=mate if decision is AdjudicationDecision.SAME
                                           else None, final=final))
        if not final:
            who.session.flash.append(f"Recorded “same as {mate}” for {ref_id}. A second adjudicator must "
                                     "confirm it before the record's biometrics are erased.")
        elif decision is AdjudicationDecision.SAME:
            who.session.flash.append(f"Decided: {ref_id} is the same person as {mate}. {ref_id} is now "
                                     f"{view.status.value}; its biometrics are erased.")
        else:
            who.session.flash.append(f"Decided: {ref_id} is a different person. {ref_id} is now "
                                     f"{view.status.value} and searchable.")
        return RedirectResponse(back, status_code=303)

    # -- images --------------------------------------------------------------------------------

    async def image(self, request: Request) -> Response:
        who = self.who(request, "case")
        if not may_view_case_images(who.role):
            raise _Refused(403, f"The {who.role.value} role may not see biometric images.")
        ref_id = request.path_params["ref_id"]
        try:
            modality = Modality(request.path_params["modality"])
        except ValueError:
            raise NotFound("no such modality") from None
        kind = request.path_params.get("kind", "sample")
        if kind not in ("sample", "unwrapped"):
            raise NotFound("no such image kind")
        unwrapped = kind == "unwrapped"
        if unwrapped and modality.kind != "iris":
            raise NotFound("only irises are unwrapped")
        raw = await run_in_threadpool(self.store.get_image, ref_id, modality)
        if raw is None:
            raise NotFound(f"no {modality.value} image is kept for {ref_id}")
        data = await run_in_threadpool(unwrapped_png if unwrapped else display_jpeg, raw)
        if data is None:
            raise NotFound("the image cannot be shown" if not unwrapped else "no iris found to unwrap")
        what = "unwrapped" if unwrapped else "sample"
        await run_in_threadpool(self.audit_view, who, ref_id, what, modality)
        return Response(data, media_type="image/png" if unwrapped else "image/jpeg")

    # -- records -------------------------------------------------------------------------------

    async def record_page(self, request: Request) -> Response:
        who = self.who(request, "record")
        ref_id = request.query_params.get("ref", "").strip()
        if not ref_id:
            return self.render(request, "record.html", who, record=None, ref_id="")
        record = self.engine.get(ref_id)
        names = self.actor_names()
        case = self.store.case(ref_id)
        return self.render(request, "record.html", who, record=record, ref_id=ref_id, case=case,
                           history=[_history_row(e, names) for e in self.store.audit_of(ref_id)],
                           decisions=[{"who": names.get(d.actor, d.actor), "decision": d.decision,
                                       "comment": d.comment, "time": d.time}
                                      for d in (case.decisions if case else [])],
                           named_in=self.store.cases_naming(ref_id), may_case=allowed(who.role, "case"))

    # -- dedup ---------------------------------------------------------------------------------

    def _runner(self) -> Any:
        if self.dedup is None:
            raise Unavailable("de-duplication is not available on this server", reason="DEDUP_UNAVAILABLE")
        return self.dedup.runner

    async def dedup_list(self, request: Request) -> Response:
        who = self.who(request, "dedup")
        jobs = sorted(self._jobs(), key=lambda p: -p.elapsed_s)
        running = any(p.state in ("created", "queued", "running") for p in jobs)
        return self.render(request, "dedup.html", who, jobs=jobs, refresh=running,
                           may_start=self.dedup is not None and allowed(who.role, "dedup_start"))

    async def dedup_new(self, request: Request) -> Response:
        who = self.who(request, "dedup_start")
        self._runner()
        return self.render(request, "dedup_new.html", who,
                           partitions=sorted(self.engine.stats().by_partition_status))

    async def dedup_job(self, request: Request) -> Response:
        who = self.who(request, "dedup")
        job_id = request.path_params["job_id"]
        runner = self._runner()
        progress = runner.progress(job_id)
        clusters: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        thumbs: dict[str, str] = {}
        pushed = None
        if progress.stage == "done":
            result = runner.result(job_id)
            summary = result.summary
            doc = json.loads(result.files["report.json"].read_text())
            pairs = doc["pairs"]
            for c in doc["clusters"][:200]:
                clusters.append({**c, "links": [pairs[k] for k in c["pairs"]]})
            pushed_file = runner.root / job_id / "pushed.json"
            pushed = json.loads(pushed_file.read_text()) if pushed_file.is_file() else None
            if may_see_images(who.role) and self.engine.config.keep_images:
                for c in clusters:
                    for m in c["members"]:
                        thumbs[m["ref_id"]] = f"/image/{_quote(m['ref_id'])}/face"
        return self.render(request, "dedup_job.html", who, p=progress, clusters=clusters, summary=summary,
                           thumbs=thumbs, pushed=pushed, may_push=allowed(who.role, "dedup_push"),
                           refresh=progress.state in ("created", "queued", "running"))

    async def dedup_push(self, request: Request) -> Response:
        who = self.who(request, "dedup_push")
        await self.form(request, who)
        job_id = request.path_params["job_id"]
        self._runner()
        queued = await run_in_threadpool(self.dedup.push_now, job_id, actor=who.user.user_id)
        who.session.flash.append(f"Pushed job {job_id}'s clusters: {queued} records queued for adjudication.")
        return RedirectResponse(f"/dedup/{job_id}", status_code=303)

    async def dedup_start(self, request: Request) -> Response:
        """Start an N:N job over this gallery (or one partition) with the options of StartDedup."""
        from engine.dedup.service import make_spec

        who = self.who(request, "dedup_start")
        form = await self.form(request, who)
        service = self.dedup
        self._runner()
        threshold = str(form.get("threshold", "fpir"))
        try:
            value = _float(str(form.get("value", "")).strip(), threshold)
            spec = make_spec(service.runner.source.root, partition=str(form.get("partition", "")) or None,
                             target_fpir=value if threshold == "fpir" else None,
                             fmr=value if threshold == "fmr" else None, mode=str(form.get("mode", "exact")))
        except InvalidInput as exc:  # the form again, with what to fix
            return self.render(request, "dedup_new.html", who, status=400, error=str(exc),
                               partitions=sorted(self.engine.stats().by_partition_status))
        push = form.get("push") == "yes"
        job_id = await run_in_threadpool(
            lambda: service.start(spec, push_actor=who.user.user_id if push else None))
        scope = f"partition {spec.partition}" if spec.partition else "the whole gallery"
        then = "; its clusters go to the adjudication queue when it ends." if push else "."
        who.session.flash.append(f"Started dedup job {job_id} over {scope}{then}")
        return RedirectResponse(f"/dedup/{job_id}", status_code=303)

    # -- reports -------------------------------------------------------------------------------

    async def reports_page(self, request: Request) -> Response:
        """Pick a period (and partition), build the registration report, see it in a sandboxed frame
        and download its files. Built reports are held in the session (a few), not on disk."""
        from engine.reports import ReportPeriod

        who = self.who(request, "reports")
        q = request.query_params
        today = time.strftime("%Y-%m-%d", time.gmtime())
        month_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 29 * 86400))
        chosen = {"from": q.get("from", month_ago), "to": q.get("to", today),
                  "partition": q.get("partition", ""), "min_cell": q.get("min_cell", "5")}
        details = q.get("details") == "yes"
        partitions = sorted(self.engine.stats().by_partition_status)
        built, error = None, None
        if "build" in q:
            now = time.time()
            try:
                period = ReportPeriod.parse(chosen["from"] or None, chosen["to"] or None, now=now,
                                            partition=chosen["partition"] or None,
                                            min_cell=_int(chosen["min_cell"], 0), details=details)
                files = await run_in_threadpool(lambda: self.engine.report_files(period, now=now))
                built = BuiltReport.of(who.session.keep_report(files), files)
            except InvalidInput as exc:
                error = str(exc).replace("--from", "“From”").replace("--to", "“To”")
        response = self.render(request, "reports.html", who, status=400 if error else 200, chosen=chosen,
                               details=details, partitions=partitions, built=built, error=error)
        if built is not None:  # the console's policy, plus frames of its own (the report)
            response.headers["content-security-policy"] = (SECURITY_HEADERS["content-security-policy"]
                                                           + "; frame-src 'self'")
        return response

    async def report_file(self, request: Request) -> Response:
        who = self.who(request, "reports")
        files = who.session.reports.get(request.path_params["report_id"])
        name = request.path_params["name"]
        if files is None:
            raise NotFound(f"this report is no longer held (reports last while you are logged in, and only "
                           f"the last {MAX_REPORTS}): build it again", reason="REPORT_GONE")
        if name not in files:
            raise NotFound(f"the report has no file {name!r}")
        return file_response(name, files[name], download="download" in request.query_params,
                             prefix=download_prefix(files))

    # -- accounts ------------------------------------------------------------------------------

    async def users_page(self, request: Request) -> Response:
        who = self.who(request, "users")
        return self.render(request, "users.html", who, users=self.store.list_users(),
                           roles=[r.value for r in Role])

    async def users_change(self, request: Request) -> Response:
        """Add an account, disable one (its sessions end at once) or set a new password."""
        who = self.who(request, "users")
        form = await self.form(request, who)
        action = str(form.get("action", ""))
        username = str(form.get("username", "")).strip().lower()
        password = str(form.get("password", ""))
        actor = who.user.user_id
        if action == "add":
            role = str(form.get("role", ""))
            if role not in {r.value for r in Role}:
                raise InvalidInput("choose a role", reason="INVALID_ROLE")
            info = await run_in_threadpool(
                lambda: self.store.create_user(username, role, password, actor=actor))
            who.session.flash.append(f"Created {info.username} ({info.role}).")
        elif action == "disable":
            if username == who.user.username:
                raise InvalidInput("you cannot disable your own account", reason="INVALID_REQUEST")
            info = self.store.disable_user(username, actor=actor)
            self.sessions.end_user(info.user_id)
            who.session.flash.append(f"Disabled {info.username}; their sessions have ended.")
        elif action == "reset":
            info = await run_in_threadpool(
                lambda: self.store.reset_password(username, password, actor=actor))
            who.session.flash.append(f"New password set for {info.username}; the account is enabled.")
        else:
            raise InvalidInput("unknown action", reason="INVALID_REQUEST")
        return RedirectResponse("/users", status_code=303)

    # -- health and metrics --------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        from importlib.metadata import PackageNotFoundError, version

        who = self.who(request, "health")
        stats = await run_in_threadpool(self.engine.stats)
        try:
            package = version("nasname")
        except PackageNotFoundError:
            package = "unknown"
        backup = await run_in_threadpool(self._last_backup)
        transfers = None
        if allowed(who.role, "transfers"):
            transfers = await run_in_threadpool(self._transfers)
        return self.render(request, "health.html", who, stats=stats, started=self.started, version=package,
                           jobs=len(self._jobs()), backup=backup, transfers=transfers)

    def _last_backup(self) -> dict[str, Any] | None:
        """The last good backup (``engine.ops.schedule``: recorded in the store however it was made),
        with whether it is on time when backups are scheduled."""
        from engine.ops.schedule import last_good_backup

        last = last_good_backup(self.engine.datadir)
        every = self.backup.interval_s if self.backup is not None else 0.0
        if last is not None:
            last["every"] = self.backup.every if self.backup is not None and every > 0 else ""
            last["overdue"] = every > 0 and float(last["age_s"]) > 2 * every
        return last

    def _transfers(self) -> dict[str, Any]:
        """``engine.transfer.status``: this site and, per peer, the last packets and the backlog."""
        from engine.transfer.status import transfer_status

        try:
            return transfer_status(self.engine.datadir)
        except NotFound as exc:  # no site identity (a data directory made before transfers existed)
            return {"site_id": "", "last_seq": 0, "peers": [], "problem": str(exc)}

    async def metrics(self, request: Request) -> Response:
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            self.who(request, "metrics")
        data = await run_in_threadpool(exposition, self.registry)
        return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"the {'target FPIR' if what == 'fpir' else 'FMR'} must be a number such as "
                           "0.003", reason="INVALID_THRESHOLD") from None


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _safe_next(target: str | None) -> str:
    """Only local paths: never an open redirect to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return ""
    return target


def _set_cookie(response: Response, session: Session) -> None:
    response.set_cookie(COOKIE, session.sid, path="/", secure=True, httponly=True, samesite="strict")


def _modality_label(m: Modality) -> str:
    return {"face": "Face", "iris_left": "Left iris", "iris_right": "Right iris"}.get(m.value, m.value)


def _candidate_index(case: PendingCase, ref_id: str | None) -> int:
    for i, c in enumerate(case.candidates):
        if c.get("ref_id") == ref_id:
            return i
    return 0


def _case_row(c: PendingCase) -> dict[str, Any]:
    top = max(c.candidates, key=lambda d: float(d.get("fused", 0.0)), default={})
    return {"ref_id": c.ref_id, "partition": c.partition, "created": c.created,
            "top_ref": top.get("ref_id", ""), "top_fused": float(top.get("fused", 0.0)),
            "n": len(c.candidates), "decisions": len(c.decisions)}


_ACTIONS = {"insert": "enrolled", "decide": "adjudicated", "open_case": "queued for adjudication",
            "delete": "deleted", "view_image": "image viewed", "set_status": "status changed"}


def _history_row(e: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    details = e.get("details") or {}
    text = ", ".join(f"{k}: {v}" for k, v in sorted(details.items()))
    actor = str(e["actor"])
    return {"seq": e["seq"], "time": e["time"], "what": _ACTIONS.get(str(e["action"]), str(e["action"])),
            "action": e["action"], "who": names.get(actor, actor), "details": text}


def _errors(console: Console) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    async def redirect(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Redirect)
        return RedirectResponse(exc.url, status_code=303)

    def who_or_none(request: Request) -> Who | None:
        try:
            return console.who(request)
        except (_Redirect, _Refused):
            return None

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return console.render(request, "error.html", who_or_none(request), status=exc.status,
                              message=exc.message)

    async def nasname(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NasnameError)
        status = 500
        for kind, code in ((NotFound, 404), (AlreadyExists, 409), (Conflict, 409), (InvalidInput, 400),
                           (PermissionDenied, 403), (Unavailable, 503)):
            if isinstance(exc, kind):
                status = code
                break
        return console.render(request, "error.html", who_or_none(request), status=status, message=str(exc))

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return console.render(request, "error.html", who_or_none(request), status=exc.status_code,
                              message=exc.detail)

    return {_Redirect: redirect, _Refused: refused, NasnameError: nasname, HTTPException: http}


def create_app(engine: Engine, config: WebConfig | None = None, *, dedup: Any = None,
               started: float | None = None, backup: BackupSettings | None = None) -> Starlette:
    """The console over ``engine``; ``dedup`` is the server's ``DedupService`` (None: no dedup pages);
    ``backup`` the server's backup schedule (the health page says whether backups are on time)."""
    c = Console(engine, config or WebConfig(), dedup=dedup, started=started, backup=backup)
    routes = [
        Route("/", c.home),
        Route("/login", c.login_page, methods=["GET"]),
        Route("/login", c.login, methods=["POST"]),
        Route("/logout", c.logout, methods=["POST"]),
        Route("/queue", c.queue),
        Route("/case/{ref_id}", c.case_page),
        Route("/case/{ref_id}/decide", c.decide, methods=["POST"]),
        Route("/image/{ref_id}/{modality}", c.image),
        Route("/image/{ref_id}/{modality}/{kind}", c.image),
        Route("/record", c.record_page),
        Route("/dedup", c.dedup_list),
        Route("/dedup/new", c.dedup_new, methods=["GET"]),
        Route("/dedup/start", c.dedup_start, methods=["POST"]),
        Route("/dedup/{job_id}", c.dedup_job),
        Route("/dedup/{job_id}/push", c.dedup_push, methods=["POST"]),
        Route("/reports", c.reports_page),
        Route("/reports/{report_id}/{name}", c.report_file),
        Route("/health", c.health),
        Route("/metrics", c.metrics),
        Route("/users", c.users_page, methods=["GET"]),
        Route("/users", c.users_change, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=_errors(c))
    app.add_middleware(_SecurityHeaders)
    app.state.console = c
    return app
