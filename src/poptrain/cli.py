"""The `poptrain` command: run, worker, status, best and resume, on top of the library's API."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .engines import ENGINES
from .errors import PoptrainError, SpecError
from .failures import describe as describe_failure
from .population import FAILED, best_members
from .store import Store, open_store

if TYPE_CHECKING:
    from .result import Result

TOP_MEMBERS = 5


@dataclass
class Target:
    """The experiment the command is working on, so an interrupt can say how to resume it."""

    storage: str | None = None
    name: str | None = None


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
    """The storage URL, plus the absolute file for a SQLite store given by a relative path."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not os.path.isabs(path):
            return f"{url} ({os.path.abspath(path)})"
    return url


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
        say(con, f"checkpoint:   {best.checkpoint_url or '— (none saved yet)'}")
    say(con, f"store:        {store_location(result.store.url)}  (experiment {result.name!r})")
    say(con, f"checkpoints:  {spec['checkpoints']}")
    say(con, f"inspect with: poptrain status --storage {result.store.url} --experiment {result.name}")


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
    say(con, f"best by one objective: poptrain best --storage {result.store.url} --experiment {result.name} "
             f"--objective {names[0]}")


def ensure_trained(result: Result) -> None:
    """A run in which every member failed is an error (its cause is usually the trainable or the metric)."""
    members = result.store.members(result.name)
    if members and all(m.status == FAILED for m in members):
        raise PoptrainError(f"every member of {result.name!r} failed; the last error: {members[-1].error}")


def comparison_row(label: str, result: Result) -> list[str]:
    """One row of the PBT-vs-baseline table: best, mean and median final score, exploits, compute."""
    members = result.store.members(result.name)
    scores = [m.last_score for m in members if m.last_score is not None and math.isfinite(m.last_score)]
    top = best_members(members, result.spec["mode"])
    progress = result.progress()
    return [label, fmt(top[0].last_score) if top else "—", fmt(statistics.fmean(scores)) if scores else "—",
            fmt(statistics.median(scores)) if scores else "—", str(progress.exploits), str(progress.steps_done)]


def print_comparison(pbt: Result, baseline: Result) -> None:
    """PBT against random search with the same members, steps and initial hyperparameters."""
    con = console()
    metric = pbt.spec.get("metric") or "score"
    better = "higher" if pbt.spec["mode"] == "max" else "lower"
    table = Table(title=escape(f"PBT vs random search at equal compute ({metric}: {better} is better)"))
    table.add_column("run", no_wrap=True)
    for column in (escape(f"best\n{metric}"), "mean\nfinal", "median\nfinal", "exploits", "member-\nintervals"):
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
        say(con, f"no experiments in {store.url}")
        return
    table = Table(title=escape(f"experiments in {store.url}"))
    table.add_column("experiment", no_wrap=True)
    for column in ("members", "steps\ndone/total", "done", "failed"):
        table.add_column(column, justify="right")
    table.add_column("best", justify="right", no_wrap=True)
    for name in names:
        try:
            p = store.progress(name, store.get_spec(name)["mode"])
        except Exception as exc:  # noqa: BLE001 - one unreadable experiment must not hide the others
            table.add_row(escape(name), escape(f"unreadable: {one_line(f'{type(exc).__name__}: {exc}')[:200]}"),
                          "", "", "", "")
            continue
        best = "—" if p.best_score is None else f"{fmt(p.best_score)} (member {p.best_member})"
        table.add_row(escape(name), str(p.members), f"{p.steps_done}/{p.steps_total}", str(p.done), str(p.failed),
                      best)
    con.print(table)


