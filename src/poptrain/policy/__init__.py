"""What PBT decides, as pure functions: ready criteria, exploit and explore strategies.

Each strategy is one class in one file, subclassing its role's contract (`ReadyCriterion`,
`ExploitStrategy`, `ExploreStrategy`) and registered by name (see `registry.py`); adding one to
poptrain is its file plus its export line below (docs/contributing.md).
"""

from __future__ import annotations

from typing import Any, Sequence

from .decision import EXPLOIT_RNG, EXPLORE_RNG, GENERATION_RNG, Policy, decision_rng
from .every import Every
from .fire import Fire
from .function import ExploreFunction
from .noise import Noise
from .pareto import Pareto
from .pb2 import PB2
from .perturb import Perturb
from .resample import Resample
from .registry import ExploitStrategy, ExploreStrategy, ReadyCriterion, Strategy, build, registered, strategy
from .tournament import Tournament
from .truncation import Truncation
from .ttest import TTest

__all__ = [
    "EXPLOIT_RNG",
    "EXPLORE_RNG",
    "GENERATION_RNG",
    "Every",
    "Fire",
    "ExploitStrategy",
    "ExploreFunction",
    "ExploreStrategy",
    "Noise",
    "PB2",
    "Pareto",
    "Perturb",
    "Policy",
    "ReadyCriterion",
    "Resample",
    "Strategy",
    "TTest",
    "Tournament",
    "Truncation",
    "build_exploit",
    "build_explore",
    "build_ready",
    "decision_rng",
    "registered",
    "strategy",
]


def build_ready(spec: Any, paths: Sequence[str] = ()) -> ReadyCriterion:
    """A ready criterion from an instance, a name, or a dict like {"type": "every", "intervals": 4}."""
    return build("ready", spec, paths)


def build_exploit(spec: Any, paths: Sequence[str] = ()) -> ExploitStrategy:
    """An exploit strategy from an instance, a name, or a dict like {"type": "truncation", "fraction": 0.25}.

    A strategy of the user's own is named by its import path, {"type": "module:Class", ...},
    imported searching `paths` first.
    """
    return build("exploit", spec, paths)


def build_explore(spec: Any, paths: Sequence[str] = ()) -> ExploreStrategy:
    """An explore strategy from an instance, a name, or a dict like {"type": "perturb"} (or "module:Class")."""
    return build("explore", spec, paths)
