"""What the flags carry to a command: the experiment it works on, the engine and its options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any




@dataclass
class Target:
    """The experiment the command is working on, so an interrupt can say how to resume it."""

    storage: str | None = None
    name: str | None = None



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
