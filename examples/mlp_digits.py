"""The main demo: PBT tunes SGD's lr, momentum and weight decay for an MLP on the 8x8 digits.

The data is scikit-learn's bundled digits (nothing is downloaded). Every member uses the same
stratified 75/25 train/validation split; one `train()` is one epoch (a few milliseconds
per epoch on one CPU thread), so a population of 8 trains in seconds.
Run it with `poptrain run examples/mlp_digits.toml`.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from poptrain.records import Hparams
from poptrain.torch import TorchTrainable
from poptrain.torch.optim import BatchedSGD
from poptrain.torch.stacked import StackedModules
from poptrain.torch.vectorized import BatchedTrainable

HIDDEN = 128
BATCH_SIZE = 32


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1,797 images of 64 pixels in 0..16, and their labels).

    Read from scikit-learn's data file without importing scikit-learn, whose import (mostly
    scipy) takes about 1.6 s in every worker process.
    """
    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else ""
    if not os.path.exists(path):  # another layout: let scikit-learn find its file
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


@lru_cache(maxsize=1)
def load_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits scaled to [0, 1], split once per process: (x_train, y_train, x_val, y_val).

    The split is scikit-learn's stratified 75/25 `train_test_split(..., random_state=0)`, saved
    as indices in `digits_split.txt` (a test checks it against scikit-learn).
    """
    x, y = read_digits()
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_split.txt")) as f:
        train, val = (np.array(line.split(), dtype=np.int64) for line in f if not line.startswith("#"))
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    return x[train], y[train], x[val], y[val]


def build_mlp(generator: torch.Generator, hidden: int = HIDDEN) -> nn.Module:
    """A 64→hidden→10 ReLU MLP initialised from `generator` (PyTorch's default Linear ranges)."""
    # the layers' own initialisation is overwritten below; fork_rng keeps it off the global RNG
    # (cheaper at start-up than nn.utils.skip_init, whose meta tensors import sympy)
    with torch.random.fork_rng(devices=[]):
        model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    return initialised(model, generator)


def initialised(model: nn.Sequential, generator: torch.Generator) -> nn.Sequential:
    """`model` with every Linear drawn from `generator` (PyTorch's default ranges)."""
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                bound = layer.in_features**-0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return model


class MLPDigits(TorchTrainable):
    """One member: an MLP trained by SGD whose lr, momentum and weight_decay PBT explores."""

    optimizer_hparams = ("lr", "momentum", "weight_decay")  # SGD's; one left out stays at SGD's default (0)
    split = staticmethod(load_split)  # the data: (x_train, y_train, x_val, y_val)

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.data = self.split()
        self.model = build_mlp(self.generator)
        self.optimizer = torch.optim.SGD(self.model.parameters(), **{n: hparams[n] for n in self.optimizer_hparams})

    def train(self) -> None:
        """One epoch of minibatches in an order drawn from the member's generator."""
        x, y, _, _ = self.data
        self.model.train()
        order = torch.randperm(len(x), generator=self.generator)
        for batch in order.split(BATCH_SIZE):
            self.optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(x[batch]), y[batch]).backward()
            self.optimizer.step()

    def evaluate(self) -> dict[str, float]:
        """Validation accuracy (the metric) and loss (NaN once a member has diverged)."""
        _, _, x, y = self.data
        self.model.eval()
        with torch.no_grad():
            logits = self.model(x)
            loss = F.cross_entropy(logits, y).item()
            accuracy = (logits.argmax(dim=1) == y).float().mean().item()
        return {"accuracy": accuracy, "loss": loss}


class MLPDigitsPopulation(BatchedTrainable):
    """Every MLPDigits member as one batched model: the same init, data order and SGD per member."""

    hparams = ("lr", "momentum", "weight_decay")
    split = staticmethod(load_split)

    def __init__(self, hparams: list[Hparams], seeds: list[int], device: str = "cpu") -> None:
        super().__init__(hparams, seeds, device)
        self.data = tuple(t.to(self.device) for t in self.split())
        self.population = StackedModules([build_mlp(g) for g in self.generators], self.device)
        self.optimizer = BatchedSGD(self.population.params, **{n: [h[n] for h in hparams] for n in self.hparams})

    def train(self) -> None:
        """One epoch for every member, each in the order its own generator draws."""
        self.epoch(self.data[0], self.data[1], BATCH_SIZE)

    def evaluate(self) -> list[dict[str, float]]:
        """Validation accuracy and loss of every member."""
        return self.classification_metrics(self.data[2], self.data[3])


MLPDigits.vectorized = MLPDigitsPopulation
