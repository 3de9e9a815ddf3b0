"""Engines execute: they move members through train → evaluate → report → maybe exploit.

One interface (`Engine`), one registry by name. Adding an engine is one module holding one
dataclass and one line in `REGISTRY`; its options are its fields, reachable from Python
(`Local(workers=2)`), TOML (`[engine]` with `type = "local"`) and the CLI's flags.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

from ..errors import SpecError
from .base import Engine, check_not_batched, trained_batched

# name -> "module:Class" under poptrain.engines, imported when first asked for (Ray and torch load slowly)
REGISTRY: dict[str, str] = {
    "local": "local:Local",
    "serial": "serial:Serial",
    "vectorized": "vectorized:Vectorized",
    "ray": "ray:Ray",
}
ENGINES = tuple(REGISTRY)


def engine_class(name: str) -> type[Engine]:
    """The engine class registered under `name`."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise SpecError(f"unknown engine {name!r} (known: {', '.join(REGISTRY)})")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def make_engine(engine: Any, options: Mapping[str, Any] | None = None) -> Engine:
    """An engine from an Engine, a name, or a table {"type": name, option: value}; `options` override.

    An option the engine does not have is refused with the options it has.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if isinstance(engine, Engine):
        return dataclasses.replace(engine, **_checked(engine.name, type(engine), options)) if options else engine
    if isinstance(engine, Mapping):
        table = dict(engine)
        name = table.pop("type", None)
        if name is None:
            raise SpecError(f"engine table needs a type (one of {', '.join(REGISTRY)})")
        options = {**table, **options}
    else:
        name = engine
    cls = engine_class(name)
    return cls(**_checked(name, cls, options))


def _checked(name: str, cls: type[Engine], options: dict[str, Any]) -> dict[str, Any]:
    known = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    for key in options:
        if key not in known:
            raise SpecError(f"engine {name} has no option {key!r} (its options: {', '.join(known) or 'none'})")
    return options


__all__ = ["ENGINES", "Engine", "REGISTRY", "check_not_batched", "engine_class", "make_engine", "trained_batched"]


def __getattr__(name: str) -> Any:
    """`poptrain.engines.Local` and the other registered classes, imported on first use."""
    for key, target in REGISTRY.items():
        if target.partition(":")[2] == name:
            return engine_class(key)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
