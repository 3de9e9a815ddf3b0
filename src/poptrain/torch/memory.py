"""Fit before you start: a batched population's device memory, estimated from one and two members' first step.

Each of the two small populations is built and takes one training step (one minibatch, or one
update of an RL population); the difference between them is one member's share (weights,
optimiser state, gradients, activations of one batch), the rest is what every population shares
(the data, the environments' constants). On CUDA both are the peak bytes allocated; on the CPU,
where torch keeps no allocation statistics, they are the bytes of the state plus every byte the
step allocates (freed or not): an upper bound.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..errors import SpecError

log = logging.getLogger("poptrain")
GIB = 2**30


class _OneStep(Exception):
    """Raised by the wrapped step once it has run: the estimate needs one step, not an interval."""


class _Allocations(TorchDispatchMode):
    """Sums the bytes of every new CPU storage that an op returns (not views of its inputs, not in-place results)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):  # an output sharing an input's storage (a view, a split, an in-place op) is none
            if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.untyped_storage().data_ptr() not in inputs:
                inputs.add(t.untyped_storage().data_ptr())
                self.bytes += t.untyped_storage().nbytes()
        return out


def _state_bytes(state: Any) -> int:
    return sum(t.untyped_storage().nbytes() for t in tree_leaves(state) if isinstance(t, torch.Tensor))


def _one_step(population: Any) -> None:
    """`population.train()` cut after its first batched step (`_step` or `update`), or whole if it has neither."""
    for name in ("_step", "update"):
        inner = getattr(population, name, None)
        if callable(inner):
            def once(*args: Any, _inner: Any = inner, **kwargs: Any) -> None:
                _inner(*args, **kwargs)
                raise _OneStep

            setattr(population, name, once)
    try:
        population.train()
    except _OneStep:
        pass


def _footprint(batched: type, hparams: Sequence[Any], seeds: Sequence[int], device: torch.device) -> int:
    """Bytes that building a population and taking its first step needs on `device`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        population = batched(list(hparams), list(seeds), device=str(device))
        _one_step(population)
        peak = torch.cuda.max_memory_allocated(device) - base
        del population
        torch.cuda.empty_cache()
        return peak
    with _Allocations() as allocations:
        population = batched(list(hparams), list(seeds), device=str(device))
        state = _state_bytes(population.state_dict())
        allocations.bytes = 0  # the constructor's temporaries are gone; its state is counted above
        _one_step(population)
    return state + allocations.bytes


@dataclass
class MemoryEstimate:
    """A population's memory: `shared` bytes whatever its size, plus `per_member` bytes each."""

    shared: int
    per_member: int
    measured: bool  # True: peak bytes allocated (CUDA); False: an upper bound (every byte allocated)

    def total(self, members: int) -> int:
        return self.shared + members * self.per_member

    def largest(self, limit: int) -> int:
        """The largest population that fits in `limit` bytes."""
        return max(0, (limit - self.shared) // max(self.per_member, 1))


def estimate(batched: type, hparams: Sequence[Any], seeds: Sequence[int], device: str | torch.device = "cpu") -> MemoryEstimate:
    """Estimate the memory of `batched`'s populations on `device` from populations of 1 and 2 members' first step.

    They are built from the first member's hyperparameters and the first two seeds; the global RNG is left as it was.
    """
    device = torch.device(device)
    first, second = int(seeds[0]), int(seeds[1]) if len(seeds) > 1 else int(seeds[0]) + 1
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        one = _footprint(batched, [hparams[0]], [first], device)
        two = _footprint(batched, [hparams[0], hparams[0]], [first, second], device)
    per_member = max(two - one, 1)
    return MemoryEstimate(shared=max(one - per_member, 0), per_member=per_member, measured=device.type == "cuda")


def available(device: str | torch.device) -> int:
    """The bytes free on `device`: CUDA's free memory, or the host's available RAM for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(batched: type, hparams: Sequence[Any], seeds: Sequence[int], device: str | torch.device = "cpu",
               limit: int | None = None) -> MemoryEstimate | None:
    """Refuse (SpecError) a population whose estimate exceeds `limit` bytes (default: what `device` has free).

    The error names the largest population that fits. An estimate that raises is skipped with a
    warning (the run itself then reports the error) and gives None.
    """
    try:
        guess = estimate(batched, hparams, seeds, device)
    except Exception as exc:  # the user's code: the run reports it properly, charged to the members
        log.warning("could not estimate the population's memory (%s: %s); starting without the check",
                    type(exc).__name__, exc)
        return None
    limit = available(device) if limit is None else limit
    members = len(seeds)
    if guess.total(members) > limit:
        largest = guess.largest(limit)
        how = "measured" if guess.measured else "at most, an upper bound on the CPU"
        raise SpecError(
            f"engine vectorized: {members} members of {batched.__name__} need about {guess.total(members) / GIB:.2f} "
            f"GiB on {device} ({guess.per_member / 2**20:.2f} MiB per member, {how}), more than the "
            f"{limit / GIB:.2f} GiB available; the largest population that fits is {largest}: set population = "
            f"{largest} or fewer, a larger device, or the engine's memory_limit")
    return guess

