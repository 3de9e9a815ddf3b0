"""The live dashboard: a read-only web page over a store, redrawn while a run is live.

It serves HTML pages and JSON of the same figures the report draws; it opens the store without
writing to it and takes nothing from a request but names it looks up (an experiment, a member).
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import plotly.io as pio
from plotly.offline import get_plotlyjs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import PoptrainError, StorageError
from ..result import Result
from ..store import Store, open_store
from .figures import lineage_tree_figure, schedules_figure, scores_figure, winning_lineage_figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.chart { min-height: 320px; }
.error { color: #a00; }
"""

LIVE_SCRIPT = """
const source = %(api)s;
async function refresh() {
  try {
    const response = await fetch(source, {cache: "no-store"});
    if (!response.ok) { document.getElementById("status").textContent = "the store did not answer"; return; }
    const data = await response.json();
    for (const [id, figure] of Object.entries(data.figures)) {
      await Plotly.react(id, figure.data, figure.layout, {displaylogo: false});
    }
    document.getElementById("steps").textContent = data.steps_done;
    document.getElementById("members").innerHTML = data.members_html;
    document.getElementById("status").textContent = data.status;
    if (data.live) { setTimeout(refresh, %(every)d); }
  } catch (err) {
    document.getElementById("status").textContent = "waiting for the dashboard server";
    setTimeout(refresh, %(every)d);
  }
}
refresh();
"""


def _page(title: str, body: str, scripts: str = "") -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<link rel='icon' href='data:,'><style>{STYLE}</style></head><body>{body}{scripts}</body></html>")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    return "—" if value is None else html.escape(str(value))


def _error_page(status: int, message: str) -> HTMLResponse:
    body = f"<h1>poptrain dashboard</h1><p class='error'>{html.escape(message)}</p><p><a href='/'>experiments</a></p>"
    return HTMLResponse(_page("poptrain: error", body), status_code=status)


