"""The analyst's console: server-rendered pages over the node's own services.

Thin, like the TAXII API: parse, check the session, call the node, render. Every
object shown comes from ``Node.find`` (the label filter inside the query, the read
audited); nothing here reads the store to show a person anything. Every page carries
the banner of the highest label on it, top and bottom, in the viewer's own words
(docs/console.md).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...logs import log_unexpected
from ...model import Label
from ...services.node import Node
from ...services.people import NO_READING_ROLE, AuthError, PeopleError, Principal
from ..limits import CLOSE, BodyRefused, read_body
from . import banners
from .sessions import COOKIE, IDLE_SECONDS, LOGIN_COOKIE, Session, Sessions, new_token, same

log = logging.getLogger("intelpact.console")

FORM_OVERHEAD = 65_536  # a form's other fields and multipart headers, beside its upload
SMALL_FORM = 8_192  # the log-in and log-out forms: a token, a name, a password
HEADERS = {
    # Everything comes from this node: no CDN, no external font, no inline script.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # classified pages are never kept by the browser
    "X-Frame-Options": "DENY",
}


class ConsoleError(Exception):
    """A page-level refusal or mistake, shown as an HTML page with its status."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail


class Page:
    """What a view hands back: a template, its context and the labels shown on it."""

    def __init__(self, template: str, context: Mapping[str, Any] | None = None, *,
                 labels: Iterable[Label] = (), status: int = 200) -> None:
        self.template = template
        self.context = dict(context or {})
        self.labels = list(labels)
        self.status = status


Handler = Callable[["Console", Request, Principal, FormData | None], "Page | Response"]


