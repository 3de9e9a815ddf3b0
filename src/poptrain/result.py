"""A finished, running or crashed experiment as the user reads it: best member, frames, lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .errors import PoptrainError, StorageError
from .records import best_members
from .store import CheckpointRecord, CheckpointStore, Event, MemberRecord, Store, open_store

if TYPE_CHECKING:
    import pandas as pd

# pandas (and `analysis`, built on it) load when a frame is first asked for: training and `best()`
# never need them, and they cost a third of a second at start-up.


def _frame(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


SHOWN = ("scores", "pareto", "schedules")  # drawn under a Result displayed in Jupyter (the front: several objectives)
TABLE_ROWS = 20  # members a displayed Result lists, best first


class Figures(dict):  # type: ignore[type-arg]
    """Plotly figures by name, in the report's order; Jupyter displays them one after another."""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for figure in self.values():
            display(figure)


@dataclass(frozen=True)
class BestMember:
    """The best member: its id, last score, hyperparameters, step and newest checkpoint."""

    id: int
    score: float
    hparams: dict[str, Any]
    step: int
    checkpoint: CheckpointRecord | None
    checkpoint_url: str | None
    checkpoints_root: str | None = field(default=None, repr=False)

    def load_state(self, allow_pickle: bool | None = None) -> Any:
        """The trainable state (what its `state_dict()` returned) saved in the newest checkpoint.

        A checkpoint written with pickle loads only with `allow_pickle=True` (or the environment
        variable POPTRAIN_ALLOW_PICKLE=1): unpickling what a store holds can run any code.
        """
        if self.checkpoint is None or self.checkpoints_root is None:
            raise StorageError(f"member {self.id} has no checkpoint yet")
        return CheckpointStore(self.checkpoints_root).load(self.checkpoint.key, self.checkpoint.checksum,
                                                           allow_pickle=allow_pickle)


STALL_WINDOW = 10  # the reports per member that tell its usual interval


