"""The commands: each takes the parsed flags and the experiment it works on, and calls the library."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from rich.markup import escape
from rich.table import Table

from ..errors import SpecError
from ..redact import STORAGE_ENV, has_password, shown
from ..store import open_store
from .options import Target, run_options
from .show import (console, ensure_trained, existing_store, fmt, print_comparison, print_experiments, print_members,
                   print_summary, say, store_location)


def cmd_run(args: argparse.Namespace, target: Target) -> None:
    from ..experiment import load_spec

    experiment = load_spec(args.spec, storage=args.storage, name=args.name, population=args.population,
                           steps=args.steps, seed=args.seed, synchronous=args.synchronous,
                           checkpoints=args.checkpoints)
    target.storage, target.name = experiment.storage, experiment.name
    if not args.quiet:
        say(console(), f"PBT: {experiment.name} · {experiment.population} members × {experiment.steps} intervals "
                       f"· engine {args.engine or experiment.engine or 'local'} · store {shown(experiment.storage)}")
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
    from ..experiment import load_spec

    experiment = load_spec(args.spec, storage=args.storage, name=args.name, checkpoints=args.checkpoints)
    target.storage, target.name = experiment.storage, experiment.name
    created = experiment.create()
    say(console(), f"experiment {experiment.name!r} {'created' if created else 'is already'} in "
                   f"{store_location(experiment.storage)}; train it with `poptrain run`, `poptrain worker`, or "
                   f"loops of your own: poptrain.connect({shown(experiment.storage)!r}, {experiment.name!r})")


def cmd_worker(args: argparse.Namespace, target: Target) -> None:
    from ..engines.worker import join

    if args.spec is not None:  # every launcher task may pass the spec; the first to arrive stores it
        from ..experiment import load_spec

        experiment = load_spec(args.spec, storage=args.storage, name=args.experiment, checkpoints=args.checkpoints)
        experiment.create(wait=True)
        args.experiment = experiment.name
    elif args.experiment is None:
        raise SpecError("worker needs --experiment NAME (to join a stored experiment) or a SPEC.toml (to create it "
                        "if it is not stored yet)")
    # a clear error before the worker starts; a database that is restarting is waited for, as the worker would
    open_store(args.storage, create=False, wait=True).get_spec(args.experiment)
    # a spec given here is the user's own: what it names is theirs to import
    join(args.storage, args.experiment, args.id, trust_spec_code=args.trust_spec_code or args.spec is not None)
    from ..result import Result

    # as for `run`: a population in which every member failed is an error, not a clean exit
    ensure_trained(Result(open_store(args.storage, create=False), args.experiment))


def cmd_status(args: argparse.Namespace, target: Target) -> None:
    store = existing_store(args.storage)
    if args.experiment is None:
        print_experiments(store)
    else:
        from ..result import Result

        print_members(Result(store, args.experiment), every=args.all)


def cmd_best(args: argparse.Namespace, target: Target) -> None:
    from ..result import Result

    best = Result(existing_store(args.storage), args.experiment).best(args.objective)
    print(json.dumps({"id": best.id, "score": best.score, "step": best.step, "hparams": best.hparams,
                      "checkpoint": shown(best.checkpoint_url) or None}, indent=2))


def cmd_resume(args: argparse.Namespace, target: Target) -> None:
    from ..runner import resume

    existing_store(args.storage).get_spec(args.experiment)
    result = resume(args.storage, args.experiment, trust_spec_code=args.trust_spec_code, **run_options(args))
    print_summary(result)
    ensure_trained(result)


def cmd_report(args: argparse.Namespace, target: Target) -> None:
    from ..result import Result

    from ..files import check_output_file

    from ..report import write_report

    check_output_file(args.output, "the report")  # before the store is read: a wrong -o fails at once
    twice = sorted({name for name in args.experiments if args.experiments.count(name) > 1})
    if twice:
        raise SpecError(f"--experiment {twice[0]} is given twice: name each experiment to compare once")
    store = existing_store(args.storage)
    results = [Result(store, name) for name in args.experiments]  # a name the store lacks fails here, naming those it has
    write_report(results, args.output)
    compared = f" comparing {', '.join(args.experiments)}" if len(results) > 1 else ""
    say(console(), f"report{compared} written to {os.path.abspath(args.output)}")


def cmd_dashboard(args: argparse.Namespace, target: Target) -> None:
    from ..report.dashboard import access_token, serve, startup_lines

    port = args.port
    if not 0 <= port <= 65535:
        raise SpecError(f"--port {port} is not a TCP port: give one in 1..65535 (or 0 for any free port)")
    if port == 0:
        port = free_port(args.host)
    token = access_token(args.host, args.token)
    for line in startup_lines(args.storage, args.host, port, token, generated=args.token is None):
        say(console(), line)
    serve(args.storage, host=args.host, port=port, token=token, announce=None)


def cmd_replay(args: argparse.Namespace, target: Target) -> None:
    from ..files import check_output_file, write_output
    from ..result import Result
    from ..experiment import load_spec
    from ..specfile import dump_spec

    check_output_file(args.output, "the replay spec")
    pbt = Result(existing_store(args.storage), args.experiment)
    member = pbt.best().id if args.member is None else args.member
    spec_text = dump_spec(pbt.replay_spec(member))  # the -o file is opened only once there is something to write
    if has_password(args.storage):
        spec_text = re.sub(r"^storage = ", lambda _: (
            f"# the store, named without its password: give its full URL by the {STORAGE_ENV} environment\n"
            f"# variable or the --storage flag (poptrain run {args.output} --storage URL), or by ~/.pgpass\n"
            "storage = "), spec_text, count=1, flags=re.MULTILINE)
    write_output(args.output, spec_text, "the replay spec")
    con = console()
    say(con, f"replay spec of member {member}'s schedule written to {args.output}")
    if args.no_run:
        return
    experiment = load_spec(args.output, storage=args.storage)  # the spec names the store without its password
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
    from ..export import export

    if args.every <= 0:
        raise SpecError(f"--every {args.every} is not a poll period: give a number of seconds above 0, e.g. 5")
    if args.timeout is not None and not args.timeout > 0:
        raise SpecError(f"--timeout {args.timeout} is not a time limit: give a number of seconds above 0, e.g. 3600")
    existing_store(args.storage).get_spec(args.experiment)  # a wrong store or name fails before the target is made
    con = console()
    where = shown(args.target)
    if args.follow:
        say(con, f"exporting {args.experiment} to {args.to} at {where} every {args.every:g}s until it is done "
                 f"(Ctrl-C stops; what is exported stays)")
    try:
        with _sigterm_interrupts():
            written = export(args.storage, args.experiment, args.to, args.target, follow=args.follow,
                             every=args.every, timeout=args.timeout)
    except KeyboardInterrupt:  # following is stopped, nothing to resume: the export so far is complete as it is
        say(con, "stopped following")
        return
    say(con, f"exported {written} reports of {args.experiment} to {args.to} at {where}")


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the block, so it stops an export as Ctrl-C does (runs finished)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