class Console:
    """Binds a node to the console's pages. ``app`` is the Starlette application."""

    def __init__(self, node: Node, *, idle_seconds: float = IDLE_SECONDS) -> None:
        from . import desk, maritime, publish, read  # the views; they import this module

        self.node = node
        self.sessions = Sessions(node.store, idle_seconds)
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("intelpact.interfaces.console", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined)
        self.max_upload = node.config.max_content_length
        static = StaticFiles(packages=[("intelpact.interfaces.console", "static")])
        routes: list[BaseRoute] = [
            Route("/", self.view(read.search)),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/objects/{oid}", self.view(read.show)),
            Route("/objects/{oid}/raw", self.view(read.raw)),
            Route("/map", self.view(maritime.show)),
            Route("/publish", self.view(publish.form, role="publisher"),
                  methods=["GET", "POST"]),
            Route("/publish/preview", self.view(publish.preview, role="publisher")),
            Route("/desk", self.view(desk.show, role="security-officer"),
                  methods=["GET", "POST"]),
            Route("/desk/consent/{rid}", self.view(desk.consent, role="security-officer"),
                  methods=["POST"]),
            Route("/desk/alert/{aid:int}", self.view(desk.resolve, role="security-officer"),
                  methods=["POST"]),
            Route("/desk/partner/{party}", self.view(desk.partner, role="security-officer")),
            Mount("/static", static, name="static"),
        ]
        self.app = Starlette(routes=routes, exception_handlers={
            HTTPException: self._http_error},
            middleware=[Middleware(_Contained, crash=self._crash)])

    # -- rendering -----------------------------------------------------------------------
    def render(self, request: Request, page: Page, principal: Principal | None,
               session: Session | None) -> Response:
        party = principal.person.party if principal else self.node.party
        label = banners.page_label(self.node.agreement, party, page.labels)
        context = {
            "request": request, "node": self.node, "viewer": principal,
            "banner": banners.for_label(label, self.node.agreement, party),
            "csrf": session.csrf if session else page.context.get("csrf", ""),
            "can_publish": bool(principal and principal.has_role("publisher")),
            "is_officer": bool(principal and principal.has_role("security-officer")),
            "path": request.url.path, "idle_minutes": int(self.sessions.idle_seconds // 60),
            **page.context}
        html = self.env.get_template(page.template).render(context)
        response = HTMLResponse(html, status_code=page.status, headers=HEADERS)
        return response

    def error_page(self, request: Request, exc: ConsoleError,
                   principal: Principal | None = None,
                   session: Session | None = None) -> Response:
        page = Page("error.html", {"title": exc.title, "detail": exc.detail},
                    status=exc.status)
        return self.render(request, page, principal, session)

    # -- plumbing ------------------------------------------------------------------------
    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        titles = {404: "Not found", 405: "Method not allowed"}
        return await run_in_threadpool(
            self.error_page, request, ConsoleError(status, titles.get(status, "Error"),
                                                   "check the address, or go back to the "
                                                   "search page" if status == 404 else ""))

    @staticmethod
    def _crash() -> Response:
        return HTMLResponse("<!doctype html><title>Internal error</title><h1>Internal error"
                            "</h1><p>The node could not complete the request; nothing was "
                            "changed.</p>", status_code=500, headers=HEADERS)

    def view(self, handler: Handler, *, role: str | None = None
             ) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint that needs a live session (else: the log-in page), the role
        ``role`` (else: 403 naming it) and, for a POST, the session's CSRF token."""
        async def endpoint(request: Request) -> Response:
            if request.method != "POST":
                return await run_in_threadpool(self._serve, handler, role, request, None)
            # Who is asking before what they send, as on the TAXII API: the form of a
            # request without a live session or the page's role is never read.
            admitted = await run_in_threadpool(self._admit, request, role)
            if isinstance(admitted, Response):
                admitted.headers.update(CLOSE)  # answered before the body was read
                return admitted
            return await self._posted(request, self.max_upload + FORM_OVERHEAD,
                                      functools.partial(self._serve, handler, role, request))
        return endpoint

    async def _posted(self, request: Request, limit: int,
                      answer: Callable[[FormData], Response]) -> Response:
        """``answer`` (in a worker thread) to the form POSTed with ``request``, read within
        the listener's body limits (interfaces/limits.py): at most ``limit`` bytes, with
        ``body_idle_timeout`` and ``body_timeout``, so neither a large nor a slow body
        holds the connection TAXII shares. A body refused is answered at once, with
        ``Connection: close``; the form (an upload is spooled to disk) is closed after."""
        try:
            body = await read_body(request, self.node.config, limit)
            form = await Request(request.scope, _replay(body)).form(
                max_files=1, max_fields=200, max_part_size=self.max_upload)
        except BodyRefused as exc:
            refused = await run_in_threadpool(self.error_page, request, ConsoleError(
                exc.status, exc.title, exc.description))
            refused.headers.update(CLOSE)
            return refused
        except HTTPException as exc:  # malformed multipart, a part too large
            return await run_in_threadpool(self.error_page, request, ConsoleError(
                400, "The form could not be read", str(exc.detail)[:200]))
        try:
            return await run_in_threadpool(answer, form)
        finally:
            await form.close()

    def _admit(self, request: Request, role: str | None
               ) -> tuple[Session, Principal] | Response:
        """The session and person of a request that may see the page, or the answer to
        one that may not: no live session, or not the role ``role`` (a reading role when
        None)."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        principal = self._principal(session)
        if session is None or principal is None:
            if request.method == "POST":
                return self.error_page(request, ConsoleError(
                    403, "Your session has ended", "log in again, then send the form again"))
            return RedirectResponse("/login?" + urlencode({"next": _local(request)}),
                                    status_code=303, headers=HEADERS)
        if role is not None and not principal.has_role(role):
            return self._denied(request, principal, session, f"this page needs the {role} role")
        if role is None and not principal.reads:
            return self._denied(request, principal, session, NO_READING_ROLE)
        return session, principal

    def _denied(self, request: Request, principal: Principal, session: Session,
                reason: str) -> Response:
        """A page refused for want of a role (403), audited (``deny``, with the reason and
        the page), as the TAXII API and the command line refuse and audit it."""
        audit = self.node.audit
        audit.record(audit.event("deny", person=principal.person, via="console",
                                 page=f"{request.method} {request.url.path}"[:200],
                                 reason=reason))
        return self.error_page(request, ConsoleError(403, "Not allowed", reason), principal,
                               session)

    def _serve(self, handler: Handler, role: str | None, request: Request,
               form: FormData | None) -> Response:
        admitted = self._admit(request, role)  # again: the session may have ended meanwhile
        if isinstance(admitted, Response):
            return admitted
        session, principal = admitted
        try:
            if form is not None and not same(_field(form, "csrf"), session.csrf):
                raise ConsoleError(403, "Form refused: it carries no valid CSRF token",
                                   "reload the page and send the form again")
            result = handler(self, request, principal, form)
        except ConsoleError as exc:
            return self.error_page(request, exc, principal, session)
        if isinstance(result, Response):
            for k, v in HEADERS.items():
                result.headers.setdefault(k, v)
            return result
        return self.render(request, result, principal, session)

    def _principal(self, session: Session | None) -> Principal | None:
        if session is None:
            return None
        record = self.node.store.person(session.name)
        if record is None or record.revoked:
            self.sessions.end_person(session.name)
            return None
        try:
            return self.node.people.principal(record)
        except (PeopleError, ValueError):
            return None

    # -- log in and out ------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if request.method != "POST":
            return await run_in_threadpool(self._login, request, None)
        return await self._posted(request, SMALL_FORM, functools.partial(self._login, request))

    def _login(self, request: Request, form: FormData | None) -> Response:
        target = _next(request.query_params.get("next", "/"))
        pre = request.cookies.get(LOGIN_COOKIE, "")
        if form is None:
            if self._principal(self.sessions.get(request.cookies.get(COOKIE))) is not None:
                return RedirectResponse(target, status_code=303, headers=HEADERS)
            return self._login_page(request, target)
        if not pre or not same(_field(form, "csrf"), pre):
            return self._login_page(request, target, "The log-in form had expired: enter "
                                    "your name and password again.", status=403)
        name, password = _field(form, "name"), _field(form, "password")
        client = request.client.host if request.client else ""
        try:
            principal = self.node.people.login(name, password, client)
        except AuthError as exc:
            if exc.retry_after is not None:
                return self._login_page(request, target, "Too many failed log-ins: try "
                                        f"again in {int(exc.retry_after) + 1} seconds.",
                                        status=429)
            return self._login_page(request, target, "Wrong name or password: check both "
                                    "and try again.", status=401)
        token, _ = self.sessions.start(principal.name)
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        self._cookie(request, response, COOKIE, token)
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    def _login_page(self, request: Request, target: str, problem: str = "",
                    status: int = 200) -> Response:
        csrf = new_token()
        page = Page("login.html", {"csrf": csrf, "problem": problem, "next": target},
                    status=status)
        response = self.render(request, page, None, None)
        self._cookie(request, response, LOGIN_COOKIE, csrf, path="/login")
        return response

    async def logout(self, request: Request) -> Response:
        session = await run_in_threadpool(self.sessions.get, request.cookies.get(COOKIE))
        if session is None:  # nothing to end: the form is not read
            response = self._logged_out()
            response.headers.update(CLOSE)
            return response
        return await self._posted(request, SMALL_FORM,
                                  functools.partial(self._logout, request, session))

    def _logout(self, request: Request, session: Session, form: FormData) -> Response:
        if not same(_field(form, "csrf"), session.csrf):
            return self.error_page(request, ConsoleError(
                403, "Form refused: it carries no valid CSRF token",
                "reload the page and log out again"), self._principal(session), session)
        self.sessions.end(request.cookies.get(COOKIE))
        return self._logged_out()

    @staticmethod
    def _logged_out() -> Response:
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    def _cookie(self, request: Request, response: Response, name: str, value: str,
                path: str = "/") -> None:
        response.set_cookie(name, value, path=path, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")


def _replay(body: bytes) -> Receive:
    """An ASGI ``receive`` that hands over ``body``, already read, in one message."""
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}
    return receive


def _field(form: FormData, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


def _local(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def _next(target: str) -> str:
    """Only a path on this node is followed after log-in (no open redirect)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return quote(target, safe="/?&=%:+,.-_~")


class _Contained:
    """Answers an unexpected error inside the console with its 500 page, logged once, and
    keeps it there. (Starlette's handler for ``Exception`` answers, then raises again; in
    a mounted app the error then reached the TAXII app's handler too: logged twice, and
    the connection reset where a response had begun.)"""

    def __init__(self, app: ASGIApp, crash: Callable[[], Response]) -> None:
        self.app = app
        self.crash = crash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise  # half a response sent: only the server can end it
            log_unexpected(log, exc, "unexpected error on %s %s", scope.get("method"),
                           scope.get("path"))
            await self.crash()(scope, receive, send)


class _ConsoleMount(Mount):
    """The console at ``/``, for every path that is not TAXII's and every request that
    does not ask for TAXII (``Accept: application/taxii+json``): those keep TAXII's
    routes, errors and shape exactly as before, so a TAXII client that calls a wrong
    path still gets TAXII's error, and a browser gets the console's page."""

    def __init__(self, app: Starlette, reserved: tuple[str, ...]) -> None:
        super().__init__("", app=app)
        self.reserved = reserved

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if scope["type"] == "http" and any(path == r or path.startswith(r + "/")
                                           for r in self.reserved):
            return Match.NONE, {}
        accept = b",".join(v for k, v in scope.get("headers", ()) if k == b"accept")
        if b"application/taxii+json" in accept.lower():
            return Match.NONE, {}
        return super().matches(scope)


def mount(app: Starlette, node: Node) -> Console:
    """Serve the console on ``app`` (the TAXII application) at ``/``."""
    console = Console(node)
    reserved = ("/taxii2", f"/{node.config.api_root}")
    app.router.routes.append(_ConsoleMount(console.app, reserved))
    return console
