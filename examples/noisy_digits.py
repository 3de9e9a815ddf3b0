"""The demo job: mlp_digits' MLP and SGD on the digits with half the training labels wrong.

Half of the 1,347 training labels are replaced by another class (drawn once, the same for every
member); the 450 validation labels stay true. A large learning rate learns the true classes and
does not fit the wrong labels, but its last epochs bounce; a small one fits the wrong labels
too. A learning rate that falls over the run gets both, so no constant matches it: the case
where PBT's schedule beats random search. PBT explores SGD's lr only (no momentum, no weight
decay). Run it with `poptrain run examples/noisy_digits.toml --baseline`.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from mlp_digits import MLPDigits, MLPDigitsPopulation, load_split

NOISE = 0.5  # the fraction of training labels replaced by a wrong class
NOISE_SEED = 0


@lru_cache(maxsize=1)
def load_noisy_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mlp_digits' split with a NOISE fraction of training labels moved to another class, at random."""
    x, y, x_val, y_val = load_split()
    generator = torch.Generator().manual_seed(NOISE_SEED)
    wrong = torch.rand(len(y), generator=generator) < NOISE
    shift = torch.randint(1, 10, (len(y),), generator=generator)  # 1..9: never the true class
    return x, torch.where(wrong, (y + shift) % 10, y), x_val, y_val


class NoisyDigits(MLPDigits):
    """One member: the 64-128-10 MLP trained by plain SGD on the noisy labels; PBT explores lr."""

    optimizer_hparams = ("lr",)
    split = staticmethod(load_noisy_split)


class NoisyDigitsPopulation(MLPDigitsPopulation):
    """Every NoisyDigits member as one batched model (the vectorized engine)."""

    hparams = ("lr",)
    split = staticmethod(load_noisy_split)


NoisyDigits.vectorized = NoisyDigitsPopulation
