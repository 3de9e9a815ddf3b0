"""The strategy contracts and their registry: each strategy is a frozen dataclass whose fields are its TOML arguments.

A strategy is one class in one file, subclassing the contract of its role (`ReadyCriterion`,
`ExploitStrategy` or `ExploreStrategy`: each names every method and attribute the code calls,
with a default where one makes sense) and registered by role and name:

    @strategy("exploit", "truncation")
    @dataclass(frozen=True)
    class Truncation(ExploitStrategy):
        fraction: float = 0.25
        ...

Fields without a default are required arguments; any other key is refused; `to_dict()` is
derived from the fields, and `build()` reads it back. Validation lives in `__post_init__` and
raises a SpecError whose message starts with the strategy's name. A spec names poptrain's own
strategies by their registered names and any other by its import path 'module:Class', so that
a worker in a fresh interpreter imports it (through the spec's `paths`).

What a strategy reads beyond each member's latest score, it declares in `reads` (a class
attribute, a set of the names below); engines supply exactly what is declared, and registering
a strategy that reads something no engine supplies is refused, so a new need is added here
first, then to the engines.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Callable, ClassVar, Sequence, TypeVar

import numpy as np

from ..errors import SpecError
from ..records import Decision, Hparams, MemberView, Standings
from ..space import Domain, typed_table
from ..trainable import import_object, object_path

PopulationView = Standings | Sequence[MemberView]  # what an exploit strategy ranks against

# What a strategy may read beyond each member's latest score (its `reads`), and where it finds it:
RECENT = "recent"  # each member's last `window` scores: MemberView.recent and Standings.recent
HISTORY = "history"  # each member's last `history` intervals (step, fitness, hparams) and current hparams:
#                      Standings.history and Standings.current (PB2's explore, FIRE's improvement rates)
METRICS = "metrics"  # each member's latest metrics dict (numbers only): Standings.metrics (multi-objective)
# A strategy's sub-population is a pure function of member ids (FIRE PBT), so no engine supplies "groups".
READS: frozenset[str] = frozenset({RECENT, HISTORY, METRICS})

ROLES = ("ready", "exploit", "explore")
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")  # 'package.module:Class'
_REGISTRY: dict[str, dict[str, type[Strategy]]] = {role: {} for role in ROLES}


class Strategy(ABC):
    """What every strategy has: its name and role (set by @strategy), what it `reads`, `to_dict` and `example`."""

    kind: ClassVar[str]  # its name in specs ({type = kind}), set by @strategy
    role: ClassVar[str]  # "ready", "exploit" or "explore", set by @strategy
    reads: ClassVar[frozenset[str]] = frozenset()  # what it reads beyond the latest scores (READS)
    history: ClassVar[int] = 1  # with "history" in `reads`: how many of each member's latest intervals

    def to_dict(self) -> dict[str, Any]:
        """The strategy as plain data: its type (see `spec_type`) and every field (read back by `build`)."""
        fields = dataclasses.fields(self) if dataclasses.is_dataclass(self) else ()
        return {"type": spec_type(type(self)), **{f.name: _plain(getattr(self, f.name)) for f in fields if f.init}}

    @classmethod
    def example(cls) -> Strategy:
        """An instance for the conformance suite (`poptrain.testing.StrategySuite`); one with required arguments overrides it."""
        return cls()


class ReadyCriterion(Strategy):
    """Says whether a member that reached `step` takes a decision now."""

    @abstractmethod
    def is_ready(self, step: int, last_ready_step: int) -> bool:
        """True if a member at `step` (intervals done), last ready at `last_ready_step`, decides now."""


class ExploitStrategy(Strategy):
    """Decides, for one member against the population, Continue or Exploit(source)."""

    window: ClassVar[int] = 1  # with "recent" in `reads`: how many recent scores of each member it reads

    @abstractmethod
    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision:
        """Continue, or Exploit(source) of another member (with hparams only if the rule names them)."""


class ExploreStrategy(Strategy):
    """Returns new hyperparameters from a source's copied ones."""

    @abstractmethod
    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """A new dict of hyperparameters in `space`, drawn from `rng` (never changes `hparams`)."""

    def explore_batch(self, requests: Sequence[tuple[int, Hparams]], space: dict[str, Domain],
                      rngs: Sequence[np.random.Generator], standings: Standings) -> list[Hparams]:
        """New hyperparameters for each (member, source hparams) of one decision round, in order.

        The Policy calls it for a strategy whose `reads` is not empty, with the standings it
        declared; the default explores each request on its own (a strategy that reads the
        standings, as PB2 does, overrides it).
        """
        return [self.explore(dict(hparams), space, rng) for (_, hparams), rng in zip(requests, rngs)]

    def operations(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> dict[str, str]:
        """What `explore` with the same generator did to each hyperparameter, for the report's counts.

        The default names every change by the strategy's type; Perturb says 'perturb' or 'resample'.
        """
        return dict.fromkeys(space, name_of(type(self)))


BASES: dict[str, type[Strategy]] = {"ready": ReadyCriterion, "exploit": ExploitStrategy, "explore": ExploreStrategy}
A = {"ready": "a ready", "exploit": "an exploit", "explore": "an explore"}  # "... is not an explore strategy"


def role_of(obj: Any) -> str | None:
    """The role whose contract `obj` (an instance or a class) follows, or None."""
    cls = obj if isinstance(obj, type) else type(obj)
    return next((role for role, base in BASES.items() if issubclass(cls, base)), None)


def name_of(cls: type) -> str:
    """A strategy class's registered name, or its class name in lower case if it is not registered."""
    return cls.__dict__.get("kind") or cls.__name__.lower()


def spec_type(cls: type) -> str:
    """How a spec names a strategy class: poptrain's own by registered name, any other by import path 'module:Class'.

    The import path lets a worker in a fresh interpreter import a user's strategy; a class
    that has no importable path (defined inside a function) keeps its registered name.
    """
    kind = cls.__dict__.get("kind")  # a subclass of a registered class is not registered by inheriting its name
    if kind is not None and (cls.__module__.split(".")[0] == "poptrain" or "<locals>" in cls.__qualname__):
        return kind
    return object_path(cls)


def _plain(value: Any) -> Any:
    # Tuples become lists and functions their import paths, so that the result is JSON and TOML.
    if isinstance(value, tuple):
        return [_plain(x) for x in value]
    if callable(value):
        return function_path(value)
    return value


def function_path(fn: Any) -> str:
    """A function's 'module:qualname' path; callables without one (a partial, an instance) give repr."""
    return object_path(fn) if hasattr(fn, "__module__") and hasattr(fn, "__qualname__") else repr(fn)


S = TypeVar("S", bound=type)


def strategy(role: str, kind: str) -> Callable[[S], S]:
    """Register a frozen-dataclass strategy class under `kind` for `role`; it must follow the role's contract."""
    if role not in ROLES:
        raise ValueError(f"strategy role must be one of {', '.join(ROLES)}, not {role!r}")

    def register(cls: S) -> S:
        base = BASES[role]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{role} strategy {kind!r}: {getattr(cls, '__name__', cls)} must subclass "
                            f"poptrain.policy.{base.__name__}")
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(f"{role} strategy {kind!r}: {cls.__name__} does not implement {', '.join(missing)}")
        if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
            raise TypeError(f"strategy {kind!r}: {cls.__name__} must be a frozen dataclass")
        unknown = set(cls.reads) - READS
        if unknown:
            raise TypeError(f"strategy {kind!r} reads {', '.join(sorted(unknown))}, which no engine supplies "
                            f"(supplied: {', '.join(sorted(READS))})")
        if role == "explore" and cls.reads and cls.explore_batch is ExploreStrategy.explore_batch:
            raise TypeError(f"explore strategy {kind!r} reads {', '.join(sorted(cls.reads))} but does not override "
                            f"explore_batch(requests, space, rngs, standings), the one call that hands it them")
        if ":" in kind:
            raise ValueError(f"strategy name {kind!r} must not contain ':' (it marks an import path)")
        if kind in _REGISTRY[role] and _REGISTRY[role][kind] is not cls:
            raise ValueError(f"{role} strategy {kind!r} is registered twice")
        cls.kind, cls.role = kind, role  # type: ignore[attr-defined]
        _REGISTRY[role][kind] = cls
        return cls

    return register


