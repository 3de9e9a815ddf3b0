"""Explore by additive Gaussian noise, as in the paper's toy (it moves zeros, which a factor cannot)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from ..records import Hparams
from ..space import Domain, validate_hparams
from .checks import is_real
from .registry import ExploreStrategy, strategy


@strategy("explore", "noise")
@dataclass(frozen=True)
class Noise(ExploreStrategy):
    """Add Gaussian noise of scale `sigma` (domain units) to every hyperparameter: the paper toy's explore."""

    sigma: float

    def __post_init__(self) -> None:
        if not is_real(self.sigma) or self.sigma <= 0:
            raise SpecError(f"noise sigma must be a number > 0, got {self.sigma!r}")
        object.__setattr__(self, "sigma", float(self.sigma))

    @classmethod
    def example(cls) -> Noise:
        """Noise of scale 0.1, as the paper's toy uses (the suite's example)."""
        return cls(0.1)

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """A new dict with `domain.noise(value, sigma)` for every hyperparameter."""
        values = validate_hparams(space, hparams, "noise")
        return {name: domain.noise(values[name], self.sigma, rng) for name, domain in space.items()}
