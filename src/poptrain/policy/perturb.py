"""The paper's default explore: perturb each hyperparameter by a factor, or resample it from its prior."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from ..population import Hparams
from ..space import Domain, validate_hparams
from .checks import is_real
from .registry import Strategy, strategy


@strategy("explore", "perturb")
@dataclass(frozen=True)
class Perturb(Strategy):
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
