"""Plotly figures of a PBT run, drawn from the analysis frames (data first, drawing second).

The one place that draws: the HTML report, the dashboard and `Result.plot_*` all call these, and
`CHARTS` is the one list of figures (names, titles, order) that the report and the dashboard show.
Names and values a store holds reach Plotly through `plot_text`, which Plotly shows literally.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..space import LogUniform, parse_space
from ..store import Event
from .page import plot_text, text

if TYPE_CHECKING:
    from ..result import Result

PALETTE = qualitative.Plotly + qualitative.D3


def _colour(member: int) -> str:
    return PALETTE[member % len(PALETTE)]


def _values(column: pd.Series) -> list[Any]:
    """A hyperparameter's values for an axis: numbers as they are, a Choice's strings through `plot_text`."""
    return [plot_text(v) if isinstance(v, str) else v for v in column]


def score_traces(frame: pd.DataFrame, events: list[Event]) -> list[dict[str, Any]]:
    """The scores figure's traces as plain data: a line per member, the exploits as markers.

    Plain dicts, not Plotly objects: building 1,000 validated traces takes seconds, and the
    dashboard appends these to the figure it drew (by trace name) on every poll.
    """
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "x": rows.step.tolist(), "y": rows.score.tolist(), "mode": "lines",
         "name": f"member {member}", "line": {"color": _colour(int(member)), "width": 1.5}, "legendgroup": str(member)}
        for member, rows in frame.groupby("member")]
    if events:
        traces.append({
            "type": "scatter", "x": [e.step for e in events], "y": _scores_at(frame, events),
            "mode": "markers", "name": "exploit", "marker": {"symbol": "x", "size": 9, "color": "black"},
            "customdata": [e.member for e in events],
            "text": [f"member {e.member} copied member {e.source} (its step {e.source_step})" for e in events],
            "hovertemplate": "%{text}<extra></extra>"})
    return traces


def _scores_at(frame: pd.DataFrame, events: list[Event]) -> list[Any]:
    """Each exploit's member's score at its step, or at the latest step drawn before it (a thinned frame)."""
    if not len(frame):
        return [None] * len(events)
    wanted = pd.DataFrame({"member": [e.member for e in events], "step": [e.step for e in events],
                           "order": range(len(events))}).sort_values("step")
    drawn = frame[["member", "step", "score"]].astype({"member": "int64", "step": "int64"}).sort_values("step")
    found = pd.merge_asof(wanted.astype({"member": "int64", "step": "int64"}), drawn, on="step", by="member")
    return [None if pd.isna(v) else float(v) for v in found.sort_values("order").score]


def thinned_note(every: int) -> str:
    """What a figure of a thinned read says under its title (nothing for a whole one)."""
    if every <= 1:
        return ""
    return (f"<br><sup>one interval in {every} of each member drawn, and its first and newest: more would be more "
            f"points than the eye can tell apart; the tables and the winning lineage hold every interval</sup>")


def scores_figure(frame: pd.DataFrame, events: list[Event], metric: str, every: int = 1) -> go.Figure:
    """Every member's score over steps, with a marker where it copied another member."""
    layout = go.Layout(title="Score of every member (× marks an exploit)" + thinned_note(every), xaxis_title="step",
                       yaxis_title=plot_text(metric))
    return go.Figure(data=score_traces(frame, events), layout=layout, _validate=False)  # plain traces: not re-checked


