"""A small CNN on the 8x8 digits, tuned by PBT with Adam: the vectorized engine's second example.

`CNNDigits` is one member (usable on any engine); `CNNDigitsPopulation` is its batched twin, so
`engine = "vectorized"` trains every member as one model. Run it with
`poptrain run examples/cnn_digits.toml`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mlp_digits import BATCH_SIZE, load_split
from poptrain.records import Hparams
from poptrain.torch import TorchTrainable
from poptrain.torch.optim import BatchedAdam
from poptrain.torch.stacked import StackedModules
from poptrain.torch.vectorized import BatchedTrainable


def images(x: torch.Tensor) -> torch.Tensor:
    """Flat 64-pixel rows as 1x8x8 images."""
    return x.view(-1, 1, 8, 8)


def build_cnn(generator: torch.Generator) -> nn.Module:
    """conv 1→16 (3x3) → ReLU → 2x2 max pool → conv 16→32 (3x3) → ReLU → linear 32·4·4→10, drawn from `generator`."""
    # the layers' own initialisation is overwritten below; fork_rng keeps it off the global RNG
    with torch.random.fork_rng(devices=[]):
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
        )
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                bound = (layer.weight[0].numel()) ** -0.5  # PyTorch's default ranges: 1/sqrt(fan_in)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return model


class CNNDigits(TorchTrainable):
    """One member: the CNN trained by Adam whose lr and weight_decay PBT explores."""

    optimizer_hparams = ("lr", "weight_decay")

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.data = load_split()
        self.model = build_cnn(self.generator)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=hparams["lr"],
                                          weight_decay=hparams["weight_decay"])

    def train(self) -> None:
        """One epoch of minibatches in the member's own order."""
        x, y, _, _ = self.data
        for batch in torch.randperm(len(x), generator=self.generator).split(BATCH_SIZE):
            self.optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(images(x[batch])), y[batch]).backward()
            self.optimizer.step()

    def evaluate(self) -> dict[str, float]:
        _, _, x, y = self.data
        with torch.no_grad():
            logits = self.model(images(x))
        return {"accuracy": (logits.argmax(1) == y).float().mean().item(), "loss": F.cross_entropy(logits, y).item()}


class CNNDigitsPopulation(BatchedTrainable):
    """Every CNNDigits member as one batched model, with a batched Adam."""

    hparams = ("lr", "weight_decay")

    def __init__(self, hparams: list[Hparams], seeds: list[int], device: str = "cpu") -> None:
        super().__init__(hparams, seeds, device)
        x, y, xv, yv = load_split()
        self.data = (images(x).to(self.device), y.to(self.device), images(xv).to(self.device), yv.to(self.device))
        self.population = StackedModules([build_cnn(g) for g in self.generators], self.device)
        self.optimizer = BatchedAdam(self.population.params, lr=[h["lr"] for h in hparams],
                                     weight_decay=[h["weight_decay"] for h in hparams])

    def train(self) -> None:
        self.epoch(self.data[0], self.data[1], BATCH_SIZE)

    def evaluate(self) -> list[dict[str, float]]:
        return self.classification_metrics(self.data[2], self.data[3])


CNNDigits.vectorized = CNNDigitsPopulation