def create_app(storage: str, refresh_seconds: float = 2.0) -> Starlette:
    """The dashboard for the store at `storage` (opened on each request, read-only)."""

    def store() -> Store:
        return open_store(storage, create=False)

    def result(request: Request) -> Result:
        return Result(store(), request.path_params["name"])

    async def experiments(request: Request) -> Response:
        s = store()
        rows = []
        for name in s.experiments():
            spec = s.get_spec(name)
            p = s.progress(name, spec["mode"])
            link = f"<a href='/experiments/{html.escape(name)}'>{html.escape(name)}</a>"
            rows.append(f"<tr><td>{link}</td><td>{p.members}</td><td>{p.steps_done}/{p.steps_total}</td>"
                        f"<td>{p.done}</td><td>{p.failed}</td><td>{p.exploits}</td><td>{_fmt(p.best_score)}</td></tr>")
        table = ("<table><tr><th>experiment</th><th>members</th><th>intervals</th><th>done</th><th>failed</th>"
                 "<th>exploits</th><th>best</th></tr>" + "".join(rows) + "</table>") if rows else \
            "<p>This store holds no experiments yet.</p>"
        body = f"<h1>poptrain dashboard</h1><p>store {html.escape(storage)}</p>{table}"
        return HTMLResponse(_page("poptrain dashboard", body))

    async def experiment(request: Request) -> Response:
        r = result(request)
        name = html.escape(r.name)
        charts = "".join(f"<div id='{i}' class='chart'></div>" for i in ("scores", "lineage", "schedules", "tree"))
        body = (f"<p><a href='/'>experiments</a></p><h1>{name}</h1>"
                f"<p>intervals trained: <b id='steps'>…</b> · <span id='status'>loading</span></p>{charts}"
                f"<div id='members'>{_members_table(r)}</div>")
        api = json.dumps(f"/api/experiments/{r.name}")
        script = (f"<script src='/static/plotly.min.js'></script>"
                  f"<script>{LIVE_SCRIPT % {'api': api, 'every': int(refresh_seconds * 1000)}}</script>")
        return HTMLResponse(_page(f"poptrain: {r.name}", body, script))

    async def figures(request: Request) -> Response:
        r = result(request)
        frame, events, progress = r.frame(), r.events(), r.progress()
        metric = r.spec.get("metric") or "score"
        best = progress.best_member
        curve = r.winning_lineage(best) if best is not None else frame.iloc[0:0]
        drawn = {"scores": scores_figure(frame, events, metric), "schedules": schedules_figure(frame, curve, r.spec),
                 "tree": lineage_tree_figure(r.tree(), events, best)}
        if best is not None:
            drawn["lineage"] = winning_lineage_figure(curve, metric)
        status = (f"{progress.active} active, {progress.done} done, {progress.failed} failed · "
                  f"{progress.exploits} exploits · best {_fmt(progress.best_score)}")
        return JSONResponse({"figures": {k: json.loads(pio.to_json(f)) for k, f in drawn.items()},
                             "steps_done": progress.steps_done, "live": progress.active > 0, "status": status,
                             "members_html": _members_table(r)})

    async def member(request: Request) -> Response:
        r = result(request)
        try:
            member_id = int(request.path_params["member"])
        except ValueError:
            return _error_page(404, f"{request.path_params['member']!r} is not a member id")
        ids = {m.id for m in r.store.members(r.name)}
        if member_id not in ids:
            return _error_page(404, f"experiment {r.name!r} has no member {member_id} (its members: 0–{max(ids)})")
        schedule = r.schedule(member_id).drop_duplicates(subset=[c for c in r.schedule(member_id) if c != "step"])
        lineage = r.lineage(member_id)
        body = (f"<p><a href='/experiments/{html.escape(r.name)}'>{html.escape(r.name)}</a></p>"
                f"<h1>member {member_id}</h1><h2>hyperparameters (where they changed)</h2>"
                + schedule.to_html(index=False, float_format=lambda v: f"{v:.4g}")
                + "<h2>exploits that made it</h2>"
                + (lineage[["member", "step", "source", "source_step"]].to_html(index=False) if len(lineage)
                   else "<p>none: it never copied another member</p>"))
        return HTMLResponse(_page(f"poptrain: member {member_id}", body))

    async def plotly_js(request: Request) -> Response:
        return Response(PLOTLY_JS, media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    async def storage_error(request: Request, exc: Exception) -> Response:
        return _error_page(404, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error_page(exc.status_code, "no such page" if exc.status_code == 404 else str(exc.detail))

    async def any_error(request: Request, exc: Exception) -> Response:  # never a traceback in the browser
        return _error_page(500, f"the dashboard could not read this page: {type(exc).__name__}: {exc}")

    routes = [
        Route("/", experiments),
        Route("/experiments/{name}", experiment),
        Route("/experiments/{name}/members/{member}", member),
        Route("/api/experiments/{name}", figures),
        Route("/static/plotly.min.js", plotly_js),
    ]
    return Starlette(routes=routes, exception_handlers={
        StorageError: storage_error, PoptrainError: storage_error, HTTPException: http_error, Exception: any_error})


def _members_table(r: Result) -> str:
    rows = []
    for m in r.store.members(r.name):
        link = f"<a href='/experiments/{html.escape(r.name)}/members/{m.id}'>{m.id}</a>"
        hp = ", ".join(f"{k}={_fmt(v)}" for k, v in m.hparams.items())
        rows.append(f"<tr><td>{link}</td><td>{m.status}</td><td>{m.step}</td><td>{_fmt(m.last_score)}</td>"
                    f"<td>{hp}</td></tr>")
    return ("<table><tr><th>member</th><th>status</th><th>step</th><th>score</th><th>hyperparameters</th></tr>"
            + "".join(rows) + "</table>")


PLOTLY_JS = get_plotlyjs()


def serve(storage: str, host: str = "127.0.0.1", port: int = 8050) -> None:
    """Serve the dashboard until interrupted (on 127.0.0.1 unless told otherwise)."""
    import uvicorn

    uvicorn.run(create_app(storage), host=host, port=port, log_level="warning")