def winning_lineage_figure(curve: pd.DataFrame, metric: str) -> go.Figure:
    """The best member's ancestry as one learning curve by age, points coloured by who trained, copies marked."""
    fig = go.Figure()
    members = [int(m) for m in curve.member]
    fig.add_trace(go.Scatter(
        x=curve.age, y=curve.score, mode="lines+markers", name="winning lineage", connectgaps=True,
        line={"color": "black", "width": 2}, marker={"size": 6, "color": [_colour(m) for m in members]},
        text=[f"member {m}, its step {s}" for m, s in zip(members, curve.step)],
        hovertemplate="age %{x}: %{text}<br>score %{y}<extra></extra>"))
    if len(curve):
        after = curve[curve.copies.diff().fillna(curve.copies) > 0]  # the first interval after each copy
        before = curve.shift().loc[after.index]
        fig.add_trace(go.Scatter(
            x=after.age, y=after.score, mode="markers", name="copy (exploit)",
            marker={"symbol": "x", "size": 11, "color": "black"},
            text=[f"member {int(m)} took these weights at its step {int(s) - 1} from member {int(b)} (its step {int(bs)})"
                  if pd.notna(b) else f"member {int(m)} took these weights at its step {int(s) - 1}"
                  for m, s, b, bs in zip(after.member, after.step, before.member, before.step)],
            hovertemplate="%{text}<extra></extra>"))
    title = "The winning lineage: one continuous curve through the members it descends from (× marks a copy)"
    if len(curve) and int(curve.age.iloc[-1]) != int(curve.step.iloc[-1]):
        title += (f"<br><sup>these weights were trained {int(curve.age.iloc[-1])} intervals in "
                  f"{int(curve.step.iloc[-1])} steps: asynchronous copies took the checkpoints of sources behind "
                  f"(or ahead of) the copier</sup>")
    fig.update_layout(title=title, xaxis_title="intervals of training (age of the weights)",
                      yaxis_title=plot_text(metric))
    return fig


def schedule_traces(frame: pd.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """The schedules figure's member traces as plain data: each hyperparameter (one subplot each) over steps."""
    traces = []
    for i, name in enumerate(names, start=1):
        axis = "" if i == 1 else str(i)
        traces += [{"type": "scatter", "x": rows.step.tolist(), "y": _values(rows[name]), "mode": "lines",
                    "line": {"color": _colour(int(member)), "width": 1, "shape": "hv"}, "opacity": 0.5,
                    "name": f"member {member}", "legendgroup": str(member), "showlegend": i == 1,
                    "xaxis": f"x{axis}", "yaxis": f"y{axis}"} for member, rows in frame.groupby("member")]
    return traces


def schedules_figure(frame: pd.DataFrame, curve: pd.DataFrame, spec: dict[str, Any], every: int = 1) -> go.Figure:
    """Each hyperparameter over steps for every member, and the winning lineage's schedule in bold."""
    space = parse_space(spec["space"])
    names = list(space)
    grid = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=[plot_text(n) for n in names],
                         vertical_spacing=0.12 / max(1, len(names) - 1) if len(names) > 1 else 0.0)
    winner = []
    for i, name in enumerate(names, start=1):
        if len(curve):
            axis = "" if i == 1 else str(i)
            winner.append({"type": "scatter", "x": curve.age.tolist(), "y": _values(curve[name]), "mode": "lines",
                           "name": "winning lineage", "line": {"color": "black", "width": 3, "shape": "hv"},
                           "legendgroup": "winner", "showlegend": i == 1, "xaxis": f"x{axis}", "yaxis": f"y{axis}"})
        if isinstance(space[name], LogUniform):
            grid.update_yaxes(type="log", row=i, col=1)
    grid.update_layout(title="Hyperparameter schedules (bold: the winning lineage, by age)" + thinned_note(every),
                       height=max(350, 260 * len(names)))
    grid.update_xaxes(title_text="step", row=len(names), col=1)
    # the traces in subplot order (each member's, then the winning lineage's) as plain data: not re-checked
    by_axis = schedule_traces(frame, names)
    per = len(by_axis) // max(1, len(names))
    traces = [t for i in range(len(names)) for t in by_axis[i * per:(i + 1) * per] + winner[i:i + 1]]
    return go.Figure(data=traces, layout=grid.layout, _validate=False)


