"""The argument parser: every command's flags, each engine option one flag."""

from __future__ import annotations

import argparse
import os
from typing import NoReturn

from .. import __version__
from ..engines import ENGINES
from .commands import (cmd_best, cmd_create, cmd_dashboard, cmd_export, cmd_replay, cmd_report, cmd_resume, cmd_run,
                       cmd_status, cmd_worker)
from ..redact import STORAGE_ENV
from .options import OPTION
from .show import SHOWN_MEMBERS, one_line


CHECKPOINTS_HELP = ("checkpoint folder or fsspec URL, e.g. s3://bucket/run (default: the spec's, else "
                    "$POPTRAIN_CHECKPOINTS, else a folder beside a SQLite store; a PostgreSQL store needs one, or "
                    "'local' when the store and every worker are on this host)")


TRUST_HELP = ("import code the stored spec names beyond its trainable's module (a strategy of your own); "
              "only for a store nobody else can write (or set POPTRAIN_TRUST_MODULES=module,...)")


def storage_flag(cmd: argparse.ArgumentParser, spec_default: bool = False) -> None:
    """--storage: the store URL, by default $POPTRAIN_STORAGE (where a password can stay out of the command line)."""
    env = os.environ.get(STORAGE_ENV) or None
    fallback = ", else the spec's" if spec_default else ""
    cmd.add_argument("--storage", default=env, required=env is None and not spec_default, metavar="URL",
                     help=f"store URL, e.g. sqlite:///runs/x.db or postgresql+psycopg://user@host/db "
                          f"(default: ${STORAGE_ENV}{fallback})")


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
                         help="torch device of the vectorized engine (cpu, cuda, ...; default cuda when present, else cpu)")
        cmd.add_argument("--compile", dest=OPTION + "compile", action="store_true", default=None,
                         help="torch.compile the vectorized engine's batched step (pays off on long runs only)")
        cmd.add_argument("--threads", dest=OPTION + "threads", type=positive_int, metavar="THREADS",
                         help="CPU threads torch uses in the vectorized engine (default: one per core; one per shard)")
        cmd.add_argument("--shards", dest=OPTION + "shards", type=positive_int, metavar="SHARDS",
                         help="vectorized engine: split the population into SHARDS batched parts, a process each")
        cmd.add_argument("--devices", dest=OPTION + "devices", type=lambda text: text.split(","), metavar="DEVICES",
                         help="vectorized engine: one shard on each of these torch devices (e.g. cuda:0,cuda:1)")
        cmd.add_argument("--memory-limit", dest=OPTION + "memory_limit", type=positive_int, metavar="BYTES",
                         help="bytes the vectorized engine's population may take (default: what the device has free)")
        cmd.add_argument("--address", dest=OPTION + "address", metavar="ADDRESS",
                         help="the Ray cluster for --engine ray (e.g. auto; default: a local Ray)")
        cmd.add_argument("--cpus-per-worker", dest=OPTION + "resources.cpu", type=float, metavar="CPUS",
                         help="CPUs each Ray worker reserves (default: 1)")
        cmd.add_argument("--gpus-per-worker", dest=OPTION + "resources.gpu", type=float, metavar="GPUS",
                         help="GPUs each Ray worker reserves, fractions allowed (default: 1 with --device cuda, else 0)")
        cmd.add_argument("--workers", dest=OPTION + "workers", type=positive_int, metavar="WORKERS",
                         help="worker processes of the local and ray engines (default: CPUs)")
        cmd.add_argument("--ranks-per-member", dest=OPTION + "ranks_per_member", type=positive_int, metavar="RANKS",
                         help="local and ray engines: processes per member, one process group (DDP, FSDP; default 1)")
        cmd.add_argument("--interval-timeout", dest=OPTION + "interval_timeout", type=float, metavar="SECONDS",
                         help="local and Ray engines: end a worker whose interval runs longer, charging its member a failure")
        cmd.add_argument("--quiet", action="store_true", help="no progress display and no warnings")
        cmd.add_argument("--force", action="store_true",
                         help="take over members still leased by workers you know are dead")

    run = sub.add_parser("run", help="train a population from a TOML spec", description=(
        "Train the population a TOML spec describes; flags override the spec's fields."))
    run.add_argument("spec", metavar="SPEC.toml")
    storage_flag(run, spec_default=True)
    run.add_argument("--name", help="experiment name (default: the spec's)")
    run.add_argument("--checkpoints", help=CHECKPOINTS_HELP)
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
    storage_flag(create, spec_default=True)
    create.add_argument("--name", help="experiment name (default: the spec's)")
    create.add_argument("--checkpoints", help=CHECKPOINTS_HELP)
    create.set_defaults(func=cmd_create, quiet=False)

    worker = sub.add_parser("worker", help="join a running experiment as one more worker", description=(
        "Train members of a stored experiment until every member is done. Given a spec, the experiment "
        "is created first unless it is already stored (with the same spec), so every task of a Slurm "
        "array or Kubernetes job can run the same command."))
    worker.add_argument("spec", metavar="SPEC.toml", nargs="?", help="create the experiment from this spec if needed")
    storage_flag(worker)
    worker.add_argument("--experiment", help="experiment name (default: the spec's)")
    worker.add_argument("--checkpoints", help="checkpoint folder or URL every worker reaches, e.g. s3://bucket/run "
                                              "(with a spec; default: the spec's)")
    worker.add_argument("--id", help="worker id (default: host-pid)")
    worker.add_argument("--trust-spec-code", action="store_true", help=TRUST_HELP)
    worker.add_argument("--quiet", action="store_true", help="no warnings")
    worker.set_defaults(func=cmd_worker)

    status = sub.add_parser("status", help="the experiments in a store, or one experiment's members")
    storage_flag(status)
    status.add_argument("--experiment")
    status.add_argument("--all", action="store_true",
                        help=f"list every member (by default a population over {SHOWN_MEMBERS} lists its best)")
    status.set_defaults(func=cmd_status, quiet=False)

    best = sub.add_parser("best", help="the best member as JSON")
    storage_flag(best)
    best.add_argument("--experiment", required=True)
    best.add_argument("--objective", help="of a multi-objective experiment: the objective to rank by")
    best.set_defaults(func=cmd_best, quiet=False)

    resume = sub.add_parser("resume", help="finish an interrupted experiment from its checkpoints")
    storage_flag(resume)
    resume.add_argument("--trust-spec-code", action="store_true", help=TRUST_HELP)
    resume.add_argument("--experiment", required=True)
    engine_flags(resume)
    resume.set_defaults(func=cmd_resume)

    report = sub.add_parser("report", help="write the experiment's HTML report (one file, works offline); of "
                                           "several, a comparison")
    storage_flag(report)
    report.add_argument("--experiment", dest="experiments", action="append", required=True, metavar="NAME",
                        help="the experiment to report; give it again to compare several (PBT and its -baseline)")
    report.add_argument("-o", "--output", required=True, metavar="REPORT.html")
    report.set_defaults(func=cmd_report, quiet=False)

    dashboard = sub.add_parser("dashboard", help="serve a live, read-only web view of a store's experiments")
    storage_flag(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1 only)")
    dashboard.add_argument("--port", type=int, default=8050)
    dashboard.add_argument("--token", default=os.environ.get("POPTRAIN_DASHBOARD_TOKEN") or None, metavar="TOKEN",
                           help="the access token every request must carry (default: $POPTRAIN_DASHBOARD_TOKEN; "
                                "on an address other than 127.0.0.1 one is generated and printed once)")
    dashboard.set_defaults(func=cmd_dashboard, quiet=False)

    replay = sub.add_parser("replay", help="retrain one member from scratch on the schedule PBT found", description=(
        "Write a spec that trains one member from step 0 along the best (or a chosen) member's stitched "
        "schedule, run it, and compare its score with the PBT member's."))
    storage_flag(replay)
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
        "the experiment trains, until every member is done, the experiment is deleted, or --timeout runs out; "
        "Ctrl-C or SIGTERM stops it and keeps what was written."))
    storage_flag(export)
    export.add_argument("--experiment", required=True)
    export.add_argument("--to", required=True, choices=("tensorboard", "mlflow"), help="the logger")
    export.add_argument("target", metavar="DIR_OR_URI",
                        help="TensorBoard: the log folder; MLflow: a folder or tracking URI (sqlite:///mlflow.db, "
                             "http://host:5000)")
    export.add_argument("--follow", action="store_true", help="keep polling the store until the experiment is done")
    export.add_argument("--every", type=float, default=5.0, metavar="SECONDS",
                        help="with --follow, seconds between polls (default 5)")
    export.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="with --follow, stop with an error after this many seconds if members are still training")
    export.set_defaults(func=cmd_export, quiet=False)
    return p
