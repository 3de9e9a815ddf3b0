"""What the dashboard's experiment page is sent: the whole run once, then only what is new since its cursor.

A cursor is each member's last step the page holds and the last exploit event's id. An update
draws the same traces (`score_traces`, `schedule_traces`) from the new reports and events only,
and the page appends their traces to the ones it drew (by trace name); the hyperparameters-against-
score figure, one point per member, is sent whole. Figures that need the whole run (the winning
lineage, the tree, the Pareto front) come with a full read, which the page asks for now and then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..analysis import reports_frame
from ..errors import PoptrainError
from .figures import draw, figure_json, hparams_figure, latest_frame, plain, run_data, schedule_traces, score_traces
from .page import Html, link, number, one_line, table, text

if TYPE_CHECKING:
    import pandas as pd

    from ..result import Result
    from ..store import Event


@dataclass
class Cursor:
    """Where a page stands: each member's last step it holds, and the id of the last exploit event it holds."""

    steps: dict[int, int] = field(default_factory=dict)
    event: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The cursor as the page holds and sends it back."""
        return {"steps": {str(m): s for m, s in self.steps.items()}, "event": self.event}

    @classmethod
    def from_json(cls, payload: Any) -> "Cursor":
        """A cursor a page sent; PoptrainError naming what is wrong with one that is not."""
        try:
            steps = {int(m): int(s) for m, s in dict(payload["steps"]).items()}
            event = None if payload.get("event") is None else int(payload["event"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PoptrainError("the update request needs a JSON cursor {\"steps\": {member: step}, \"event\": id}: "
                                "reload the page") from None
        return cls(steps=steps, event=event)

    def advanced(self, frame: "pd.DataFrame", events: "list[Event]") -> "Cursor":
        """This cursor moved past the reports in `frame` and the `events`."""
        steps = dict(self.steps)
        if len(frame):
            steps.update({int(m): int(s) for m, s in frame.groupby("member").step.max().items()})
        ids = [e.id for e in events if e.id is not None]
        return Cursor(steps=steps, event=max(ids) if ids else self.event)


def members_table(r: "Result") -> str:
    """The members with their status, score, hyperparameters and last error; every store value escaped."""
    rows = []
    stalled = {row.member: row.since for row in r.stalled().itertuples()}
    for m in r.store.members(r.name):
        anchor = Html(f"<a href='{text(link('experiments', r.name, 'members', m.id))}'>{m.id}</a>")
        hparams = ", ".join(f"{k}={number(v)}" for k, v in m.hparams.items())
        status = f"{m.status} · may be stuck: no report for {stalled[m.id]:.0f} s" if m.id in stalled else m.status
        rows.append([anchor, status, m.step, m.last_score, m.failures, hparams, one_line(m.error or "")])
    return table(["member", "status", "step", "score", "failures", "hyperparameters", "last error"], rows,
                 text_columns=["hyperparameters", "last error"])


def _standing(r: "Result") -> dict[str, Any]:
    """What every answer carries: progress, the status line, each member's status and the members table."""
    progress = r.progress()
    status = (f"{progress.active} active, {progress.done} done, {progress.failed} failed · "
              f"{progress.exploits} exploits · best {number(progress.best_score)}")
    return {"steps_done": progress.steps_done, "live": progress.active > 0, "status": status,
            "best": progress.best_member, "members": {str(m.id): m.status for m in r.store.members(r.name)},
            "members_html": members_table(r)}


def whole(r: "Result") -> dict[str, Any]:
    """The whole run: every figure of the list, and the cursor it stands at."""
    data = run_data(r)
    return {"figures": {k: figure_json(f) for k, f in draw(data).items()},
            "cursor": Cursor().advanced(data.frame, data.events).to_json(), **_standing(r)}


def updates(r: "Result", cursor: Cursor) -> dict[str, Any]:
    """What is new since `cursor`: traces to append, members to redraw whole (rolled back), the figures sent whole."""
    members = {m.id: m.step for m in r.store.members(r.name)}
    # a member now behind what the page holds was rolled back to a checkpoint: it is sent again from its start
    reset = sorted(m for m, step in cursor.steps.items() if m in members and step > members[m])
    steps = {m: s for m, s in cursor.steps.items() if m not in reset}
    frame = reports_frame(r.store.reports_after(r.name, steps))
    events = r.store.events(r.name, after=cursor.event)
    metric = r.spec.get("metric") or "score"
    appended = {"scores": score_traces(frame, events), "schedules": schedule_traces(frame, list(r.spec["space"]))}
    return {"append": plain(appended), "reset": reset,
            "figures": {"hparams": figure_json(hparams_figure(latest_frame(r), r.spec, metric))},
            "new_events": len(events), "cursor": Cursor(steps, cursor.event).advanced(frame, events).to_json(),
            **_standing(r)}
