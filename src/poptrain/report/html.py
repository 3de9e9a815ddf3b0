"""The static HTML report: one self-contained file (Plotly embedded), readable offline.

Each figure travels as JSON in a data block (`<script type="application/json">`, never run) and
one script of poptrain's draws them; a Content-Security-Policy in the page lets only Plotly and
that script run (by their hashes), so markup a store smuggled past the escaping still runs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import TYPE_CHECKING, Any, Sequence

from plotly.offline import get_plotlyjs

from ..errors import PoptrainError
from ..files import check_output_file, write_output
from ..redact import shown as shown_url
from .compare import COMPARISON, compare_figures, compared, summary_table
from .figures import chart_div, charts, draw, figure_json, run_data
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
    return json.dumps(figure_json(figure)).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def _page(title: str, body: str, figures: dict[str, Any]) -> str:
    """A whole report page: `body`, each figure's JSON block, Plotly and the drawing script, allowed by their hashes."""
    blocks = "".join(f"<script type='application/json' id='figure-{text(name)}'>{_json_block(figure)}</script>"
                     for name, figure in figures.items())
    plotly_js = get_plotlyjs()
    policy = (f"default-src 'none'; script-src {_hash(plotly_js)} {_hash(DRAW)}; style-src 'unsafe-inline'; "
              "img-src data:; font-src data:; base-uri 'none'; form-action 'none'")
    head = f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">"
    return document(title, body + blocks + f"<script>{plotly_js}</script><script>{DRAW}</script>", head=head)


def experiment_tables(result: "Result", metric: str, exploited: bool) -> tuple[str, str]:
    """An experiment's tables: its best members; then the members whose code raised and the explore counts."""
    spec, name = result.spec, result.name
    members = result.store.members(name)
    scored = result.best_members()
    names = list(spec.get("space", {}))
    best_table = table(["member", metric, "step", "status", *names],
                       [[m.id, m.last_score, m.step, m.status, *(m.hparams.get(n) for n in names)] for m in scored[:10]],
                       caption=f"best members by {metric} ({spec['mode']})") if scored else ""
    raised = [m for m in members if m.error]
    failures = table(["member", "status", "failures", "last error"],
                     [[m.id, m.status, m.failures, one_line(m.error or "")] for m in raised],
                     caption="members whose code raised", text_columns=["last error"]) if raised else ""
    counts = result.explore_counts().reset_index() if exploited else None
    explore = table(counts.columns, counts.itertuples(index=False),
                    caption="explore: how often each hyperparameter was perturbed or resampled") \
        if counts is not None and len(counts) else ""
    return best_table, failures + explore


def _summary(result: "Result", metric: str) -> str:
    """An experiment's one-line summary: size, intervals trained, exploits, best score."""
    spec, progress = result.spec, result.progress()
    return (f"<p class='summary'><span>{text(spec['population'])} members × {text(spec['steps'])} intervals</span>"
            f"<span>{progress.steps_done}/{progress.steps_total} intervals trained</span>"
            f"<span>{progress.exploits} exploits</span>"
            f"<span>best {text(metric)}: {text(number(progress.best_score))} "
            f"(member {text(progress.best_member)})</span></p>")


def _written(result: "Result") -> str:
    return f"<p>store {text(shown_url(result.store.url))} · written {time.strftime('%Y-%m-%d %H:%M:%S')}</p>"


def report_html(result: "Result") -> str:
    """The report as one HTML string: figures, the best members, failures, explore counts."""
    data = run_data(result)
    figures = draw(data)
    shown = [chart for chart in charts(data.objectives) if chart.name in figures]
    best, rest = experiment_tables(result, data.metric, bool(data.events))
    body = (f"<h1>PBT experiment {text(result.name)}</h1>{_summary(result, data.metric)}{_written(result)}"
            + best + "".join(chart_div(chart) for chart in shown) + rest)
    return _page(f"poptrain: {result.name}", body, {chart.name: figures[chart.name] for chart in shown})


def comparison_html(results: Sequence["Result"]) -> str:
    """The report of several experiments: their scores against step and final scores side by side, then each one's tables."""
    items = [compared(r) for r in results]
    names = ", ".join(r.name for r in results)
    parts = [f"<h1>PBT experiments compared: {text(names)}</h1>{_written(results[0])}", summary_table(items),
             *(chart_div(chart) for chart in COMPARISON)]
    for r, c in zip(results, items):
        best, rest = experiment_tables(r, c.metric, c.exploits > 0)
        parts.append(f"<h2>{text(r.name)}</h2>{_summary(r, c.metric)}{best}{rest}")
    return _page(f"poptrain: {names}", "".join(parts), compare_figures(items))


def write_report(result: "Result | Sequence[Result]", path: str) -> str:
    """Write the report of one experiment, or the comparison of several, to `path` (one file, no network); return it."""
    check_output_file(path, "the report")
    results = [result] if not isinstance(result, (list, tuple)) else list(result)
    try:
        page = report_html(results[0]) if len(results) == 1 else comparison_html(results)
    except KeyError as exc:  # a stored spec without a field the report needs
        who = " or ".join(f"experiment {r.name!r}" for r in results)
        raise PoptrainError(f"{who} has a stored spec without {exc}: it cannot be drawn") from None
    write_output(path, page, "the report")
    return path