def registered(role: str) -> dict[str, type[Strategy]]:
    """The strategies registered for `role`, by name."""
    return dict(_REGISTRY[role])


def arguments(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """A strategy class's (arguments, required arguments): its fields, and those without defaults; None if not a dataclass."""
    if not dataclasses.is_dataclass(cls):
        return None
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = tuple(f.name for f in fields)
    missing = dataclasses.MISSING
    return names, tuple(f.name for f in fields if f.default is missing and f.default_factory is missing)


def find(role: str, kind: str, paths: Sequence[str] = ()) -> type[Strategy]:
    """The strategy class a spec's `type` names: a registered name, or an import path 'module:Class' (searching `paths`)."""
    kinds = _REGISTRY[role]
    if kind in kinds:
        return kinds[kind]
    if not isinstance(kind, str) or not IMPORT_PATH.fullmatch(kind):
        raise SpecError(f"{role}: unknown strategy {kind!r} (known: {', '.join(sorted(kinds))}; a strategy of your "
                        f"own is named by its import path 'module:Class')")
    by_path = {object_path(c): c for c in kinds.values()}
    if kind in by_path:  # a registered class that the spec names by its path (an import would give the same class)
        return by_path[kind]
    try:
        cls = import_object(kind, list(paths))
    except SpecError as exc:
        raise SpecError(f"{role}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BASES[role])):
        raise SpecError(f"{role}: {kind} is not {A[role]} strategy: a strategy subclasses "
                        f"poptrain.policy.{BASES[role].__name__}")
    if inspect.isabstract(cls):
        raise SpecError(f"{role}: {kind} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    return cls


def build(role: str, spec: Any, paths: Sequence[str] = ()) -> Any:
    """A strategy of `role` from an instance, a name, an import path, or a {type, args...} table."""
    base = BASES[role]
    if isinstance(spec, base):
        return spec
    method = next(iter(base.__abstractmethods__))
    if isinstance(spec, Strategy) or callable(getattr(spec, method, None)):
        raise SpecError(f"{role}: {type(spec).__name__} is not {A[role]} strategy: subclass "
                        f"poptrain.policy.{base.__name__} (its {method} and the other methods the policy calls)")
    if isinstance(spec, str):
        spec = {"type": spec}  # shorthand: a bare name means its defaults
    kinds = _REGISTRY[role]
    if not (isinstance(spec, Mapping) and isinstance(spec.get("type"), str) and ":" in spec["type"]):
        try:
            typed_table(role, spec, kinds, "strategy")
        except SpecError as exc:
            hint = "; a strategy of your own is named by its import path 'module:Class'" if "unknown" in str(exc) else ""
            raise SpecError(f"{exc}{hint}") from None
    kind, args = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    cls = find(role, kind, paths)
    name = kind if ":" in kind else name_of(cls)
    fields = arguments(cls)
    if fields is not None:
        allowed, required = fields
        for key in args:
            if key not in allowed:
                listed = ", ".join(allowed) if allowed else "none"
                raise SpecError(f"{role}: {name} has no argument {key!r} (arguments: {listed})")
        for key in required:
            if key not in args:
                raise SpecError(f"{role}: {name} needs argument {key!r}")
    try:
        return cls(**args)
    except SpecError as exc:
        message = str(exc) if str(exc).startswith((name, name_of(cls))) else f"{name}: {exc}"
        raise SpecError(f"{role}: {message}") from None
