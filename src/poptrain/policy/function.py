"""Explore with the user's own function fn(hparams, space, rng) -> hparams, checked against the space."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import SpecError
from ..records import Hparams
from ..space import Domain, validate_hparams
from ..trainable import import_object
from .registry import ExploreStrategy, function_path, strategy

ExploreFn = Callable[[Hparams, dict[str, Domain], np.random.Generator], Hparams]


def unchanged(hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
    """An explore function that keeps the copied hyperparameters as they are (exploit without explore)."""
    return dict(hparams)


@strategy("explore", "function")
@dataclass(frozen=True)
class ExploreFunction(ExploreStrategy):
    """A user function fn(hparams, space, rng) -> hparams; its result is checked against the space.

    `path` is the function itself or its import path 'module:name' (as specs hold it); either
    way the function is imported at once, and `to_dict` writes its import path back. Every
    change it makes is counted as 'function' (what it did cannot be named).
    """

    path: ExploreFn | str

    def __post_init__(self) -> None:
        fn: Any = self.path
        if isinstance(fn, str):
            fn = import_object(fn)
            if not callable(fn):
                raise SpecError(f"function {self.path!r} is not callable")
            object.__setattr__(self, "path", fn)
        elif not callable(fn):
            raise SpecError(f"explore function must be callable, got {fn!r}")

    @classmethod
    def example(cls) -> ExploreFunction:
        """The function explore of `unchanged` (the suite's example)."""
        return cls(unchanged)

    @property
    def fn(self) -> ExploreFn:
        """The function (what `path` names)."""
        return self.path  # type: ignore[return-value]  # a str is imported in __post_init__

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """Call the function on a copy of `hparams` and validate what it returns."""
        where = f"explore function {function_path(self.fn)}"
        result = self.fn(dict(hparams), space, rng)
        if not isinstance(result, Mapping):
            raise SpecError(f"{where} must return a dict of hyperparameters, got {result!r}")
        return validate_hparams(space, result, where)
