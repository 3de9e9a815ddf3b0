"""The paper's default explore: perturb each hyperparameter by a factor, or resample it from its prior."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError
from ..records import Hparams
from ..space import Domain, validate_hparams
from .checks import is_real
from .registry import ExploreStrategy, strategy


@strategy("explore", "perturb")
@dataclass(frozen=True)
class Perturb(ExploreStrategy):
    """Per hyperparameter: resample from the prior with some probability, else perturb by a factor."""

    factors: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25

    def __post_init__(self) -> None:
        f = self.factors
        if isinstance(f, (str, bytes)) or not isinstance(f, (list, tuple)) or not f:
            raise SpecError(f"perturb factors must be a non-empty list of positive numbers, got {f!r}")
        if not all(is_real(x) and x > 0 for x in f):
            raise SpecError(f"perturb factors must be positive numbers, got {list(f)!r}")
        p = self.resample_probability
        if not is_real(p) or not 0 <= p <= 1:
            raise SpecError(f"perturb resample_probability must be in [0, 1], got {p!r}")
        object.__setattr__(self, "factors", tuple(float(x) for x in f))
        object.__setattr__(self, "resample_probability", float(p))

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """A new dict: each value resampled (prob. resample_probability) or perturbed."""
        return self._draw(hparams, space, rng)[0]

    def operations(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> dict[str, str]:
        """What `explore` with the same generator did to each hyperparameter: 'perturb' or 'resample'."""
        return self._draw(hparams, space, rng)[1]

    def draw(self, domain: Domain, value: Any, rng: np.random.Generator) -> tuple[Any, str]:
        """One hyperparameter's explore: (new value, 'resample' or 'perturb').

        It always draws both numbers, so the stream of draws does not depend on the outcome.
        """
        resample = float(rng.random()) < self.resample_probability
        factor = self.factors[int(rng.integers(len(self.factors)))]
        return (domain.sample(rng), "resample") if resample else (domain.perturb(value, factor, rng), "perturb")

    def _draw(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> tuple[Hparams, dict[str, str]]:
        values = validate_hparams(space, hparams, "perturb")
        drawn = {name: self.draw(domain, values[name], rng) for name, domain in space.items()}
        return {name: value for name, (value, _) in drawn.items()}, {name: op for name, (_, op) in drawn.items()}
