"""Explore by drawing every hyperparameter afresh from its prior."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..records import Hparams
from ..space import Domain, validate_hparams
from .registry import ExploreStrategy, strategy


@strategy("explore", "resample")
@dataclass(frozen=True)
class Resample(ExploreStrategy):
    """Draw every hyperparameter afresh from its prior."""

    def explore(self, hparams: Hparams, space: dict[str, Domain], rng: np.random.Generator) -> Hparams:
        """A new dict of values sampled from the space's priors."""
        validate_hparams(space, hparams, "resample")
        return {name: domain.sample(rng) for name, domain in space.items()}
