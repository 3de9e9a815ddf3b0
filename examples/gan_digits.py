"""The paper's GAN domain in miniature: PBT tunes the generator's and discriminator's Adam learning rates.

A 16-128-64 generator and a 64-128-1 discriminator (MLPs) learn scikit-learn's bundled 8x8
digits (nothing is downloaded); each has its own Adam, and the two learning rates are the pair
the paper tunes. One `train()` is one epoch of the training split (21 minibatches of 64, about
40 ms on one CPU thread). The score is the Inception score of 500 samples drawn from a fixed
noise batch, under a digits classifier (`digits_inception`): 1 for a collapsed generator, about
9.4 for the real validation digits. Exploit is a binary tournament, as in the paper's GANs.
Run it with `poptrain run examples/gan_digits.toml` (`--engine vectorized` trains every member
in one batched model).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from digits_inception import inception_score
from mlp_digits import initialised, load_split
from poptrain.records import Hparams
from poptrain.torch import TorchTrainable, apply_hparams
from poptrain.torch.optim import BatchedAdam
from poptrain.torch.stacked import StackedModules
from poptrain.torch.vectorized import BatchedTrainable

NOISE = 16
HIDDEN = 128
BATCH_SIZE = 64
SAMPLES = 500  # images scored per evaluation
EVAL_SEED = 2017  # the fixed noise every member's samples are drawn from, so scores compare generators only
BETAS = (0.5, 0.999)  # the usual GAN momentum; the learning rates are what PBT explores


def build_pair(generator: torch.Generator) -> tuple[nn.Sequential, nn.Sequential]:
    """A generator (noise to pixels in [-1, 1]) and a discriminator (pixels to one logit), drawn from `generator`."""
    with torch.random.fork_rng(devices=[]):  # the layers' own init is overwritten: keep it off the global RNG
        g = nn.Sequential(nn.Linear(NOISE, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 64), nn.Tanh())
        d = nn.Sequential(nn.Linear(64, HIDDEN), nn.LeakyReLU(0.2), nn.Linear(HIDDEN, 1))
    return initialised(g, generator), initialised(d, generator)


def real_images() -> torch.Tensor:
    """The training split's digits as pixels in [-1, 1] (the generator's tanh range)."""
    return load_split()[0] * 2 - 1


def eval_noise() -> torch.Tensor:
    """The fixed noise batch every evaluation draws its samples from."""
    return torch.randn(SAMPLES, NOISE, generator=torch.Generator().manual_seed(EVAL_SEED))


def score(samples: torch.Tensor) -> dict[str, float]:
    """The Inception score of generated samples (pixels in [-1, 1])."""
    return {"inception_score": inception_score((samples.clamp(-1, 1) + 1) / 2)}


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss: real digits are 1, samples 0 (a mean over the last axis)."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits), reduction="none")
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits), reduction="none")
            ).flatten(-2).mean(-1)


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's non-saturating loss: its samples should be called real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits),
                                              reduction="none").flatten(-2).mean(-1)


class DigitsGAN(TorchTrainable):
    """One member: a generator and a discriminator, each with its own Adam (lr_g, lr_d)."""

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.data = real_images()
        g, d = build_pair(self.generator)
        self.model = nn.ModuleDict({"g": g, "d": d})
        self.g_optimizer = torch.optim.Adam(g.parameters(), lr=hparams["lr_g"], betas=BETAS)
        self.optimizer = torch.optim.Adam(d.parameters(), lr=hparams["lr_d"], betas=BETAS)

    def train(self) -> None:
        """One epoch: per minibatch, a discriminator step on real and generated digits, then a generator step."""
        g, d = self.model["g"], self.model["d"]
        order = torch.randperm(len(self.data), generator=self.generator)
        for batch in order.split(BATCH_SIZE):
            real = self.data[batch]
            z = torch.randn(len(batch), NOISE, generator=self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            fake = g(z).detach()
            d_loss(d(real), d(fake)).backward()
            self.optimizer.step()
            self.g_optimizer.zero_grad(set_to_none=True)
            g_loss(d(g(z))).backward()
            self.g_optimizer.step()

    def evaluate(self) -> dict[str, float]:
        """The Inception score of the samples the generator draws from the fixed noise."""
        with torch.no_grad():
            return score(self.model["g"](eval_noise()))

    def set_hparams(self, hparams: Hparams) -> None:
        """Write lr_g into the generator's Adam and lr_d into the discriminator's."""
        apply_hparams(self.g_optimizer, {"lr": hparams["lr_g"]}, ["lr"])
        apply_hparams(self.optimizer, {"lr": hparams["lr_d"]}, ["lr"])
        self.hparams = dict(hparams)

    def extra_state(self) -> Any:
        """The generator's optimiser (the discriminator's is `self.optimizer`, saved by TorchTrainable)."""
        return {"g_optimizer": self.g_optimizer.state_dict()}

    def load_extra_state(self, extra: Any) -> None:
        self.g_optimizer.load_state_dict(extra["g_optimizer"])  # already a private copy: nothing aliases it


def stacked_forward(population: StackedModules, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Every member's MLP applied to its own inputs (x [P, B, in]) as batched matrix products."""
    assert population.layers is not None  # an nn.Sequential of Linear layers and activations
    for layer in population.layers:
        if isinstance(layer, str):
            x = torch.baddbmm(params[layer + "bias"].unsqueeze(1), x, params[layer + "weight"].transpose(1, 2))
        else:
            x = layer(x)
    return x


