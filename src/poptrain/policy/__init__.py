"""What PBT decides, as pure functions: ready criteria, exploit and explore strategies."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import SpecError
from ..space import typed_table
from ..trainable import import_object
from .decision import EXPLOIT_RNG, EXPLORE_RNG, GENERATION_RNG, Policy, decision_rng
from .exploit import ExploitStrategy, Truncation, Tournament, TTest
from .explore import Custom, ExploreStrategy, Noise, Perturb, Resample
from .ready import Every, ReadyCriterion

__all__ = [
    "Custom",
    "Every",
    "ExploitStrategy",
    "ExploreStrategy",
    "Noise",
    "Perturb",
    "Policy",
    "ReadyCriterion",
    "Resample",
    "TTest",
    "Tournament",
    "Truncation",
    "build_exploit",
    "build_explore",
    "build_ready",
    "decision_rng",
]

_READY: dict[str, Callable[..., Any]] = {"every": Every}
_EXPLOIT: dict[str, Callable[..., Any]] = {"tournament": Tournament, "truncation": Truncation, "ttest": TTest}
_EXPLORE: dict[str, Callable[..., Any]] = {
    "function": lambda path: Custom(_import_function(path)),
    "noise": Noise,
    "perturb": Perturb,
    "resample": Resample,
}
_ARGS: dict[str, tuple[str, ...]] = {
    "every": ("intervals", "burn_in"),
    "tournament": (),
    "truncation": ("fraction",),
    "ttest": ("window", "alpha"),
    "function": ("path",),
    "noise": ("sigma",),
    "perturb": ("factors", "resample_probability"),
    "resample": (),
}
_REQUIRED: dict[str, tuple[str, ...]] = {"every": ("intervals",), "function": ("path",), "noise": ("sigma",)}


def _import_function(path: Any) -> Callable[..., Any]:
    fn = import_object(path)
    if not callable(fn):
        raise SpecError(f"function {path!r} is not callable")
    return fn


def _build(role: str, spec: Any, kinds: dict[str, Callable[..., Any]], method: str) -> Any:
    if not isinstance(spec, (Mapping, str)) and callable(getattr(spec, method, None)):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}  # shorthand: a bare name means its defaults
    kind, args = typed_table(role, spec, kinds, "strategy")
    allowed = _ARGS[kind]
    for key in args:
        if key not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            raise SpecError(f"{role}: {kind} has no argument {key!r} (arguments: {listed})")
    for key in _REQUIRED.get(kind, ()):
        if key not in args:
            raise SpecError(f"{role}: {kind} needs argument {key!r}")
    try:
        return kinds[kind](**args)
    except SpecError as exc:
        message = str(exc) if str(exc).startswith(kind) else f"{kind}: {exc}"
        raise SpecError(f"{role}: {message}") from None


def build_ready(spec: Any) -> ReadyCriterion:
    """A ready criterion from an instance, a name, or a dict like {"type": "every", "intervals": 4}."""
    return _build("ready", spec, _READY, "is_ready")


def build_exploit(spec: Any) -> ExploitStrategy:
    """An exploit strategy from an instance, a name, or a dict like {"type": "truncation", "fraction": 0.25}."""
    return _build("exploit", spec, _EXPLOIT, "decide")


def build_explore(spec: Any) -> ExploreStrategy:
    """An explore strategy from an instance, a name, or a dict like {"type": "perturb"}."""
    return _build("explore", spec, _EXPLORE, "explore")
