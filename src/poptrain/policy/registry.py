"""The strategy registry: each strategy is a frozen dataclass whose fields are its TOML arguments.

A strategy is one class in one file, registered by role and name:

    @strategy("exploit", "truncation")
    @dataclass(frozen=True)
    class Truncation(Strategy):
        fraction: float = 0.25
        ...

Fields without a default are required arguments; any other key is refused; `to_dict()` is
derived from the fields, and `build()` reads it back. Validation lives in `__post_init__` and
raises a SpecError whose message starts with the strategy's name.

What a strategy reads beyond each member's latest score, it declares in `reads` (a class
attribute, a set of the names below); engines supply exactly what is declared, and registering
a strategy that reads something no engine supplies is refused, so a new need is added here
first, then to the engines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, ClassVar, Protocol, Sequence, TypeVar

import numpy as np

from ..errors import SpecError
from ..population import Decision, Hparams, MemberView, Standings
from ..space import Domain, typed_table
from ..trainable import object_path

PopulationView = Standings | Sequence[MemberView]  # what an exploit strategy ranks against

# What a strategy may read beyond each member's latest score (its `reads`), and where it finds it:
RECENT = "recent"  # each member's last `window` scores: MemberView.recent and Standings.recent
HISTORY = "history"  # each member's last `history` intervals (step, fitness, hparams) and current hparams:
#                      Standings.history and Standings.current (PB2's explore, FIRE's improvement rates)
METRICS = "metrics"  # each member's latest metrics dict (numbers only): Standings.metrics (multi-objective)
# A strategy's sub-population is a pure function of member ids (FIRE PBT), so no engine supplies "groups".
READS: frozenset[str] = frozenset({RECENT, HISTORY, METRICS})

ROLES = ("ready", "exploit", "explore")
_REGISTRY: dict[str, dict[str, type[Strategy]]] = {role: {} for role in ROLES}


class ReadyCriterion(Protocol):
    """Anything that says whether a member at `step` may exploit now."""

    def is_ready(self, step: int, last_ready_step: int) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


class ExploitStrategy(Protocol):
    """Anything that decides, for one member against the population, Continue or Exploit."""

    window: int  # how many recent scores of each member it reads (1: the latest only)

    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision: ...

    def to_dict(self) -> dict[str, Any]: ...


class ExploreStrategy(Protocol):
    """Anything that returns new hyperparameters from copied ones."""

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams: ...

    def to_dict(self) -> dict[str, Any]: ...


class Strategy:
    """The base of registered strategies: `to_dict` from the dataclass fields, `kind` and `reads`."""

    kind: ClassVar[str]  # its name in specs ({type = kind}), set by @strategy
    role: ClassVar[str]  # "ready", "exploit" or "explore", set by @strategy
    reads: ClassVar[frozenset[str]] = frozenset()  # what it reads beyond the latest scores (READS)

    def to_dict(self) -> dict[str, Any]:
        """The strategy as plain data: its type and every field (read back by `build`)."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]  # every registered strategy is a dataclass
        return {"type": self.kind, **{f.name: _plain(getattr(self, f.name)) for f in fields}}


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
    """Register a frozen-dataclass strategy class under `kind` for `role`."""
    if role not in ROLES:
        raise ValueError(f"strategy role must be one of {', '.join(ROLES)}, not {role!r}")

    def register(cls: S) -> S:
        if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
            raise TypeError(f"strategy {kind!r}: {cls.__name__} must be a frozen dataclass")
        unknown = set(getattr(cls, "reads", ())) - READS
        if unknown:
            raise TypeError(f"strategy {kind!r} reads {', '.join(sorted(unknown))}, which no engine supplies "
                            f"(supplied: {', '.join(sorted(READS))})")
        if kind in _REGISTRY[role] and _REGISTRY[role][kind] is not cls:
            raise ValueError(f"{role} strategy {kind!r} is registered twice")
        cls.kind, cls.role = kind, role  # type: ignore[attr-defined]
        _REGISTRY[role][kind] = cls
        return cls

    return register


def registered(role: str) -> dict[str, type[Strategy]]:
    """The strategies registered for `role`, by name."""
    return dict(_REGISTRY[role])


def arguments(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A strategy class's (arguments, required arguments): its fields, and those without defaults."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = tuple(f.name for f in fields)
    missing = dataclasses.MISSING
    return names, tuple(f.name for f in fields if f.default is missing and f.default_factory is missing)


def build(role: str, spec: Any, method: str) -> Any:
    """A strategy of `role` from an instance (anything with `method`), a name, or a {type, args...} table."""
    if not isinstance(spec, (Mapping, str)) and callable(getattr(spec, method, None)):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}  # shorthand: a bare name means its defaults
    kinds = _REGISTRY[role]
    kind, args = typed_table(role, spec, kinds, "strategy")
    cls = kinds[kind]
    allowed, required = arguments(cls)
    for key in args:
        if key not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            raise SpecError(f"{role}: {kind} has no argument {key!r} (arguments: {listed})")
    for key in required:
        if key not in args:
            raise SpecError(f"{role}: {kind} needs argument {key!r}")
    try:
        return cls(**args)
    except SpecError as exc:
        message = str(exc) if str(exc).startswith(kind) else f"{kind}: {exc}"
        raise SpecError(f"{role}: {message}") from None