def print_members(result: Result) -> None:
    """One row per member of an experiment, and the exploits so far."""
    con = console()
    p = result.progress()
    table = Table(title=escape(f"{result.name}: {p.steps_done}/{p.steps_total} member-intervals"))
    for column in ("member", "status", "step", "last score", "failures", "hyperparameters"):
        table.add_column(column, justify="left" if column in ("status", "hyperparameters") else "right")
    members = result.store.members(result.name)
    for m in members:
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
        for member, rows in copies.groupby("member"):
            table.add_row(str(member), ", ".join(f"{s} ({n})" for s, n in zip(rows.source, rows.copies)))
        con.print(table)
    if best is None:
        return
    curve = result.winning_lineage(best)
    names = [c for c in curve.columns if c not in ("age", "member", "step", "score")]
    table = Table(title=f"schedule of the best member ({best}), through the members it descends from")
    for column in ("steps", "member", *names, "score at end"):
        table.add_column(escape(str(column)), justify="right")
    stretch = (curve[["member", *names]] != curve[["member", *names]].shift()).any(axis=1).cumsum()
    for _, rows in curve.groupby(stretch, sort=False):
        first, last = rows.iloc[0], rows.iloc[-1]
        table.add_row(f"{int(first.age)}–{int(last.age)}", str(int(first.member)), *(escape(fmt(first[n])) for n in names),
                      fmt(last.score))
    con.print(table)


