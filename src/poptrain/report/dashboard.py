"""The live dashboard: a read-only web page over a store, redrawn while a run is live.

It serves HTML pages and JSON of the same figures the report draws; it opens the store without
writing to it and takes nothing from a request but names it looks up (an experiment, a member).
Bound to an address other than loopback it asks every request for an access token (`TokenGate`):
`?token=` once (then a cookie), or an `Authorization: Bearer` header.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import parse_qsl, quote, urlencode

from plotly.offline import get_plotlyjs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import PoptrainError, SpecError, StorageError
from ..redact import scrub, shown
from ..result import Result
from ..store import Store, open_store
from .compare import COMPARISON, compare_figures, compared, summary_table
from .figures import chart_div, charts, figure_json
from .live import Cursor, members_table, updates, whole
from .page import Html, document, link, one_line, table, text
from .script import SCRIPT

# Only the dashboard's own scripts run: no inline script or event handler, nothing from elsewhere.
# Styles may be inline (the page's own, and the ones Plotly sets on what it draws).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

SCRIPTS = "<script src='/static/plotly.min.js'></script><script src='/static/dashboard.js'></script>"


def _page(title: str, body: str, scripts: str = "") -> str:
    return document(title, body + scripts, head="<link rel='icon' href='data:,'>")  # no request for a favicon


log = logging.getLogger("poptrain")

TOKEN_ENV = "POPTRAIN_DASHBOARD_TOKEN"  # the --token flag's default (a flag is seen by everyone who lists processes)
EVERY_INTERFACE = ("0.0.0.0", "::", "")


def _error_page(status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    """A page of one line: the message (any URL's password masked), never a traceback or SQL."""
    body = (f"<h1>poptrain dashboard</h1><p class='error'>{text(one_line(scrub(message), 300))}</p>"
            f"<p><a href='/'>experiments</a></p>")
    return HTMLResponse(_page("poptrain: error", body), status_code=status, headers=headers)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: localhost, 127.0.0.0/8 or ::1."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def needs_token(host: str, token: str | None = None) -> bool:
    """Whether the dashboard on `host` asks for a token: always off loopback, and on loopback when one is given."""
    return token is not None or not is_loopback(host)


def access_token(host: str, token: str | None = None) -> str | None:
    """The token the dashboard on `host` asks for: the one given, a fresh random one off loopback, else none."""
    if token is not None:
        if len(token.strip()) < 8:
            raise SpecError("--token must be at least 8 characters (or leave it out: one is generated when the "
                            "dashboard listens beyond 127.0.0.1)")
        return token.strip()
    return secrets.token_urlsafe(24) if needs_token(host) else None


def startup_lines(storage: str, host: str, port: int, token: str | None, generated: bool) -> list[str]:
    """What the dashboard prints once at start-up: where it is, and the token when it made one (never logged)."""
    where = f"[{host}]" if ":" in host else host
    url = f"http://{where}:{port}/"
    lines = [f"dashboard of {shown(storage)} on {url} (Ctrl-C stops it)"]
    if token is not None and generated:
        lines.append(f"open {url}?token={token} (its access token, shown only now; or send "
                     f"`Authorization: Bearer {token}`)")
    elif token is not None:
        lines.append(f"it asks for the token you gave: open {url}?token=TOKEN once, or send "
                     f"`Authorization: Bearer TOKEN`")
    if host in EVERY_INTERFACE:
        log.warning("the dashboard listens on every network interface (%s): whoever reaches port %d and holds "
                    "its token reads every experiment in the store; use --host 127.0.0.1 and an SSH tunnel to "
                    "keep it on this machine", host or "*", port)
    return lines


class TokenGate:
    """ASGI middleware: a request needs the token (`?token=`, which sets a cookie, or a Bearer header), else 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token
        self.cookie = "poptrain_token_" + hashlib.sha256(token.encode()).hexdigest()[:8]  # one per dashboard

    def accepts(self, given: str | None) -> bool:
        """Whether `given` is the token (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if "token" in request.query_params and self.accepts(request.query_params["token"]):
            # the token leaves the address at once (history, logs, Referer): a cookie carries it from now on
            rest = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                                   keep_blank_values=True) if k != "token"]
            raw = scope.get("raw_path")  # as sent: a name's %2F stays one path segment
            path = "/" + (raw.decode("latin-1") if raw else quote(scope["path"])).lstrip("/")  # never //elsewhere
            location = path + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(location, status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="lax", path="/")
        else:
            bearer = request.headers.get("authorization", "")
            if (bearer[:7].lower() == "bearer " and self.accepts(bearer[7:].strip())) \
                    or self.accepts(request.cookies.get(self.cookie)):
                await self.app(scope, receive, send)
                return
            response = _error_page(401, "this dashboard needs its access token: open the address it printed at "
                                        "start-up (…/?token=TOKEN) once, or send the header Authorization: Bearer "
                                        "TOKEN", headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: every response carries the Content-Security-Policy and no-sniff headers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"content-security-policy", CSP.encode()),
                                      (b"x-content-type-options", b"nosniff"),
                                      (b"referrer-policy", b"no-referrer")]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(storage: str, refresh_seconds: float = 2.0, token: str | None = None) -> Any:
    """The dashboard for the store at `storage` (opened on each request, read-only), as an ASGI app.

    With a `token`, every request must carry it (see `TokenGate`); `access_token` says when one is needed.
    """

    def store() -> Store:
        return open_store(storage, create=False, read_only=True)

    def result(request: Request) -> Result:
        return Result(store(), request.path_params["name"])

    async def experiments(request: Request) -> Response:
        s = store()
        rows = [[Html(f"<input type='checkbox' class='pick' value='{text(name)}' aria-label='compare {text(name)}'>"),
                 *_experiment_row(s, name)] for name in s.experiments()]
        listing = (table(["compare", "experiment", "members", "intervals", "done", "failed", "exploits", "best"], rows,
                         text_columns=["members"])
                   + "<p><a id='compare' href='/compare' hidden>compare the experiments ticked</a> "
                     "<span id='chosen'></span></p>") if rows else "<p>This store holds no experiments yet.</p>"
        body = f"<h1>poptrain dashboard</h1><p>store {text(shown(storage))}</p>{listing}"
        return HTMLResponse(_page("poptrain dashboard", body, "<script src='/static/dashboard.js'></script>"))

    async def comparison(request: Request) -> Response:
        names = request.query_params.getlist("experiment")
        if not names:
            return _error_page(400, "tick the experiments to compare on the list of experiments (or open "
                                    "/compare?experiment=A&experiment=B)")
        s = store()
        for name in names:
            s.get_spec(name)  # a name the store lacks: one line naming the experiments it holds
        query = urlencode([("experiment", name) for name in names])
        live = (f"<div id='live' hidden data-page='compare' data-api='/api/compare?{text(query)}' "
                f"data-every='{int(refresh_seconds * 1000)}'></div>")
        links = " · ".join(f"<a href='{text(link('experiments', name))}'>{text(name)}</a>" for name in names)
        body = (f"<p><a href='/'>experiments</a></p><h1>compared: {links}</h1>{live}"
                f"<p><span id='status'>loading</span></p><div id='summary'></div>"
                + "".join(chart_div(chart) for chart in COMPARISON))
        return HTMLResponse(_page(f"poptrain: {', '.join(names)}", body, SCRIPTS))

    async def comparison_data(request: Request) -> Response:
        s = store()
        items = [compared(Result(s, name)) for name in request.query_params.getlist("experiment")]
        return JSONResponse({"figures": {k: figure_json(f) for k, f in compare_figures(items).items()},
                             "summary_html": summary_table(items), "live": any(c.live for c in items)})

    async def experiment(request: Request) -> Response:
        r = result(request)
        divs = "".join(chart_div(chart) for chart in charts(r.objectives()))
        api = link('api', 'experiments', r.name)
        live = (f"<div id='live' hidden data-page='experiment' data-api='{text(api)}' "
                f"data-updates='{text(api + '/updates')}' data-every='{int(refresh_seconds * 1000)}'></div>")
        statuses = "".join(f"<option value='{s}'>{s}</option>" for s in ("active", "done", "failed"))
        filters = (f"<p class='filters'><label>status <select id='filter-status'><option value=''>all</option>"
                   f"{statuses}</select></label> <label>members <input id='filter-member' size='14' "
                   f"placeholder='ids, e.g. 0, 3'></label> <span id='shown'></span></p>")
        body = (f"<p><a href='/'>experiments</a></p><h1>{text(r.name)}</h1>{live}"
                f"<p>intervals trained: <b id='steps'>…</b> · <span id='status'>loading</span></p>{filters}{divs}"
                f"<div id='members'>{members_table(r)}</div>")
        return HTMLResponse(_page(f"poptrain: {r.name}", body, SCRIPTS))

    async def figures(request: Request) -> Response:
        return JSONResponse(whole(result(request)))

    async def new_since(request: Request) -> Response:
        r = result(request)
        try:
            cursor = Cursor.from_json(await request.json())
        except (ValueError, PoptrainError) as exc:  # not JSON, or not a cursor
            message = str(exc) if isinstance(exc, PoptrainError) else "the update request's body is not JSON"
            return JSONResponse({"error": message}, status_code=400)
        return JSONResponse(updates(r, cursor))

    async def member(request: Request) -> Response:
        r = result(request)
        try:
            member_id = int(request.path_params["member"])
        except ValueError:
            return _error_page(404, f"{request.path_params['member']!r} is not a member id")
        ids = {m.id for m in r.store.members(r.name)}
        if member_id not in ids:
            known = f"its members: 0–{max(ids)}" if ids else "it has no members yet"
            return _error_page(404, f"experiment {r.name!r} has no member {member_id} ({known})")
        schedule = r.schedule(member_id)
        if len(schedule):
            schedule = schedule.drop_duplicates(subset=[c for c in schedule if c != "step"])
        lineage = r.lineage(member_id)
        def to(m: Any) -> Html:  # a link to another member's page: the lineage is followed from page to page
            return Html(f"<a class='member' href='{text(link('experiments', r.name, 'members', int(m)))}'>{int(m)}</a>")

        copies = table(["member", "step", "copied member", "its step"],
                       [[to(e.member), e.step, to(e.source), e.source_step] for e in lineage.itertuples()]) \
            if len(lineage) else "<p>none: it never copied another member</p>"
        ancestors = r.ancestors(member_id)
        descent = ("<p>its weights descend from members " + " ← ".join(to(m) for m in ancestors) + "</p>"
                   if ancestors else "")
        record = r.store.member(r.name, member_id)
        error = f" · last error: {text(one_line(record.error))}" if record.error else ""
        changes = table(schedule.columns, schedule.itertuples(index=False)) if len(schedule) else \
            "<p>none yet: it has not reported</p>"
        body = (f"<p><a href='{text(link('experiments', r.name))}'>{text(r.name)}</a></p>"
                f"<h1>member {member_id}</h1><p>{text(record.status)} at step {record.step}, "
                f"{record.failures} failure(s){error}</p><h2>hyperparameters (where they changed)</h2>"
                + changes + "<h2>its lineage: the exploits that made it</h2>" + descent + copies)
        return HTMLResponse(_page(f"poptrain: member {member_id}", body))

    async def plotly_js(request: Request) -> Response:
        return Response(PLOTLY_JS, media_type="application/javascript", headers={"Cache-Control": "max-age=86400"})

    async def live_js(request: Request) -> Response:
        return Response(SCRIPT, media_type="application/javascript")

    async def storage_error(request: Request, exc: Exception) -> Response:
        return _error_page(404, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error_page(exc.status_code, "no such page" if exc.status_code == 404 else str(exc.detail))

    async def any_error(request: Request, exc: Exception) -> Response:  # never a traceback or SQL in the browser
        log.error("dashboard: %s failed", request.url.path, exc_info=exc)
        return _error_page(500, f"the dashboard could not read this page ({type(exc).__name__}); the details are in "
                                f"the log of the process that serves it")

    routes = [
        Route("/", experiments),
        Route("/experiments/{name}", experiment),
        Route("/experiments/{name}/members/{member}", member),
        Route("/api/experiments/{name}", figures),
        Route("/api/experiments/{name}/updates", new_since, methods=["POST"]),
        Route("/compare", comparison),
        Route("/api/compare", comparison_data),
        Route("/static/plotly.min.js", plotly_js),
        Route("/static/dashboard.js", live_js),
    ]
    app = Starlette(routes=routes, exception_handlers={
        StorageError: storage_error, PoptrainError: storage_error, HTTPException: http_error, Exception: any_error})
    return SecurityHeaders(app if token is None else TokenGate(app, token))


def _experiment_row(s: Store, name: str) -> list[Any]:
    """One experiment's row of the list; a spec or progress it cannot read makes the row say so, not the page fail."""
    anchor = Html(f"<a href='{text(link('experiments', name))}'>{text(name)}</a>")
    try:
        p = s.progress(name, s.get_spec(name)["mode"])
    except Exception as exc:  # noqa: BLE001 - one unreadable experiment must not hide the others
        return [anchor, f"unreadable: {one_line(scrub(f'{type(exc).__name__}: {exc}'), 200)}", "", "", "", "", ""]
    return [anchor, p.members, f"{p.steps_done}/{p.steps_total}", p.done, p.failed, p.exploits, p.best_score]


PLOTLY_JS = get_plotlyjs()


def serve(storage: str, host: str = "127.0.0.1", port: int = 8050, token: str | None = None,
          announce: Callable[[str], None] | None = print) -> None:
    """Serve the dashboard until interrupted (on 127.0.0.1 unless told otherwise; elsewhere with a token).

    `announce` prints the start-up lines, a generated token among them (it is never logged); None
    when the caller printed them already (`access_token`, `startup_lines`) and passes its token.
    """
    import uvicorn

    required = access_token(host, token) if announce is not None else token
    if announce is not None:
        for line in startup_lines(storage, host, port, required, generated=token is None):
            announce(line)
    uvicorn.run(create_app(storage, token=required), host=host, port=port, log_level="warning")
