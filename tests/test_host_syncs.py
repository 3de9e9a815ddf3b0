"""No host syncs inside an interval: the batched steps, environments and optimisers keep their numbers on the device.

Every way a tensor's value reaches Python (item, tolist, float, int, bool, numpy, nonzero, a
boolean mask of data-dependent size, ...) is patched to count while a population trains one
interval; scores leave the device once, in `evaluate()`, after it. With CUDA, the same intervals
run there under `torch.cuda.set_sync_debug_mode("error")` as well.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

from poptrain.torch.envs import BatchedAcrobot, BatchedCartPole, BatchedPendulum
from poptrain.torch.ppo import PPOPopulation
from poptrain.torch.rl import ActorCriticPopulation

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

from cnn_digits import CNNDigitsPopulation  # noqa: E402
from mlp_digits import MLPDigitsPopulation  # noqa: E402
from neuroevolution_digits import NeuroDigitsPopulation  # noqa: E402

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
READS = ["item", "tolist", "__float__", "__int__", "__index__", "__bool__", "numpy", "nonzero", "masked_select",
         "argwhere", "unique"]  # Tensor methods that hand a value (or a shape that depends on values) to the host
FUNCTIONS = ["nonzero", "masked_select", "argwhere", "unique", "is_nonzero"]  # the same as torch.* functions


def _is_mask(index: Any) -> bool:
    """Whether a tensor index holds a boolean mask (its result's size depends on the data)."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool and p.dim() > 0 for p in parts)


@contextlib.contextmanager
def counting_host_reads() -> Iterator[Counter]:
    """Count every patched read of a tensor's value by the host while the block runs."""
    counts: Counter = Counter()
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, counts_if: Callable[..., bool] = lambda *a, **k: True) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if counts_if(*args, **kwargs):
                counts[name] += 1
            return original(*args, **kwargs)

        saved.append((owner, name, original))
        setattr(owner, name, counted)

    for name in READS:
        patch(torch.Tensor, name)
    for name in FUNCTIONS:
        patch(torch, name)
    patch(torch, "where", lambda *args, **kwargs: len(args) + len(kwargs) == 1)  # where(mask) is nonzero
    patch(torch.Tensor, "__getitem__", lambda self, index: _is_mask(index))
    patch(torch.Tensor, "__setitem__", lambda self, index, value: _is_mask(index))
    try:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        yield counts
    finally:
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def test_the_counter_sees_each_kind_of_read() -> None:
    """The patches catch what they should (else the tests below would pass on code that syncs)."""
    t = torch.arange(4.0)
    with counting_host_reads() as counts:
        t[0].item(), t.tolist(), float(t[1]), bool(t[2] > 1), t.nonzero(), torch.nonzero(t), t[t > 1]
        t[t > 2] = 0.0
        torch.where(t > 0)
        torch.where(t > 0, t, -t)  # the three-argument form stays on the device
        t[torch.tensor([0, 2])]
    assert counts == {"item": 1, "tolist": 1, "__float__": 1, "__bool__": 1, "nonzero": 2, "__getitem__": 1,
                      "__setitem__": 1, "where": 1}


HP = [{"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}, {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.0},
      {"lr": 0.2, "momentum": 0.0, "weight_decay": 1e-3}]


def exploit_between_intervals(population: Any, intervals: int, hparams: dict[str, float]) -> Counter:
    """Train `intervals` intervals, with evaluate, an exploit and new hyperparameters between them; reads inside."""
    total: Counter = Counter()
    for interval in range(intervals):
        with counting_host_reads() as counts:
            population.train()
        total += counts
        population.evaluate()  # the scores leave the device here, once per interval
        population.copy_members([interval % population.size], [(interval + 1) % population.size])
        population.set_hparams(interval % population.size, hparams)
    return total


@pytest.mark.parametrize("device", DEVICES)
def test_the_supervised_batched_step_reads_nothing_back_within_an_interval(device: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import mlp_digits

    monkeypatch.setattr(mlp_digits, "BATCH_SIZE", 256)  # a few batched steps per epoch, quickly
    population = MLPDigitsPopulation(HP, [0, 1, 2], device=device)
    # momentum moves to 0 and back: the SGD step's fast path is re-chosen after set_hparams, from the host's copy
    assert exploit_between_intervals(population, 3, {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0}) == {}
    assert exploit_between_intervals(population, 2, {"lr": 0.01, "momentum": 0.8, "weight_decay": 1e-4}) == {}


def test_the_batched_adam_step_reads_nothing_back_within_an_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    import cnn_digits

    monkeypatch.setattr(cnn_digits, "BATCH_SIZE", 512)
    population = CNNDigitsPopulation([{"lr": 1e-3, "weight_decay": 0.0}, {"lr": 3e-3, "weight_decay": 1e-4}], [0, 1])
    assert exploit_between_intervals(population, 2, {"lr": 1e-2, "weight_decay": 1e-3}) == {}


@pytest.mark.parametrize("device", DEVICES)
def test_the_mutation_step_reads_nothing_back_within_an_interval(device: str) -> None:
    population = NeuroDigitsPopulation([{"sigma": 0.01}, {"sigma": 0.1}], [0, 1], device=device)
    assert exploit_between_intervals(population, 2, {"sigma": 0.05}) == {}


class ShortCartPole(ActorCriticPopulation):
    env = BatchedCartPole
    num_envs, rollout, interval_steps, window, hidden = 4, 4, 64, 8, 16


class ShortAcrobot(ShortCartPole):
    env = BatchedAcrobot


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls", [ShortCartPole, ShortAcrobot])
def test_the_batched_rl_interval_reads_nothing_back(cls: type[ActorCriticPopulation], device: str) -> None:
    hparams = [{"lr": 3e-3, "ent_coef": 0.01, "gae_lambda": 0.95}, {"lr": 1e-3, "ent_coef": 0.1, "gae_lambda": 0.8}]
    population = cls(hparams, [1, 2], device=device)
    population.envs.elapsed.fill_(cls.env.max_steps - 10)  # episodes are cut by the time limit inside the interval
    assert exploit_between_intervals(population, 3, {"lr": 1e-2, "ent_coef": 0.0, "gae_lambda": 0.9}) == {}
    assert population.finished.min() > 0


class ShortPPOCartPole(PPOPopulation):
    env = BatchedCartPole
    num_envs, rollout, interval_steps, window, hidden, epochs, minibatches, clip_value = 4, 4, 64, 8, 16, 2, 2, True


class ShortPPOPendulum(ShortPPOCartPole):
    env = BatchedPendulum


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls", [ShortPPOCartPole, ShortPPOPendulum])
def test_the_batched_ppo_interval_reads_nothing_back(cls: type[PPOPopulation], device: str) -> None:
    """Minibatches shuffled per member by sorting random keys, gathered by index: no mask, no read."""
    hparams = [{"lr": 3e-3, "ent_coef": 0.01, "gae_lambda": 0.95, "clip_range": 0.2},
               {"lr": 1e-3, "ent_coef": 0.1, "gae_lambda": 0.8, "clip_range": 0.1}]
    population = cls(hparams, [1, 2], device=device)
    population.envs.elapsed.fill_(cls.env.max_steps - 10)
    assert exploit_between_intervals(population, 3, {"lr": 1e-2, "ent_coef": 0.0, "gae_lambda": 0.9,
                                                     "clip_range": 0.3}) == {}
    assert population.finished.min() > 0