OPTION = "engine_option."  # the dest prefix of a flag that is an engine option (`engine_flags`)


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine options the flags give (only those given): each `engine_option.NAME` flag is option NAME."""
    given = {key[len(OPTION):]: value for key, value in vars(args).items() if key.startswith(OPTION)}
    resources = {key: given.pop(f"resources.{key}") for key in ("cpu", "gpu")}  # two flags fill one option
    given["resources"] = {key: value for key, value in resources.items() if value is not None} or None
    return {key: value for key, value in given.items() if value is not None}


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """What every run takes from the flags: the engine (by name), its options, progress and force."""
    return {"engine": args.engine, "progress": not args.quiet, "force": args.force, **engine_options(args)}


# commands
def cmd_run(args: argparse.Namespace, target: Target) -> None:
    from .spec import load_spec

    experiment = load_spec(args.spec, storage=args.storage, name=args.name, population=args.population,
                           steps=args.steps, seed=args.seed, synchronous=args.synchronous,
                           checkpoints=args.checkpoints)
    target.storage, target.name = experiment.storage, experiment.name
    if not args.quiet:
        say(console(), f"PBT: {experiment.name} · {experiment.population} members × {experiment.steps} intervals "
                       f"· engine {args.engine or experiment.engine or 'local'} · store {experiment.storage}")
    result = experiment.run(**run_options(args))
    print_summary(result)
    ensure_trained(result)
    if args.baseline:
        baseline = experiment.baseline()
        target.name = baseline.name
        if not args.quiet:
            say(console(), f"random search (no exploit): {baseline.name} · same members, steps and initial "
                           f"hyperparameters")
        print_comparison(result, baseline.run(**run_options(args)))


def cmd_create(args: argparse.Namespace, target: Target) -> None:
    from .spec import load_spec

    experiment = load_spec(args.spec, storage=args.storage, name=args.name, checkpoints=args.checkpoints)
    target.storage, target.name = experiment.storage, experiment.name
    created = experiment.create()
    say(console(), f"experiment {experiment.name!r} {'created' if created else 'is already'} in "
                   f"{store_location(experiment.storage)}; train it with `poptrain run`, `poptrain worker`, or "
                   f"loops of your own: poptrain.connect({experiment.storage!r}, {experiment.name!r})")


def cmd_worker(args: argparse.Namespace, target: Target) -> None:
    from .engines.worker import join

    if args.spec is not None:  # every launcher task may pass the spec; the first to arrive stores it
        from .spec import load_spec

        experiment = load_spec(args.spec, storage=args.storage, name=args.experiment, checkpoints=args.checkpoints)
        experiment.create(wait=True)
        args.experiment = experiment.name
    elif args.experiment is None:
        raise SpecError("worker needs --experiment NAME (to join a stored experiment) or a SPEC.toml (to create it "
                        "if it is not stored yet)")
    # a clear error before the worker starts; a database that is restarting is waited for, as the worker would
    open_store(args.storage, create=False, wait=True).get_spec(args.experiment)
    join(args.storage, args.experiment, args.id)


def cmd_status(args: argparse.Namespace, target: Target) -> None:
    store = existing_store(args.storage)
    if args.experiment is None:
        print_experiments(store)
    else:
        from .result import Result

        print_members(Result(store, args.experiment))


def cmd_best(args: argparse.Namespace, target: Target) -> None:
    from .result import Result

    best = Result(existing_store(args.storage), args.experiment).best(args.objective)
    print(json.dumps({"id": best.id, "score": best.score, "step": best.step, "hparams": best.hparams,
                      "checkpoint": best.checkpoint_url}, indent=2))


def cmd_resume(args: argparse.Namespace, target: Target) -> None:
    from .runner import resume

    existing_store(args.storage).get_spec(args.experiment)
    result = resume(args.storage, args.experiment, **run_options(args))
    print_summary(result)
    ensure_trained(result)


def cmd_report(args: argparse.Namespace, target: Target) -> None:
    from .result import Result

    from .files import check_output_file

    check_output_file(args.output, "the report")  # before the store is read: a wrong -o fails at once
    Result(existing_store(args.storage), args.experiment).report(args.output)
    say(console(), f"report written to {os.path.abspath(args.output)}")


def cmd_dashboard(args: argparse.Namespace, target: Target) -> None:
    from .report.dashboard import serve

    port = args.port
    if not 0 <= port <= 65535:
        raise SpecError(f"--port {port} is not a TCP port: give one in 1..65535 (or 0 for any free port)")
    if port == 0:
        port = free_port(args.host)
    say(console(), f"dashboard of {args.storage} on http://{args.host}:{port}/ (Ctrl-C stops it)")
    serve(args.storage, host=args.host, port=port)


def cmd_replay(args: argparse.Namespace, target: Target) -> None:
    from .files import check_output_file, write_output
    from .result import Result
    from .spec import dump_spec, load_spec

    check_output_file(args.output, "the replay spec")
    pbt = Result(existing_store(args.storage), args.experiment)
    member = pbt.best().id if args.member is None else args.member
    spec_text = dump_spec(pbt.replay_spec(member))  # the -o file is opened only once there is something to write
    write_output(args.output, spec_text, "the replay spec")
    con = console()
    say(con, f"replay spec of member {member}'s schedule written to {args.output}")
    if args.no_run:
        return
    experiment = load_spec(args.output)
    target.storage, target.name = experiment.storage, experiment.name
    replay = experiment.run(**run_options(args))
    metric = pbt.spec.get("metric") or "score"
    table = Table(title=escape(f"PBT member {member} and its replay from scratch ({metric})"))
    for i, column in enumerate(("run", "experiment", "steps", metric)):
        table.add_column(escape(column), justify="left" if i < 2 else "right")
    final = pbt.store.member(pbt.name, member)
    table.add_row("PBT", escape(pbt.name), str(final.step), fmt(final.last_score))
    replayed = replay.store.member(replay.name, 0)
    table.add_row("replay", escape(replay.name), str(replayed.step), fmt(replayed.last_score))
    con.print(table)


def cmd_export(args: argparse.Namespace, target: Target) -> None:
    from .export import export

    if args.every <= 0:
        raise SpecError(f"--every {args.every} is not a poll period: give a number of seconds above 0, e.g. 5")
    existing_store(args.storage).get_spec(args.experiment)  # a wrong store or name fails before the target is made
    con = console()
    if args.follow:
        say(con, f"exporting {args.experiment} to {args.to} at {args.target} every {args.every:g}s until it is done "
                 f"(Ctrl-C stops; what is exported stays)")
    try:
        written = export(args.storage, args.experiment, args.to, args.target, follow=args.follow, every=args.every)
    except KeyboardInterrupt:  # following is stopped, nothing to resume: the export so far is complete as it is
        say(con, "stopped following")
        return
    say(con, f"exported {written} reports of {args.experiment} to {args.to} at {args.target}")


def free_port(host: str) -> int:
    """A TCP port free on `host` now (what --port 0 asks for), so the URL printed is the one served."""
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, 0))
        except OSError as exc:
            raise SpecError(f"--host {host}: cannot listen there ({exc.strerror or exc}); use an address of this "
                            f"machine, e.g. 127.0.0.1") from None
        return int(s.getsockname()[1])


# parsing
def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, except that a mistake in the flags is one `error:` line, as every other mistake is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {one_line(message)} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = Parser(prog="poptrain", description="Population Based Training (Jaderberg et al. 2017).")
    p.add_argument("--version", action="version", version=f"poptrain {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def engine_flags(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--engine", choices=ENGINES, help="how members run (default: the spec's engine, else local)")
        # an engine option is one flag whose dest is OPTION + the option's name; engine_options collects them
        cmd.add_argument("--device", dest=OPTION + "device", metavar="DEVICE",
                         help="torch device of the vectorized engine (cpu, cuda, ...; default cpu)")
        cmd.add_argument("--compile", dest=OPTION + "compile", action="store_true", default=None,
                         help="torch.compile the vectorized engine's batched step (pays off on long runs only)")
        cmd.add_argument("--threads", dest=OPTION + "threads", type=positive_int, metavar="THREADS",
                         help="CPU threads torch uses in the vectorized engine (default: one per core)")
        cmd.add_argument("--address", dest=OPTION + "address", metavar="ADDRESS",
                         help="the Ray cluster for --engine ray (e.g. auto; default: a local Ray)")
        cmd.add_argument("--cpus-per-worker", dest=OPTION + "resources.cpu", type=float, metavar="CPUS",
                         help="CPUs each Ray worker reserves (default: 1)")
        cmd.add_argument("--gpus-per-worker", dest=OPTION + "resources.gpu", type=float, metavar="GPUS",
                         help="GPUs each Ray worker reserves, fractions allowed (default: 1 with --device cuda, else 0)")
        cmd.add_argument("--workers", dest=OPTION + "workers", type=positive_int, metavar="WORKERS",
                         help="worker processes of the local and ray engines (default: CPUs)")
        cmd.add_argument("--interval-timeout", dest=OPTION + "interval_timeout", type=float, metavar="SECONDS",
                         help="local engine: end a worker whose interval runs longer, charging its member a failure")
        cmd.add_argument("--quiet", action="store_true", help="no progress display and no warnings")
        cmd.add_argument("--force", action="store_true",
                         help="take over members still leased by workers you know are dead")

    run = sub.add_parser("run", help="train a population from a TOML spec", description=(
        "Train the population a TOML spec describes; flags override the spec's fields."))
    run.add_argument("spec", metavar="SPEC.toml")
    run.add_argument("--storage", help="store URL, e.g. sqlite:///runs/x.db (default: the spec's)")
    run.add_argument("--name", help="experiment name (default: the spec's)")
    run.add_argument("--checkpoints", help="checkpoint folder or fsspec URL, e.g. s3://bucket/run (default: the "
                                           "spec's, else a folder beside a SQLite store)")
    engine_flags(run)
    run.add_argument("--population", type=int, help="number of members")
    run.add_argument("--steps", type=int, help="intervals each member trains")
    run.add_argument("--seed", type=int, help="seed of the whole run")
    run.add_argument("--synchronous", action=argparse.BooleanOptionalAction, default=None,
                     help="wait for the whole population at each ready point (generations)")
    run.add_argument("--baseline", action="store_true",
                     help="then run random search (same members, no exploit) and compare")
    run.set_defaults(func=cmd_run)

    create = sub.add_parser("create", help="store an experiment from a TOML spec without training it", description=(
        "Store the experiment a TOML spec describes (a spec without `trainable` is trained only by loops of your "
        "own through poptrain.connect, ask and tell)."))
    create.add_argument("spec", metavar="SPEC.toml")
    create.add_argument("--storage", help="store URL (default: the spec's)")
    create.add_argument("--name", help="experiment name (default: the spec's)")
    create.add_argument("--checkpoints", help="checkpoint folder or fsspec URL (default: the spec's, else beside the store)")
    create.set_defaults(func=cmd_create, quiet=False)

    worker = sub.add_parser("worker", help="join a running experiment as one more worker", description=(
        "Train members of a stored experiment until every member is done. Given a spec, the experiment "
        "is created first unless it is already stored (with the same spec), so every task of a Slurm "
        "array or Kubernetes job can run the same command."))
    worker.add_argument("spec", metavar="SPEC.toml", nargs="?", help="create the experiment from this spec if needed")
    worker.add_argument("--storage", required=True)
    worker.add_argument("--experiment", help="experiment name (default: the spec's)")
    worker.add_argument("--checkpoints", help="checkpoint folder or URL every worker reaches, e.g. s3://bucket/run "
                                              "(with a spec; default: the spec's)")
    worker.add_argument("--id", help="worker id (default: host-pid)")
    worker.add_argument("--quiet", action="store_true", help="no warnings")
    worker.set_defaults(func=cmd_worker)

    status = sub.add_parser("status", help="the experiments in a store, or one experiment's members")
    status.add_argument("--storage", required=True)
    status.add_argument("--experiment")
    status.set_defaults(func=cmd_status, quiet=False)

    best = sub.add_parser("best", help="the best member as JSON")
    best.add_argument("--storage", required=True)
    best.add_argument("--experiment", required=True)
    best.add_argument("--objective", help="of a multi-objective experiment: the objective to rank by")
    best.set_defaults(func=cmd_best, quiet=False)

    resume = sub.add_parser("resume", help="finish an interrupted experiment from its checkpoints")
    resume.add_argument("--storage", required=True)
    resume.add_argument("--experiment", required=True)
    engine_flags(resume)
    resume.set_defaults(func=cmd_resume)

    report = sub.add_parser("report", help="write the experiment's HTML report (one file, works offline)")
    report.add_argument("--storage", required=True)
    report.add_argument("--experiment", required=True)
    report.add_argument("-o", "--output", required=True, metavar="REPORT.html")
    report.set_defaults(func=cmd_report, quiet=False)

    dashboard = sub.add_parser("dashboard", help="serve a live, read-only web view of a store's experiments")
    dashboard.add_argument("--storage", required=True)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1 only)")
    dashboard.add_argument("--port", type=int, default=8050)
    dashboard.set_defaults(func=cmd_dashboard, quiet=False)

    replay = sub.add_parser("replay", help="retrain one member from scratch on the schedule PBT found", description=(
        "Write a spec that trains one member from step 0 along the best (or a chosen) member's stitched "
        "schedule, run it, and compare its score with the PBT member's."))
    replay.add_argument("--storage", required=True)
    replay.add_argument("--experiment", required=True)
    replay.add_argument("--member", type=int, help="the member whose schedule to follow (default: the best)")
    replay.add_argument("-o", "--output", required=True, metavar="SPEC.toml", help="where to write the replay spec")
    replay.add_argument("--no-run", action="store_true", help="only write the spec")
    engine_flags(replay)
    replay.set_defaults(func=cmd_replay, engine="serial")

    export = sub.add_parser("export", help="write an experiment's scores, hyperparameters and exploits to TensorBoard "
                                           "or MLflow", description=(
        "Read the store and write each member's score, metrics and hyperparameters by step, and each exploit, "
        "as a TensorBoard run or an MLflow child run per member. With --follow, keep exporting what is new while "
        "the experiment trains, until every member is done."))
    export.add_argument("--storage", required=True)
    export.add_argument("--experiment", required=True)
    export.add_argument("--to", required=True, choices=("tensorboard", "mlflow"), help="the logger")
    export.add_argument("target", metavar="DIR_OR_URI",
                        help="TensorBoard: the log folder; MLflow: a folder or tracking URI (sqlite:///mlflow.db, "
                             "http://host:5000)")
    export.add_argument("--follow", action="store_true", help="keep polling the store until the experiment is done")
    export.add_argument("--every", type=float, default=5.0, metavar="SECONDS",
                        help="with --follow, seconds between polls (default 5)")
    export.set_defaults(func=cmd_export, quiet=False)
    return p


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time, one line per record."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        return " | ".join(line for line in super().format(record).splitlines() if line.strip())


_handler = StderrHandler()
_handler.setFormatter(logging.Formatter("poptrain: %(levelname)s: %(message)s"))


def setup_logging(quiet: bool) -> None:
    """Warnings of the `poptrain` logger on stderr, one line each; with --quiet, errors only."""
    log = logging.getLogger("poptrain")
    if _handler not in log.handlers:
        log.addHandler(_handler)
    level = logging.ERROR if quiet else logging.WARNING
    log.setLevel(level)
    _handler.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user's mistake, 130 on Ctrl-C)."""
    args = parser().parse_args(argv)
    setup_logging(args.quiet)
    target = Target(getattr(args, "storage", None), getattr(args, "experiment", None))
    try:
        args.func(args, target)
    except PoptrainError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # a read-only folder or a full disk is the user's to fix: one line, not a traceback
        message = describe_failure(exc, target.storage)
        if message is None:
            raise
        print(f"error: {one_line(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if target.storage and target.name:
            print(f"interrupted: continue with `poptrain resume --storage {target.storage} "
                  f"--experiment {target.name}`", file=sys.stderr)
        else:
            print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