def hparams_figure(latest: pd.DataFrame, spec: dict[str, Any], metric: str) -> go.Figure:
    """Each member's latest score against each hyperparameter it trained with: which settings score well."""
    space = parse_space(spec["space"])
    names = list(space)
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, subplot_titles=[plot_text(n) for n in names],
                        horizontal_spacing=0.06, vertical_spacing=0.3 / rows)
    scored = latest.dropna(subset=["score"]) if len(latest) else latest
    members = [int(m) for m in scored.member] if len(scored) else []
    for i, name in enumerate(names):
        values = _values(scored[name]) if name in scored else [None] * len(members)
        fig.add_trace(go.Scatter(
            x=values, y=list(scored.score) if len(scored) else [], mode="markers", name=plot_text(name),
            customdata=members, showlegend=False,
            marker={"size": 9, "color": [_colour(m) for m in members], "line": {"color": "black", "width": 0.5}},
            unselected={"marker": {"opacity": 0.12}},
            text=[f"member {m}" for m in members], hovertemplate="%{text}: %{x}<br>score %{y}<extra></extra>"),
            row=i // cols + 1, col=i % cols + 1)
        if isinstance(space[name], LogUniform):
            fig.update_xaxes(type="log", row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(title_text=plot_text(metric), col=1)
    fig.update_layout(title="Hyperparameters against score: each member's latest report (a point per member)",
                      height=max(320, 300 * rows))
    return fig


def lineage_tree_figure(tree: pd.DataFrame, events: list[Event], best: int | None) -> go.Figure:
    """The lineage tree: each member a row, its segments along the steps, an edge for every copy."""
    rows_of: list[dict[str, Any]] = []  # a member's row: plain data, as the scores' traces (1,000 of them)
    for member, rows in tree.groupby("member"):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for start, end in zip(rows.start.tolist(), rows.end.tolist()):
            xs += [start, end, None]
            ys += [int(member), int(member), None]
        rows_of.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "name": f"member {member}",
                        "showlegend": False,
                        "line": {"color": _colour(int(member)), "width": 6 if member == best else 3}})
    if events:
        xs, ys = [], []
        for e in events:
            xs += [e.source_step, e.step, None]
            ys += [e.source, e.member, None]
        rows_of.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "name": "copied weights",
                        "line": {"color": "grey", "width": 1}})
        rows_of.append({
            "type": "scatter", "x": [e.step for e in events], "y": [e.member for e in events], "mode": "markers",
            "name": "exploit", "marker": {"symbol": "triangle-right", "size": 9, "color": "grey"},
            "text": [f"member {e.member} copied member {e.source} at its step {e.source_step}" for e in events],
            "hovertemplate": "%{text}<extra></extra>"})
    layout = go.Layout(title="Lineage tree (an edge runs from the copied member to the one that copied it)",
                       xaxis_title="step", yaxis_title="member", yaxis={"dtick": 1},
                       height=max(300, 40 * (tree.member.nunique() + 2)))
    return go.Figure(data=rows_of, layout=layout, _validate=False)  # plain traces poptrain built: not re-checked


def pareto_figure(fronts: pd.DataFrame, objectives: tuple[tuple[str, str], ...]) -> go.Figure:
    """Every member's final value of the first two objectives, the Pareto front drawn as a line through its members."""
    (x, x_mode), (y, y_mode) = objectives[0], objectives[1]
    fig = go.Figure()
    if len(fronts):
        rest = fronts[fronts.front != 0]
        front = fronts[fronts.front == 0].sort_values(x)
        fig.add_trace(go.Scatter(x=rest[x], y=rest[y], mode="markers", name="dominated members",
                                 marker={"color": "lightgrey", "size": 8, "line": {"color": "grey", "width": 1}},
                                 text=[f"member {m}, front {f}" for m, f in zip(rest.member, rest.front)],
                                 hovertemplate="%{text}<extra></extra>"))
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines+markers", name="Pareto front",
                                 line={"shape": "hv" if x_mode != y_mode else "linear", "color": "black"},
                                 marker={"size": 10, "color": [_colour(int(m)) for m in front.member]},
                                 text=[f"member {m}" for m in front.member], hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=f"Final Pareto front ({plot_text(x)} {x_mode}, {plot_text(y)} {y_mode})",
                      xaxis_title=plot_text(x), yaxis_title=plot_text(y))
    return fig


@dataclass(frozen=True)
class RunData:
    """What the figures of one run are drawn from, read from the store once."""

    frame: pd.DataFrame
    events: list[Event]
    tree: pd.DataFrame
    curve: pd.DataFrame
    best: int | None
    metric: str
    spec: dict[str, Any]
    objectives: tuple[tuple[str, str], ...] | None = None  # a multi-objective run's, with every member's fronts
    fronts: pd.DataFrame | None = None
    latest: pd.DataFrame | None = None  # each member's latest report (members that failed left out)
    every: int = 1  # the frame holds each member's every `every`-th step (its first and newest too)


