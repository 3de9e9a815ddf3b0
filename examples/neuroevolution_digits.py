"""Deep neuroevolution on the 8x8 digits: an MLP's weights trained by mutation and selection, no gradients.

One `train()` is MUTATIONS Gaussian mutations of every weight (sigma, a hyperparameter PBT
explores); truncation selection copies the best members' weights into the worst every interval.
`NeuroDigits` is one member (local, serial or Ray engine); `NeuroDigitsPopulation` the whole
population as stacked weights for the vectorized engine, mutated in one operation per tensor.
Run it with `poptrain run examples/neuroevolution_digits.toml`; benchmarks/variants.py compares it
with gradient PBT (mlp_digits) per second of compute.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mlp_digits import build_mlp, load_split
from poptrain.records import Hparams
from poptrain.torch.neuroevolution import Mutation, NeuroevolutionPopulation, NeuroevolutionTrainable, sigmas
from poptrain.torch.stacked import StackedModules
from poptrain.torch.vectorized import BatchedTrainable

HIDDEN = 32
MUTATIONS = 1


class NeuroDigits(NeuroevolutionTrainable):
    """One member: a 64→32→10 MLP whose weights only ever change by mutation."""

    mutations = MUTATIONS

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.data = load_split()
        self.model = build_mlp(self.generator, HIDDEN)

    def evaluate(self) -> dict[str, float]:
        """Validation accuracy (the metric) and loss."""
        _, _, x, y = self.data
        with torch.no_grad():
            logits = self.model(x)
        return {"accuracy": (logits.argmax(1) == y).float().mean().item(), "loss": F.cross_entropy(logits, y).item()}


class NeuroDigitsPopulation(NeuroevolutionPopulation, BatchedTrainable):
    """Every NeuroDigits member as stacked weights, mutated together."""

    mutations = MUTATIONS

    def __init__(self, hparams: list[Hparams], seeds: list[int], device: str = "cpu") -> None:
        super().__init__(hparams, seeds, device)
        self.data = tuple(t.to(self.device) for t in load_split())
        self.population = StackedModules([build_mlp(g, HIDDEN) for g in self.generators], self.device)
        self.optimizer = Mutation(self.population.params, sigma=sigmas(hparams), seed=seeds[0])

    def evaluate(self) -> list[dict[str, float]]:
        """Validation accuracy and loss of every member."""
        return self.classification_metrics(self.data[2], self.data[3])


NeuroDigits.vectorized = NeuroDigitsPopulation
