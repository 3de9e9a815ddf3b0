"""The static HTML report: one self-contained file (Plotly embedded), readable offline.

Each figure travels as JSON in a data block (`<script type="application/json">`, never run) and
one script of poptrain's draws them; a Content-Security-Policy in the page lets only Plotly and
that script run (by their hashes), so markup a store smuggled past the escaping still runs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING, Any

import plotly.io as pio
from plotly.offline import get_plotlyjs

from ..errors import PoptrainError
from ..files import check_output_file, write_output
from ..redact import shown as shown_url
from .figures import chart_div, charts, draw, run_data
from .page import document, number, one_line, table, text

if TYPE_CHECKING:
    from ..result import Result

DRAW = """
for (const chart of document.querySelectorAll("div.chart[data-figure]")) {
  const figure = JSON.parse(document.getElementById("figure-" + chart.dataset.figure).textContent);
  Plotly.newPlot(chart, figure.data, figure.layout, {displaylogo: false, responsive: true});
}
"""


def _json_block(figure: Any) -> str:
    """A figure's JSON, safe inside a script element (no `<`, `>` or `&` that could end it)."""
    return pio.to_json(figure).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def report_html(result: "Result") -> str:
    """The report as one HTML string: figures, the best members, failures, explore counts."""
    spec, name = result.spec, result.name
    data = run_data(result)
    progress = result.progress()
    figures = draw(data)
    shown = [chart for chart in charts(data.objectives) if chart.name in figures]
    divs = [chart_div(chart) for chart in shown]
    blocks = [f"<script type='application/json' id='figure-{chart.name}'>{_json_block(figures[chart.name])}</script>"
              for chart in shown]
    members = result.store.members(name)
    scored = result.best_members()
    names = list(spec.get("space", {}))
    best_table = table(["member", data.metric, "step", "status", *names],
                       [[m.id, m.last_score, m.step, m.status, *(m.hparams.get(n) for n in names)] for m in scored[:10]],
                       caption=f"best members by {data.metric} ({spec['mode']})") if scored else ""
    raised = [m for m in members if m.error]
    failures = table(["member", "status", "failures", "last error"],
                     [[m.id, m.status, m.failures, one_line(m.error or "")] for m in raised],
                     caption="members whose code raised", text_columns=["last error"]) if raised else ""
    counts = result.explore_counts().reset_index() if data.events else None
    explore = table(counts.columns, counts.itertuples(index=False),
                    caption="explore: how often each hyperparameter was perturbed or resampled") \
        if counts is not None and len(counts) else ""
    summary = (f"<span>{text(spec['population'])} members × {text(spec['steps'])} intervals</span>"
               f"<span>{progress.steps_done}/{progress.steps_total} intervals trained</span>"
               f"<span>{len(data.events)} exploits</span>"
               f"<span>best {text(data.metric)}: {text(number(progress.best_score))} "
               f"(member {text(data.best)})</span>")
    body = (f"<h1>PBT experiment {text(name)}</h1><p class='summary'>{summary}</p>"
            f"<p>store {text(shown_url(result.store.url))} · written {time.strftime('%Y-%m-%d %H:%M:%S')}</p>"
            + best_table + "".join(divs) + failures + explore + "".join(blocks))
    plotly_js = get_plotlyjs()
    policy = (f"default-src 'none'; script-src {_hash(plotly_js)} {_hash(DRAW)}; style-src 'unsafe-inline'; "
              "img-src data:; font-src data:; base-uri 'none'; form-action 'none'")
    head = f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">"
    return document(f"poptrain: {name}", body + f"<script>{plotly_js}</script><script>{DRAW}</script>", head=head)


def write_report(result: "Result", path: str) -> str:
    """Write the report to `path` (one file that needs no network) and return the path."""
    check_output_file(path, "the report")
    try:
        page = report_html(result)
    except KeyError as exc:  # a stored spec without a field the report needs
        raise PoptrainError(f"experiment {result.name!r} has a stored spec without {exc}: it cannot be drawn") from None
    write_output(path, page, "the report")
    return path
