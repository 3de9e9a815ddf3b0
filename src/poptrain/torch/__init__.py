"""PyTorch helpers: apply explored hyperparameters to an optimiser after its state is loaded.

The trap this module exists for (Ray Tune issues #62173 and #28509): `optimizer.load_state_dict`
restores the *source's* param groups, learning rate included, so hyperparameters written before
loading are silently lost. Everything here loads first and applies the new values second.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from ..records import Hparams
from ..trainable import Trainable
from .param_groups import OPTIMIZER_HPARAMS, apply_hparams  # noqa: F401 (public here, as before)


def _detached_copy(obj: Any) -> Any:
    """A copy of a (nested) state in which every tensor is a fresh CPU clone."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _detached_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_detached_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_detached_copy(v) for v in obj)
    return obj


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load an optimiser state without aliasing it.

    Optimizer.load_state_dict keeps tensors that already match the parameter's device and dtype
    as they are, so the live momentum buffers would be the saved ones and training would change
    the checkpoint (and every other member restored from it). Loading a copy prevents that.
    """
    optimizer.load_state_dict(_detached_copy(state))


def save_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, **extra: Any) -> dict[str, Any]:
    """Snapshot model and optimiser (and any extra values) as CPU copies independent of the live objects."""
    return {
        "model": _detached_copy(model.state_dict()),
        "optimizer": _detached_copy(optimizer.state_dict()),
        "extra": _detached_copy(extra),
    }


def load_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    hparams: Hparams | None = None,
    names: Iterable[str] | None = None,
    schedulers: Iterable[Any] = (),
) -> dict[str, Any]:
    """Restore a `save_state` snapshot, then apply `hparams` (as `apply_hparams` does) so they win; returns the extras."""
    model.load_state_dict(state["model"])
    _load_optimizer(optimizer, state["optimizer"])
    if hparams is not None:
        apply_hparams(optimizer, hparams, names, schedulers)
    return _detached_copy(state.get("extra", {}))


class TorchTrainable(Trainable):
    """A Trainable for a PyTorch model and optimiser: state copying and hyperparameter application done right.

    Subclasses build `self.model` and `self.optimizer` in `__init__` (after calling this one)
    and write `train()` and `evaluate()`. Draw data order and initial weights from
    `self.generator`, so members are reproducible from their seed. Set `optimizer_hparams` to
    the names the optimiser must have, to turn a misspelt or unsupported one into an error.
    Hyperparameters are written by `apply_hparams`'s rules, the same as the Lightning and Hugging
    Face callbacks: a subclass that steps a learning-rate scheduler assigns it to `self.scheduler`,
    and a new `lr` then keeps the schedule's present factor and moves its base rates (without a
    scheduler the factor is 1: `lr` is written as it is); `weight_decay` leaves groups kept out
    of decay (biases, norms) at 0. The scheduler's own state belongs in `extra_state`.
    """

    optimizer_hparams: tuple[str, ...] | None = None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None  # the learning-rate scheduler driving self.optimizer, if any

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.generator = torch.Generator().manual_seed(seed)

    def extra_state(self) -> Any:
        """Anything else to checkpoint (e.g. a scheduler's state); override with load_extra_state."""
        return {}

    def load_extra_state(self, extra: Any) -> None:
        """Restore what `extra_state` returned."""

    def set_hparams(self, hparams: Hparams) -> None:
        """Store the hyperparameters and write the optimiser's ones into its param groups (see `apply_hparams`)."""
        apply_hparams(self.optimizer, hparams, self.optimizer_hparams, () if self.scheduler is None else [self.scheduler])
        super().set_hparams(hparams)

    def state_dict(self) -> dict[str, Any]:
        """Model, optimiser, generator and extra state, as CPU copies independent of the live member."""
        return {
            "model": _detached_copy(self.model.state_dict()),
            "optimizer": _detached_copy(self.optimizer.state_dict()),
            "rng": self.generator.get_state().clone(),
            "extra": _detached_copy(self.extra_state()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; the optimiser then holds the source's values until `set_hparams`."""
        self.model.load_state_dict(state["model"])
        _load_optimizer(self.optimizer, state["optimizer"])
        self.generator.set_state(state["rng"].clone())
        self.load_extra_state(_detached_copy(state.get("extra", {})))