class DigitsGANPopulation(BatchedTrainable):
    """Every DigitsGAN member at once: two stacked networks, two batched Adams, the same steps per member."""

    hparams = ("lr_g", "lr_d")

    def __init__(self, hparams: list[Hparams], seeds: list[int], device: str = "cpu") -> None:
        super().__init__(hparams, seeds, device)
        self.data = real_images().to(self.device)
        pairs = [build_pair(g) for g in self.generators]
        self.g = StackedModules([p[0] for p in pairs], self.device)
        self.population = self.d = StackedModules([p[1] for p in pairs], self.device)
        self.g_optimizer = BatchedAdam(self.g.params, lr=[h["lr_g"] for h in hparams], beta1=BETAS[0], beta2=BETAS[1])
        self.optimizer = BatchedAdam(self.d.params, lr=[h["lr_d"] for h in hparams], beta1=BETAS[0], beta2=BETAS[1])

    def _noise(self, size: int) -> torch.Tensor:
        return torch.stack([torch.randn(size, NOISE, generator=g) for g in self.generators]).to(self.device)

    def train(self) -> None:
        """One epoch for every member, each in its own data order and with its own noise."""
        orders = torch.stack([torch.randperm(len(self.data), generator=g) for g in self.generators]).to(self.device)
        for batch in orders.split(BATCH_SIZE, dim=1):
            real, z = self.data[batch], self._noise(batch.shape[1])
            with torch.no_grad():
                fake = stacked_forward(self.g, self.g.params, z)
            d_params = {k: v.detach().requires_grad_(True) for k, v in self.d.params.items()}
            loss = d_loss(stacked_forward(self.d, d_params, real), stacked_forward(self.d, d_params, fake)).sum()
            # member i's parameters reach only loss i, so the gradient of the sum is each member's own
            self.optimizer.step(dict(zip(d_params, torch.autograd.grad(loss, list(d_params.values())))))
            g_params = {k: v.detach().requires_grad_(True) for k, v in self.g.params.items()}
            loss = g_loss(stacked_forward(self.d, self.d.params, stacked_forward(self.g, g_params, z))).sum()
            self.g_optimizer.step(dict(zip(g_params, torch.autograd.grad(loss, list(g_params.values())))))

    def evaluate(self) -> list[dict[str, float]]:
        """Every member's Inception score on the same fixed noise."""
        z = eval_noise().to(self.device)
        with torch.no_grad():
            samples = stacked_forward(self.g, self.g.params, z.expand(self.size, *z.shape)).cpu()
        return [score(s) for s in samples]

    def set_hparams(self, member: int, hparams: Hparams) -> None:
        """Write a member's two learning rates into the two batched optimisers."""
        unknown = sorted(set(hparams) - set(self.hparams))
        if unknown:
            raise ValueError(f"{type(self).__name__} cannot vary {', '.join(map(repr, unknown))} per member")
        self.g_optimizer.set_hparams(member, {"lr": hparams["lr_g"]})
        self.optimizer.set_hparams(member, {"lr": hparams["lr_d"]})

    def export_members(self, srcs: list[int]) -> dict[str, Any]:
        """What an exploit copies: discriminator, its Adam and the data order (BatchedTrainable), then the generator
        and its Adam; here or, with shards, from another shard."""
        return {**super().export_members(srcs), "g_model": self.g.export_members(list(srcs)),
                "g_optimizer": self.g_optimizer.export_members(srcs)}

    def import_members(self, dsts: list[int], exported: dict[str, Any]) -> None:
        super().import_members(dsts, exported)
        self.g.import_members(list(dsts), exported["g_model"])
        self.g_optimizer.import_members(dsts, exported["g_optimizer"])

    def state_dict(self) -> dict[str, Any]:
        g = self.g.state_dict()
        return {**super().state_dict(), "g_model": {**g["params"], **g["buffers"]},
                "g_optimizer": self.g_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.g.load_state_dict({"params": {k: state["g_model"][k] for k in self.g.params},
                                "buffers": {k: state["g_model"][k] for k in self.g.buffers}})
        self.g_optimizer.load_state_dict(state["g_optimizer"])


DigitsGAN.vectorized = DigitsGANPopulation
