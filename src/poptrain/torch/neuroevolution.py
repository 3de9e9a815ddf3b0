"""Gradient-free training of the weights themselves: Gaussian mutation plus PBT's truncation selection.

Deep neuroevolution (Such et al., 2017) as a PBT run: one `train()` adds N(0, sigma²) noise to every
weight (no optimiser, no gradient); the exploit strategy (truncation) makes the bottom of the
population copy the weights of the top, which is the genetic algorithm's selection; and `sigma` is
a hyperparameter like any other, so PBT's explore tunes the mutation strength while it runs.

- On the local (or serial, or Ray) engine: subclass `NeuroevolutionTrainable`, build `self.model`
  from `self.generator`, and write `evaluate()`.
- On the vectorized engine: subclass `NeuroevolutionPopulation`, build `self.population` and
  `self.optimizer = Mutation(self.population.params, sigma=[...])`, and write `evaluate()`; one
  `train()` mutates every member's stacked weights in one tensor operation per parameter.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..records import Hparams
from ..trainable import Trainable
from .optim import BatchedOptimizer, _along
from .vectorized import upload

SIGMA = "sigma"


@torch.no_grad()
def mutate_(params: Any, sigma: float, generator: torch.Generator) -> None:
    """Add N(0, sigma²) noise to each tensor of `params` (a module's parameters or tensors) in place."""
    for p in params:
        p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device), alpha=float(sigma))


class NeuroevolutionTrainable(Trainable):
    """One member whose `train()` mutates its weights with Gaussian noise of standard deviation `sigma`.

    Subclasses build `self.model` in `__init__` (after calling this one, drawing initial weights
    from `self.generator`) and write `evaluate()`. `mutations` is how many mutations one `train()`
    makes (each interval of PBT's is then that many generations of the genetic algorithm's).
    """

    mutations: int = 1
    model: torch.nn.Module

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.generator = torch.Generator().manual_seed(seed)

    def train(self) -> None:
        """Mutate every weight: w += sigma * N(0, 1), `mutations` times."""
        for _ in range(self.mutations):
            mutate_(self.model.parameters(), self.hparams[SIGMA], self.generator)

    def state_dict(self) -> dict[str, Any]:
        """The weights and the noise generator (copies of both), so a copy mutates on from the same state."""
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "rng": self.generator.get_state().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take the weights; keep this member's own noise stream, so that copies of one parent diverge."""
        self.model.load_state_dict(state["model"])


class Mutation(BatchedOptimizer):
    """The vectorized engine's 'optimiser' for neuroevolution: a per-member sigma and no gradients.

    `step()` adds sigma[m] * N(0, 1) to member m's slice of every stacked weight, one randn and one
    add per parameter for the whole population, from one generator (kept in the state).
    """

    hparams = (SIGMA,)

    def __init__(self, params: dict[str, torch.Tensor], sigma: Any, seed: int = 0) -> None:
        super().__init__(params, sigma=sigma)
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor] | None = None) -> None:
        """One mutation of every member's weights (gradients, if given, are ignored)."""
        sigma = self.values[SIGMA]
        for p in self.params.values():
            noise = upload(torch.randn(p.shape, generator=self.generator, dtype=p.dtype), p.device)
            p.add_(noise * _along(sigma, p))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self.generator.get_state().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "rng" in state:
            self.generator.set_state(state["rng"].clone())


class NeuroevolutionPopulation:
    """Mixin for a `BatchedTrainable` trained by mutation: `train()` is `mutations` batched mutations."""

    mutations: int = 1
    hparams: tuple[str, ...] = (SIGMA,)
    optimizer: Mutation

    def train(self) -> None:
        """Mutate every member's weights at once."""
        for _ in range(self.mutations):
            self.optimizer.step()


def sigmas(hparams: Sequence[Hparams]) -> list[float]:
    """Each member's sigma, for `Mutation(params, sigma=sigmas(hparams))`."""
    return [float(h[SIGMA]) for h in hparams]
