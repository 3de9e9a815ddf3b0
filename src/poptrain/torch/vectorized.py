"""The population-level trainable the vectorized engine drives: every member in one object.

A class implementing it trains all members in one call; `BatchedTrainable` implements the
bookkeeping for a `StackedModules` and a batched optimiser, so a subclass writes only `train()` and
`evaluate()`. A per-member trainable names its batched counterpart with `vectorized = Class`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.nn import functional as F

from ..records import Hparams
from .compiled import Compiler
from .optim import BatchedOptimizer
from .stacked import StackedModules, member_cross_entropy


def upload(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` (on the host) on `device`; to a GPU through pinned memory, asynchronously, so the host does not wait."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)  # the pinned buffer lives until the copy is done
    return t.to(device)


class BatchedTrainable:
    """Members stacked in `self.population`, stepped by `self.optimizer`, shuffled by `self.generators`.

    `hparams` lists the hyperparameters it can vary per member (the vectorized engine refuses a
    space with others: those change shapes or code paths and need the local engine).
    """

    hparams: tuple[str, ...] = ()
    population: StackedModules
    optimizer: BatchedOptimizer
    generators: list[torch.Generator]

    def __init__(self, hparams: Sequence[Hparams], seeds: Sequence[int], device: str = "cpu") -> None:
        self.size, self.device = len(seeds), torch.device(device)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self._step: Callable[..., None] = self.train_step
        self._forward: Callable[[torch.Tensor], torch.Tensor] = lambda x: self.population.forward(x)

    def compile(self, mode: str | None = None, backend: str | None = None) -> None:
        """Run `train_step` and the evaluation forward pass under torch.compile (eager again if that fails).

        `mode` and `backend` are torch.compile's (e.g. mode="reduce-overhead" for CUDA graphs).
        """
        self.compiler = Compiler(mode, backend)  # compiler.failed tells whether it fell back to eager
        self._step = self.compiler(self.train_step, "batched training step")
        self._forward = self.compiler(self.population.forward, "batched forward pass")

    def train(self) -> None:
        raise NotImplementedError

    def evaluate(self) -> list[float | dict[str, float]]:
        raise NotImplementedError

    def epoch(self, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> None:
        """One epoch of minibatches for every member, each in the order its own generator draws."""
        orders = upload(torch.stack([torch.randperm(len(x), generator=g) for g in self.generators]), self.device)
        for batch in orders.split(batch_size, dim=1):
            self._step(x[batch], y[batch], loss_fn)

    def train_step(self, x: torch.Tensor, y: torch.Tensor,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> None:
        """One minibatch for every member (x [P, B, ...]): gradients, then the optimiser's update."""
        grads, _ = self.population.gradients(loss_fn, x, y)
        self.optimizer.step(grads)

    def classification_metrics(self, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, float]]:
        """Every member's accuracy and mean cross-entropy on (x, y)."""
        with torch.no_grad():
            logits = self._forward(x.expand(self.size, *x.shape))
            loss = member_cross_entropy(logits, y.expand(self.size, -1))
            accuracy = (logits.argmax(dim=2) == y).float().mean(1)
        return [{"accuracy": a, "loss": v} for a, v in zip(accuracy.tolist(), loss.tolist())]

    def set_hparams(self, member: int, hparams: Hparams) -> None:
        """Write a member's new hyperparameters into the per-member tensors."""
        unknown = sorted(set(hparams) - set(self.hparams))
        if unknown:
            raise ValueError(f"{type(self).__name__} cannot vary {', '.join(map(repr, unknown))} per member")
        self.optimizer.set_hparams(member, hparams)

    def copy_members(self, dsts: Sequence[int], srcs: Sequence[int]) -> None:
        """Exploit for several members at once: each `dsts[i]` takes what `srcs[i]` had before any copy."""
        self.import_members(dsts, self.export_members(srcs))

    def export_members(self, srcs: Sequence[int]) -> dict[str, Any]:
        """What an exploit copies from `srcs` (weights, optimiser state, data order), gathered: the sharded engine
        sends it to the shard holding the copies. A subclass with more per-member state adds it here and in
        `import_members`."""
        srcs = list(srcs)
        return {"model": self.population.export_members(srcs), "optimizer": self.optimizer.export_members(srcs),
                "rng": [self.generators[s].get_state() for s in srcs]}

    def import_members(self, dsts: Sequence[int], exported: dict[str, Any]) -> None:
        """Make `dsts` copies of the members `export_members` gathered (here or in another shard), in order."""
        dsts = list(dsts)
        self.population.import_members(dsts, exported["model"])
        self.optimizer.import_members(dsts, exported["optimizer"])
        for d, state in zip(dsts, exported["rng"]):
            self.generators[d].set_state(state)

    def state_dict(self) -> dict[str, Any]:
        """The whole population: stacked tensors with the member axis first, one generator each."""
        model = self.population.state_dict()
        return {"size": self.size, "model": {**model["params"], **model["buffers"]},
                "optimizer": self.optimizer.state_dict(), "rng": [g.get_state() for g in self.generators]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.population.load_state_dict({"params": {k: state["model"][k] for k in self.population.params},
                                         "buffers": {k: state["model"][k] for k in self.population.buffers}})
        self.optimizer.load_state_dict(state["optimizer"])
        for g, rng in zip(self.generators, state["rng"]):
            g.set_state(rng)