POINTS = 50_000  # reports a run's figures draw at most: a longer run's are thinned (each member's every n-th step)


def run_data(result: "Result") -> RunData:
    """The analysis data of a run: reports, exploits, the lineage tree and the best member's curve."""
    from .. import analysis

    progress = result.progress()
    every = -(-progress.steps_done // POINTS)  # 1 up to POINTS reports
    # read once for the frame, the tree and (unless thinned) the curve; a thinned read keeps each member's first and
    # newest steps, all the tree needs
    reports, events = result.store.reports(result.name, every=every if every > 1 else None), result.events()
    frame = analysis.reports_frame(reports)
    best = progress.best_member
    if best is None:
        curve = frame.iloc[0:0]
    elif every > 1:
        curve = result.winning_lineage(best)  # every interval: it reads only its ancestors' reports
    else:
        curve = analysis.winning_lineage(reports, events, best)
    objectives = result.objectives()
    fronts = result.pareto_front(all_fronts=True) if objectives else None
    return RunData(frame=frame, events=events, tree=analysis.segments(reports, events), curve=curve, best=best,
                   metric=result.spec.get("metric") or "score", spec=result.spec, objectives=objectives, fronts=fronts,
                   latest=latest_frame(result), every=every)


def latest_frame(result: "Result") -> pd.DataFrame:
    """Each live member's latest report as a frame: one bounded read, the same for the report and each dashboard poll."""
    from ..analysis import reports_frame

    return reports_frame(result.store.recent_reports(result.name, 1))


@dataclass(frozen=True)
class Chart:
    """One figure of the pages: its name (the key of its drawing), a short title, and how to draw it."""

    name: str
    title: str
    draw: Callable[[Any], go.Figure | None]  # from a RunData (CHARTS) or the compared experiments; None: nothing yet
    multi_objective: bool = False  # shown only for a run with several objectives


# The one figure list, in page order: the report and the dashboard both render it.
CHARTS: tuple[Chart, ...] = (
    Chart("scores", "scores of every member", lambda d: scores_figure(d.frame, d.events, d.metric, d.every)),
    Chart("pareto", "final Pareto front",
          lambda d: pareto_figure(d.fronts, d.objectives) if d.objectives and d.fronts is not None else None,
          multi_objective=True),
    Chart("lineage", "the winning lineage",
          lambda d: winning_lineage_figure(d.curve, d.metric) if d.best is not None else None),
    Chart("schedules", "hyperparameter schedules", lambda d: schedules_figure(d.frame, d.curve, d.spec, d.every)),
    Chart("hparams", "hyperparameters against score", lambda d: hparams_figure(d.latest, d.spec, d.metric)),
    Chart("tree", "lineage tree", lambda d: lineage_tree_figure(d.tree, d.events, d.best)),
)


def charts(objectives: tuple[tuple[str, str], ...] | None) -> list[Chart]:
    """The figures a run's pages show, in order: the Pareto front only where the run has several objectives."""
    return [c for c in CHARTS if objectives or not c.multi_objective]


def chart_div(chart: Chart) -> str:
    """The element a figure is drawn into, the same on the report and the dashboard."""
    return (f"<div class='chart' id='chart-{text(chart.name)}' data-figure='{text(chart.name)}' role='img' "
            f"aria-label='{text(chart.title)}'></div>")


def draw(data: RunData) -> dict[str, go.Figure]:
    """The figures of `charts` that have something to draw (the lineage once a member scored), in page order."""
    drawn = {c.name: c.draw(data) for c in charts(data.objectives)}
    return {name: figure for name, figure in drawn.items() if figure is not None}


def figure_json(figure: go.Figure) -> dict[str, Any]:
    """A figure as plain JSON data, the same on the report and the dashboard: arrays as lists (Plotly's base64
    blocks cannot be extended in the page) and NaN as null."""
    return plain(json.loads(pio.to_json(figure, validate=False)))


def plain(value: Any) -> Any:
    """JSON data with Plotly's base64 arrays as lists and NaN as null."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            if "shape" in value:
                array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
            return plain(array.tolist())
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