class Result:
    """Reads an experiment's store; never writes training state."""

    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name
        self.spec = store.get_spec(name)

    def members(self) -> pd.DataFrame:
        """One row per member: status, step, last score, current hyperparameters."""
        rows = [{"member": m.id, "status": m.status, "step": m.step, "score": m.last_score,
                 "failures": m.failures, **m.hparams} for m in self.store.members(self.name)]
        return _frame(rows)

    def best_members(self) -> list[MemberRecord]:
        """Every member with a finite last score, best first (failed members left out, ties by lowest id)."""
        return best_members(self.store.members(self.name), self.spec["mode"])

    def objectives(self) -> tuple[tuple[str, str], ...] | None:
        """A multi-objective experiment's ((metric, mode), ...), or None for one metric."""
        from .policy.pareto import objectives_of  # not through analysis: best() must not import pandas

        return objectives_of(self.spec)

    def best(self, objective: str | None = None) -> BestMember:
        """The member with the best last score (failed members excluded), or the best by one objective.

        A multi-objective experiment has no single best member: it needs `objective`, one of its
        objectives (its whole front is `pareto_front()`).
        """
        members = self.store.members(self.name)
        objectives = dict(self.objectives() or ())
        if objectives and objective is None:
            named = ", ".join(f"{n} ({m})" for n, m in objectives.items())
            raise PoptrainError(f"experiment {self.name!r} has several objectives ({named}) and no single best member: "
                                f"name one (best(objective=...), or --objective), or read pareto_front()")
        if objective is not None and objective not in objectives:
            known = ", ".join(objectives) if objectives else "none: it has one metric, so call best() without one"
            raise PoptrainError(f"experiment {self.name!r} has no objective {objective!r} (objectives: {known})")
        score: Callable[[MemberRecord], Any] = lambda m: m.last_score  # noqa: E731
        if objective is not None:
            latest = {r.member: r.metrics.get(objective) for r in self.store.recent_reports(self.name, 1)}
            score = lambda m: latest.get(m.id)  # noqa: E731
        ranked = best_members(members, self.spec["mode"] if objective is None else objectives[objective], score)
        if not ranked:
            raise StorageError(f"experiment {self.name!r} has no member with a finite score yet")
        m = ranked[0]
        ckpts = self.store.checkpoints(self.name, m.id)
        ckpt = ckpts[0] if ckpts else None
        url = f"{self.spec['checkpoints'].rstrip('/')}/{ckpt.key}" if ckpt else None
        return BestMember(id=m.id, score=float(score(m)), hparams=dict(m.hparams), step=m.step, checkpoint=ckpt,
                          checkpoint_url=url, checkpoints_root=self.spec["checkpoints"])

    def pareto_front(self, objectives: Any = None, all_fronts: bool = False) -> pd.DataFrame:
        """The final Pareto front: members no other member beats in every objective, with their hparams.

        `objectives` ({metric: "max" or "min"}) defaults to the experiment's own; pass them to read
        the front of a single-objective run (a random-search baseline). `all_fronts` keeps every
        member, with its front number (0 is the Pareto front) and crowding distance.
        """
        from . import analysis
        from .policy.pareto import parse_objectives

        chosen = self.objectives() if objectives is None else parse_objectives(objectives, "pareto_front")
        if chosen is None:
            raise PoptrainError(f"experiment {self.name!r} has one metric: pass objectives, e.g. "
                                f'pareto_front({{"accuracy": "max", "params": "min"}})')
        members = self.store.members(self.name)
        frame = analysis.pareto_front(self.store.recent_reports(self.name, 1), members, chosen,
                                      {m.id: dict(m.hparams) for m in members})
        return frame if all_fronts or not len(frame) else frame[frame.front == 0].reset_index(drop=True)

    def frame(self) -> pd.DataFrame:
        """Every report: member, step, score, the metrics, and the hyperparameters it trained with."""
        from . import analysis

        return analysis.reports_frame(self.store.reports(self.name))

    def events(self) -> list[Event]:
        """Every exploit in the order it happened."""
        return self.store.events(self.name)

    def lineage(self, member_id: int) -> pd.DataFrame:
        """The exploit events that made a member, oldest first: whom it (and its ancestors) copied, when."""
        from . import analysis

        chain = analysis.ancestry(self.store.events(self.name), member_id)
        rows = [{"member": e.member, "step": e.step, "source": e.source, "source_step": e.source_step,
                 "old_hparams": e.old_hparams, "new_hparams": e.new_hparams} for e in chain]
        return _frame(rows, ["member", "step", "source", "source_step", "old_hparams", "new_hparams"])

    def stalled(self, factor: float = 5.0, floor: float = 30.0) -> pd.DataFrame:
        """Members a live worker holds whose last report is over `factor` times their usual interval old."""
        from . import analysis

        # a member's usual interval is read from its latest reports, never the whole history
        return analysis.stalled(self.store.recent_reports(self.name, STALL_WINDOW), self.store.members(self.name),
                                self.store.clock(), factor, floor)  # leases end on the store's clock

    def tree(self) -> pd.DataFrame:
        """The lineage tree: every member's segments between exploits and the source of each."""
        from . import analysis

        return analysis.segments(self.store.reports(self.name), self.store.events(self.name))

    def winning_lineage(self, member_id: int | None = None) -> pd.DataFrame:
        """The best (or given) member's ancestry stitched into one curve and schedule from step 0."""
        from . import analysis

        member = self.best().id if member_id is None else self._known(member_id)
        events = self.store.events(self.name)
        chain = analysis.ancestry(events, member)
        wanted = {member, *(e.member for e in chain), *(e.source for e in chain)}  # whose reports the curve reads
        return analysis.winning_lineage(self.store.reports(self.name, members=wanted), events, member)

    def _known(self, member_id: int) -> int:
        """The member id, if the experiment has that member; else one line saying which it has."""
        ids = [m.id for m in self.store.members(self.name)]
        if member_id not in ids:
            have = f"its members are {min(ids)}–{max(ids)}" if ids else "it has no members yet"
            raise StorageError(f"experiment {self.name!r} has no member {member_id}: {have}")
        return member_id

    def replay_spec(self, member_id: int | None = None, name: str | None = None) -> dict[str, Any]:
        """A spec that retrains one member from scratch on the best (or given) member's schedule."""
        from . import analysis

        curve = self.winning_lineage(member_id)
        if not len(curve):
            raise StorageError(f"member {member_id if member_id is not None else self.best().id} of {self.name!r} "
                               f"has not reported a score yet: there is no schedule to replay")
        root = self.store.member(self.name, int(curve["member"].iloc[0]))
        member = self.best().id if member_id is None else member_id
        return analysis.replay_spec(self.spec, curve, root.seed, name or f"{self.name}-replay-{member}")

    def explore_counts(self) -> pd.DataFrame:
        """Per hyperparameter: exploits, and how many times explore perturbed, resampled, ... it."""
        from . import analysis

        return analysis.explore_counts(self.store.events(self.name), self.spec)

    def copies(self) -> pd.DataFrame:
        """Who copied whom, how often."""
        from . import analysis

        return analysis.copies(self.store.events(self.name))

    def diversity(self) -> pd.DataFrame:
        """The population's spread of each hyperparameter at each step."""
        from . import analysis

        return analysis.diversity(self.store.reports(self.name), self.spec)

    def ancestors(self, member_id: int) -> list[int]:
        """The members whose weights this one descends from, most recent first."""
        return [int(m) for m in reversed(self.lineage(member_id)["source"].tolist())]

    def schedule(self, member_id: int) -> pd.DataFrame:
        """The member's hyperparameters at each step it reported."""
        rows = [{"step": r.step, **r.hparams} for r in self.store.reports(self.name) if r.member == member_id]
        return _frame(rows)

    # figures (plotly): the same ones the HTML report and the dashboard draw
    def plot_scores(self) -> Any:
        """Every member's score over steps, exploits marked."""
        from .report import scores_figure

        return scores_figure(self.frame(), self.events(), self.spec.get("metric") or "score")

    def plot_winning_lineage(self, member_id: int | None = None) -> Any:
        """The best (or given) member's stitched learning curve."""
        from .report import winning_lineage_figure

        return winning_lineage_figure(self.winning_lineage(member_id), self.spec.get("metric") or "score")

    def plot_schedules(self, member_id: int | None = None) -> Any:
        """Each hyperparameter over steps, the winning lineage's schedule in bold (log axes where log-uniform)."""
        from .report import schedules_figure

        return schedules_figure(self.frame(), self.winning_lineage(member_id), self.spec)

    def plot_lineage_tree(self) -> Any:
        """Who copied whom, along the steps."""
        from .report import lineage_tree_figure

        return lineage_tree_figure(self.tree(), self.events(), self.progress().best_member)

    def plot_pareto_front(self, objectives: Any = None) -> Any:
        """Every member's final objectives (the first two), with the Pareto front drawn through its members."""
        from .policy.pareto import parse_objectives
        from .report import pareto_figure

        chosen = self.objectives() if objectives is None else parse_objectives(objectives, "plot_pareto_front")
        return pareto_figure(self.pareto_front(chosen, all_fronts=True), chosen)

    def plot(self) -> Figures:
        """Every figure of the report, by name: scores, the Pareto front (several objectives only), the winning lineage
        (once a member scored), schedules and the lineage tree."""
        from .report.figures import draw, run_data

        return Figures(draw(run_data(self)))

    def __repr__(self) -> str:
        return f"<poptrain.Result {self.name!r} in {self.store.url}>"

    def _repr_html_(self) -> str:
        """A summary line and the members table, best first, as HTML: everything the store holds is escaped."""
        from .report.page import number, table, text

        members = self.store.members(self.name)
        ranked = self.best_members()
        scored = {m.id for m in ranked}
        ranked += sorted((m for m in members if m.id not in scored), key=lambda m: m.id)
        progress, metric, names = self.progress(), self.spec.get("metric") or "score", list(self.spec.get("space", {}))
        best = (f"best {text(metric)}: {text(number(progress.best_score))} (member {text(progress.best_member)})"
                if progress.best_member is not None else "no member has scored yet")
        summary = (f"<b>PBT experiment {text(self.name)}</b> · {text(self.spec.get('population'))} members × "
                   f"{text(self.spec.get('steps'))} intervals · {progress.steps_done}/{progress.steps_total} intervals "
                   f"trained · {progress.exploits} exploits · {best}")
        rows = [[m.id, m.status, m.step, m.last_score, m.failures, *(m.hparams.get(n) for n in names)]
                for m in ranked[:TABLE_ROWS]]
        more = f" (the first {TABLE_ROWS} of {len(ranked)})" if len(ranked) > TABLE_ROWS else ""
        members_table = table(["member", "status", "step", metric, "failures", *names], rows,
                              caption=f"members by {metric} ({self.spec['mode']}), best first{more}")
        return f"<div class='poptrain-result'><p>{summary}</p>{members_table}</div>"

    def _ipython_display_(self) -> None:
        """In Jupyter: the summary table, then the scores, the Pareto front (several objectives) and the schedules."""
        from IPython.display import display

        display({"text/html": self._repr_html_(), "text/plain": repr(self)}, raw=True)
        figures = self.plot()
        for name in SHOWN:
            if name in figures:
                display(figures[name])

    def report(self, path: str) -> str:
        """Write the self-contained HTML report (works offline) to `path`."""
        from .report import write_report

        return write_report(self, path)

    def progress(self) -> Any:
        return self.store.progress(self.name, self.spec["mode"])


def load(storage: str, name: str) -> Result:
    """The result of an experiment in a store, whether it finished, is running, or crashed (opened read-only)."""
    return Result(open_store(storage, create=False, read_only=True), name)
