"""The paper's *explore*: new hyperparameters near the copied ones (pure functions)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import SpecError
from ..population import Hparams
from ..space import Domain, validate_hparams
from ..trainable import object_path


def _path(fn: Any) -> str:
    # Callables without a qualname (a functools.partial, an instance) fall back to repr.
    return object_path(fn) if hasattr(fn, "__module__") and hasattr(fn, "__qualname__") else repr(fn)


class ExploreStrategy(Protocol):
    """Anything that returns new hyperparameters from copied ones."""

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams: ...

    def to_dict(self) -> dict[str, Any]: ...


def _real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Perturb:
    """Per hyperparameter: resample from the prior with some probability, else perturb by a factor."""

    factors: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25

    def __post_init__(self) -> None:
        f = self.factors
        if isinstance(f, (str, bytes)) or not isinstance(f, (list, tuple)) or not f:
            raise SpecError(f"perturb factors must be a non-empty list of positive numbers, got {f!r}")
        if not all(_real(x) and x > 0 for x in f):
            raise SpecError(f"perturb factors must be positive numbers, got {list(f)!r}")
        p = self.resample_probability
        if not _real(p) or not 0 <= p <= 1:
            raise SpecError(f"perturb resample_probability must be in [0, 1], got {p!r}")
        object.__setattr__(self, "factors", tuple(float(x) for x in f))
        object.__setattr__(self, "resample_probability", float(p))

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """A new dict: each value resampled (prob. resample_probability) or perturbed."""
        return self._draw(hparams, space, rng)[0]

    def operations(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> dict[str, str]:
        """What `explore` with the same generator did to each hyperparameter: 'perturb' or 'resample'."""
        return self._draw(hparams, space, rng)[1]

    def _draw(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> tuple[Hparams, dict[str, str]]:
        values = validate_hparams(space, hparams, "perturb")
        new: Hparams = {}
        ops: dict[str, str] = {}
        for name, domain in space.items():
            # Always draw both numbers so the stream of draws does not depend on the outcome.
            resample = float(rng.random()) < self.resample_probability
            factor = self.factors[int(rng.integers(len(self.factors)))]
            new[name] = domain.sample(rng) if resample else domain.perturb(values[name], factor, rng)
            ops[name] = "resample" if resample else "perturb"
        return new, ops

    def to_dict(self) -> dict[str, Any]:
        """The strategy as plain data (read back by `build_explore`)."""
        return {
            "type": "perturb",
            "factors": list(self.factors),
            "resample_probability": self.resample_probability,
        }


@dataclass(frozen=True)
class Resample:
    """Draw every hyperparameter afresh from its prior."""

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """A new dict of values sampled from the space's priors."""
        validate_hparams(space, hparams, "resample")
        return {name: domain.sample(rng) for name, domain in space.items()}

    def operations(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> dict[str, str]:
        """Every hyperparameter is resampled."""
        return dict.fromkeys(space, "resample")

    def to_dict(self) -> dict[str, Any]:
        """The strategy as plain data (read back by `build_explore`)."""
        return {"type": "resample"}


@dataclass(frozen=True)
class Noise:
    """Add Gaussian noise of scale `sigma` (domain units) to every hyperparameter: the paper toy's explore."""

    sigma: float

    def __post_init__(self) -> None:
        if not _real(self.sigma) or self.sigma <= 0:
            raise SpecError(f"noise sigma must be a number > 0, got {self.sigma!r}")
        object.__setattr__(self, "sigma", float(self.sigma))

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """A new dict with `domain.noise(value, sigma)` for every hyperparameter."""
        values = validate_hparams(space, hparams, "noise")
        return {name: domain.noise(values[name], self.sigma, rng) for name, domain in space.items()}

    def operations(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> dict[str, str]:
        """Every hyperparameter gets noise."""
        return dict.fromkeys(space, "noise")

    def to_dict(self) -> dict[str, Any]:
        """The strategy as plain data (read back by `build_explore`)."""
        return {"type": "noise", "sigma": self.sigma}


@dataclass(frozen=True)
class Custom:
    """A user function fn(hparams, space, rng) -> hparams; its result is checked against the space."""

    fn: Callable[[Hparams, dict[str, Domain], np.random.Generator], Hparams]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise SpecError(f"explore function must be callable, got {self.fn!r}")

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """Call the function on a copy of `hparams` and validate what it returns."""
        where = f"explore function {_path(self.fn)}"
        result = self.fn(dict(hparams), space, rng)
        if not isinstance(result, Mapping):
            raise SpecError(f"{where} must return a dict of hyperparameters, got {result!r}")
        return validate_hparams(space, result, where)

    def operations(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> dict[str, str]:
        """The function's changes cannot be named: 'function' for every hyperparameter."""
        return dict.fromkeys(space, "function")

    def to_dict(self) -> dict[str, Any]:
        """The strategy as plain data: the function's import path."""
        return {"type": "function", "path": _path(self.fn)}
