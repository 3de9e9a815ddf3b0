"""What the commands print: tables of experiments, members, lineage and comparisons, escaped."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import PoptrainError
from ..records import FAILED, best_members
from ..redact import scrub, shown
from ..store import Store, open_store

if TYPE_CHECKING:
    from ..result import Result


TOP_MEMBERS = 5


# output helpers
def fmt(value: Any) -> str:
    """A number short enough for a table cell; anything else as text."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def one_line(text: str) -> str:
    return " ".join(text.split())


def fmt_hparams(hparams: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in hparams.items())


def console() -> Console:
    """A console on the current stdout (looked up per call, so tests can capture it)."""
    return Console(file=sys.stdout, highlight=False)


def say(con: Console, text: str) -> None:
    """Print plain text on one line (no markup, no wrapping: paths and URLs stay copyable)."""
    con.print(escape(text), soft_wrap=True)


def store_location(url: str) -> str:
    """The storage URL as shown (no password), plus the absolute file for a SQLite store given by a relative path."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not os.path.isabs(path):
            return f"{shown(url)} ({os.path.abspath(path)})"
    return shown(url)


def existing_store(url: str) -> Store:
    """Open, read-only, a store that must already hold data: a SQLite file that is not there is a mistake, not a new store."""
    return open_store(url, create=False, read_only=True)


# summaries
def print_summary(result: Result) -> None:
    """The best members, the best checkpoint, and where the store and checkpoints are."""
    con, spec = console(), result.spec
    members = result.store.members(result.name)
    top = best_members(members, spec["mode"])[:TOP_MEMBERS]
    metric = spec.get("metric") or "score"
    table = Table(title=escape(f"{result.name}: best members ({metric}, {spec['mode']})"))
    for i, column in enumerate(("member", metric, "step", "hyperparameters")):
        table.add_column(escape(column), justify="right" if i < 3 else "left")
    for m in top:
        table.add_row(str(m.id), fmt(m.last_score), str(m.step), escape(fmt_hparams(m.hparams)))
    con.print(table)
    failed = sum(m.status == FAILED for m in members)
    if failed:
        say(con, f"failed members: {failed} (see `poptrain status`)")
    objectives = result.objectives()
    if not top:
        say(con, "no member has a finite score yet")
    elif objectives:
        print_front(con, result, objectives)
    else:
        best = result.best()
        say(con, f"best member:  {best.id} ({metric} {fmt(best.score)} at step {best.step}, {fmt_hparams(best.hparams)})")
        say(con, f"checkpoint:   {shown(best.checkpoint_url) or '— (none saved yet)'}")
    say(con, f"store:        {store_location(result.store.url)}  (experiment {result.name!r})")
    say(con, f"checkpoints:  {shown(spec['checkpoints'])}")
    say(con, f"inspect with: poptrain status --storage {shown(result.store.url)} --experiment {result.name}")


def print_front(con: Any, result: Result, objectives: tuple[tuple[str, str], ...]) -> None:
    """A multi-objective run's final Pareto front: one row per member on it."""
    names = [n for n, _ in objectives]
    front = result.pareto_front().sort_values(names[0], ascending=objectives[0][1] == "min")
    table = Table(title=escape(f"{result.name}: Pareto front ({', '.join(f'{n} {m}' for n, m in objectives)})"))
    for i, column in enumerate(("member", *names, "hyperparameters")):
        table.add_column(escape(column), justify="left" if i == len(names) + 1 else "right")
    space = list(result.spec.get("space", {}))
    for row in front.to_dict("records"):
        table.add_row(str(row["member"]), *(fmt(row[n]) for n in names),
                      escape(fmt_hparams({k: row[k] for k in space if k in row})))
    con.print(table)
    say(con, f"best by one objective: poptrain best --storage {shown(result.store.url)} --experiment {result.name} "
             f"--objective {names[0]}")


def ensure_trained(result: Result) -> None:
    """A run in which every member failed is an error (its cause is usually the trainable or the metric)."""
    members = result.store.members(result.name)
    if members and all(m.status == FAILED for m in members):
        raise PoptrainError(f"every member of {result.name!r} failed; the last error: {members[-1].error}")


def comparison_row(label: str, result: Result) -> list[str]:
    """One row of the PBT-vs-baseline table: best, mean and worst final score, exploits, compute."""
    from ..analysis import final_scores, final_summary

    best, mean, worst = final_summary(final_scores(result.store.members(result.name)), result.spec["mode"])
    progress = result.progress()
    return [label, fmt(best), fmt(mean), fmt(worst), str(progress.exploits), str(progress.steps_done)]


