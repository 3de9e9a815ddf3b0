"""Experiments side by side (PBT and its random-search baseline, say): the one comparison the report and the dashboard draw.

`compared` reads what an experiment contributes; `COMPARISON` is the list of comparison figures,
drawn from several of them; `summary_table` is their table. Names reach Plotly through `plot_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import pandas as pd
import plotly.graph_objects as go

from ..analysis import final_scores, final_summary, score_by_step
from .figures import PALETTE, Chart
from .page import Html, plot_text, table

if TYPE_CHECKING:
    from ..result import Result


@dataclass(frozen=True)
class Compared:
    """What one experiment brings to a comparison: its score against step, its members' final scores, its summary."""

    name: str
    metric: str
    mode: str
    curve: pd.DataFrame  # step, best, mean, members
    finals: list[float]
    members: int
    steps_done: int
    steps_total: int
    exploits: int
    live: bool


def compared(result: "Result") -> Compared:
    """One experiment's part of a comparison, read from its store."""
    spec, progress = result.spec, result.progress()
    return Compared(name=result.name, metric=spec.get("metric") or "score", mode=spec["mode"],
                    curve=score_by_step(result.frame(), spec["mode"]),
                    finals=final_scores(result.store.members(result.name)), members=progress.members,
                    steps_done=progress.steps_done, steps_total=progress.steps_total, exploits=progress.exploits,
                    live=progress.active > 0)


def _metric_title(items: Sequence[Compared]) -> str:
    """The y axis: the one metric, or each experiment's when they differ."""
    metrics = {c.metric for c in items}
    if len(metrics) == 1:
        return plot_text(items[0].metric)
    return plot_text(" / ".join(f"{c.name}: {c.metric}" for c in items))


def curves_figure(items: Sequence[Compared]) -> go.Figure:
    """Each experiment's best (solid) and mean (dashed) score at every step, one colour per experiment."""
    fig = go.Figure()
    for i, c in enumerate(items):
        colour, name = PALETTE[i % len(PALETTE)], plot_text(c.name)
        fig.add_trace(go.Scatter(x=list(c.curve.step), y=list(c.curve.best), mode="lines", name=f"{name}: best",
                                 legendgroup=name, line={"color": colour, "width": 2.5}))
        fig.add_trace(go.Scatter(x=list(c.curve.step), y=list(c.curve["mean"]), mode="lines", name=f"{name}: mean",
                                 legendgroup=name, line={"color": colour, "width": 1.5, "dash": "dash"}))
    fig.update_layout(title="Best (solid) and mean (dashed) score of the population at each step",
                      xaxis_title="step", yaxis_title=_metric_title(items))
    return fig


def finals_figure(items: Sequence[Compared]) -> go.Figure:
    """The distribution of each experiment's final scores (the latest while it runs): a box and every member's point."""
    fig = go.Figure()
    for i, c in enumerate(items):
        fig.add_trace(go.Box(y=c.finals, name=plot_text(c.name), boxpoints="all", jitter=0.4, pointpos=0,
                             marker={"color": PALETTE[i % len(PALETTE)]}, boxmean=True))
    fig.update_layout(title="Final score of every member (latest while a run is live; dashed line: the mean)",
                      yaxis_title=_metric_title(items), showlegend=False)
    return fig


# The comparison's figures, in page order: the report of several experiments and the dashboard's comparison page.
COMPARISON: tuple[Chart, ...] = (
    Chart("compare-scores", "best and mean score against step", curves_figure),
    Chart("compare-finals", "distribution of final scores", finals_figure),
)


def compare_figures(items: Sequence[Compared]) -> dict[str, go.Figure]:
    """The comparison's figures by name, in page order."""
    return {chart.name: chart.draw(items) for chart in COMPARISON}


def summary_table(items: Sequence[Compared]) -> Html:
    """One row per experiment: members, intervals trained, exploits, best, mean and worst final score."""
    rows = []
    for c in items:
        rows.append([c.name, c.members, f"{c.steps_done}/{c.steps_total}", c.exploits, *final_summary(c.finals, c.mode)])
    metrics = sorted({f"{c.metric} ({c.mode})" for c in items})
    return table(["experiment", "members", "intervals", "exploits", "best final", "mean final", "worst final"], rows,
                 caption=f"experiments compared by {', '.join(metrics)}")
