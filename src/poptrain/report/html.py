"""The static HTML report: one self-contained file (Plotly embedded), readable offline."""

from __future__ import annotations

import html
import math
import time
from typing import TYPE_CHECKING, Any

import plotly.io as pio

from .figures import lineage_tree_figure, schedules_figure, scores_figure, winning_lineage_figure

if TYPE_CHECKING:
    from ..result import Result

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.summary span { margin-right: 2em; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], caption: str) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def report_html(result: "Result") -> str:
    """The report as one HTML string: figures, the best members, explore counts."""
    spec, name = result.spec, result.name
    metric = spec.get("metric") or "score"
    frame, events = result.frame(), result.events()
    progress = result.progress()
    best = progress.best_member
    curve = result.winning_lineage(best) if best is not None else frame.iloc[0:0]
    figures = [scores_figure(frame, events, metric)]
    if best is not None:
        figures.append(winning_lineage_figure(curve, metric))
    figures += [schedules_figure(frame, curve, spec), lineage_tree_figure(result.tree(), events, best)]
    plots = [pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
             for i, fig in enumerate(figures)]
    members = sorted((m for m in result.store.members(name) if m.last_score is not None),
                     key=lambda m: m.last_score if spec["mode"] == "min" else -m.last_score)
    best_rows = [{"member": m.id, metric: m.last_score, "step": m.step, "status": m.status, **m.hparams}
                 for m in members[:10]]
    counts = result.explore_counts().reset_index().to_dict("records") if events else []
    summary = (f"<span>{spec['population']} members × {spec['steps']} intervals</span>"
               f"<span>{progress.steps_done}/{progress.steps_total} intervals trained</span>"
               f"<span>{len(events)} exploits</span>"
               f"<span>best {metric}: {_fmt(progress.best_score)} (member {best})</span>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>poptrain: {html.escape(name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>PBT experiment {html.escape(name)}</h1>"
            f"<p class='summary'>{summary}</p><p>store {html.escape(result.store.url)} · written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}</p>"
            + _table(best_rows, f"best members by {metric} ({spec['mode']})")
            + "".join(plots)
            + _table(counts, "explore: how often each hyperparameter was perturbed or resampled")
            + "</body></html>")


def write_report(result: "Result", path: str) -> str:
    """Write the report to `path` (one file that needs no network) and return the path."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(report_html(result))
    return path