def print_comparison(pbt: Result, baseline: Result) -> None:
    """PBT against random search with the same members, steps and initial hyperparameters."""
    con = console()
    metric = pbt.spec.get("metric") or "score"
    better = "higher" if pbt.spec["mode"] == "max" else "lower"
    table = Table(title=escape(f"PBT vs random search at equal compute (final {metric}: {better} is better)"))
    table.add_column("run", no_wrap=True)
    for column in ("best", "mean", "worst", "exploits", "member-\nintervals"):
        table.add_column(column, justify="right")
    table.add_row(*comparison_row("PBT", pbt))
    table.add_row(*comparison_row("random search (no exploit)", baseline))
    con.print(table)
    say(con, f"random search is the same {pbt.spec['population']} members with the same initial hyperparameters "
             f"and {pbt.spec['steps']} intervals each, never exploiting (experiment {baseline.name!r})")


def print_experiments(store: Store) -> None:
    """One row per experiment in the store."""
    con, names = console(), store.experiments()
    if not names:
        say(con, f"no experiments in {shown(store.url)}")
        return
    table = Table(title=escape(f"experiments in {shown(store.url)}"))
    table.add_column("experiment", no_wrap=True)
    for column in ("members", "steps\ndone/total", "done", "failed"):
        table.add_column(column, justify="right")
    table.add_column("best", justify="right", no_wrap=True)
    for name in names:
        try:
            p = store.progress(name, store.get_spec(name)["mode"])
        except Exception as exc:  # noqa: BLE001 - one unreadable experiment must not hide the others
            table.add_row(escape(name), escape(f"unreadable: {one_line(scrub(f'{type(exc).__name__}: {exc}'))[:200]}"),
                          "", "", "", "")
            continue
        best = "—" if p.best_score is None else f"{fmt(p.best_score)} (member {p.best_member})"
        table.add_row(escape(name), str(p.members), f"{p.steps_done}/{p.steps_total}", str(p.done), str(p.failed),
                      best)
    con.print(table)


SHOWN_MEMBERS = 40  # a larger population lists its best this many (a terminal, not a report)


def print_members(result: Result, every: bool = False) -> None:
    """One row per member of an experiment (its best only, for a large one unless `every`), and the exploits."""
    con = console()
    p = result.progress()
    members = result.store.members(result.name)
    listed = members
    title = f"{result.name}: {p.steps_done}/{p.steps_total} member-intervals"
    if len(members) > SHOWN_MEMBERS and not every:
        listed = best_members(members, result.spec["mode"])[:SHOWN_MEMBERS]
        title += f" · its {len(listed)} best of {len(members)} members (--all lists every one)"
    table = Table(title=escape(title))
    for column in ("member", "status", "step", "last score", "failures", "hyperparameters"):
        table.add_column(column, justify="left" if column in ("status", "hyperparameters") else "right")
    for m in listed:
        table.add_row(str(m.id), escape(m.status), str(m.step), fmt(m.last_score), str(m.failures),
                      escape(fmt_hparams(m.hparams)))
    con.print(table)
    for m in members:
        if m.error:
            say(con, f"member {m.id} {'failed' if m.status == FAILED else 'last raised'}: {one_line(m.error)}")
    for row in result.stalled().itertuples():
        say(con, f"member {row.member} may be stuck: no report for {row.since:.0f} s, usually one every "
                 f"{row.usual:.3g} s (worker {row.worker}); an engine's interval_timeout ends such intervals")
    best = "—" if p.best_score is None else f"{fmt(p.best_score)} (member {p.best_member})"
    say(con, f"exploits so far: {p.exploits} · best: {best} · active {p.active}, done {p.done}, failed {p.failed}")
    print_lineage(result, p.best_member)


def print_lineage(result: Result, best: int | None) -> None:
    """Who copied whom, and the best member's schedule from step 0 as stretches of equal values."""
    con = console()
    copies = result.copies()
    if len(copies):
        table = Table(title="lineage: who copied whom")
        for column in ("member", "copied from (times)"):
            table.add_column(column, justify="right" if column == "member" else "left")
        groups = list(copies.groupby("member"))
        for member, rows in groups[:SHOWN_MEMBERS]:
            table.add_row(str(member), ", ".join(f"{s} ({n})" for s, n in zip(rows.source, rows.copies)))
        if len(groups) > SHOWN_MEMBERS:
            table.caption = f"the first {SHOWN_MEMBERS} of {len(groups)} members that copied (Result.copies() holds every one)"
        con.print(table)
    if best is None:
        return
    curve = result.winning_lineage(best)
    names = [c for c in curve.columns if c not in ("age", "member", "step", "score", "copies")]
    table = Table(title=f"schedule of the best member ({best}), through the members it descends from")
    for column in ("steps", "member", *names, "score at end"):
        table.add_column(escape(str(column)), justify="right")
    stretch = (curve[["member", *names]] != curve[["member", *names]].shift()).any(axis=1).cumsum()
    for _, rows in curve.groupby(stretch, sort=False):
        first, last = rows.iloc[0], rows.iloc[-1]
        table.add_row(f"{int(first.age)}–{int(last.age)}", str(int(first.member)), *(escape(fmt(first[n])) for n in names),
                      fmt(last.score))
    con.print(table)
