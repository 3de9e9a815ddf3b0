"""PyTorch helpers: apply explored hyperparameters to an optimiser after its state is loaded.

The trap this module exists for (Ray Tune issues #62173 and #28509): `optimizer.load_state_dict`
restores the *source's* param groups, learning rate included, so hyperparameters written before
loading are silently lost. Everything here loads first and applies the new values second.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from ..population import Hparams
from ..trainable import Trainable

# Optimiser fields poptrain writes from hyperparameters of the same name; `betas` is set
# through the hyperparameters `beta1` and `beta2`.
OPTIMIZER_HPARAMS: tuple[str, ...] = (
    "lr",
    "momentum",
    "weight_decay",
    "dampening",
    "eps",
    "betas",
    "alpha",
)
_BETAS = {"beta1": 0, "beta2": 1}


def _field(name: str) -> str:
    """The param-group key that hyperparameter `name` writes."""
    return "betas" if name in _BETAS else name


def _known(name: str) -> bool:
    """Whether poptrain writes `name` to the optimiser when no explicit names are given."""
    return name in _BETAS or (name in OPTIMIZER_HPARAMS and name != "betas")


def _plain(value: Any) -> Any:
    """A numpy or tensor scalar as a Python number, so param groups hold plain values."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value


def _write(group: dict[str, Any], name: str, value: Any) -> None:
    """Write one hyperparameter into one param group (tensor fields are filled in place)."""
    if name in _BETAS:
        betas = list(group["betas"])
        betas[_BETAS[name]] = value
        group["betas"] = tuple(betas)
    elif isinstance(group[name], torch.Tensor):
        # A tensor lr (capturable/fused optimisers) must stay a tensor on its device.
        group[name].fill_(value)
    else:
        group[name] = value


def _read(group: dict[str, Any], name: str) -> Any:
    """Read one hyperparameter back from one param group."""
    value = group["betas"][_BETAS[name]] if name in _BETAS else group[name]
    return _plain(value)


def _same(held: Any, wanted: Any) -> bool:
    """Whether a read-back value equals the written one (float32 tensor fields round slightly)."""
    if isinstance(held, float) and isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return math.isclose(held, wanted, rel_tol=1e-6)
    return held == wanted


def apply_hparams(
    optimizer: torch.optim.Optimizer, hparams: Hparams, names: Iterable[str] | None = None
) -> dict[str, Any]:
    """Write the optimiser's hyperparameters into every param group and verify they hold.

    Without `names`, every hyperparameter named in OPTIMIZER_HPARAMS (or beta1/beta2) that the
    optimiser has is written, and the rest are left to the model. With `names`, exactly those
    are written and each must exist in the optimiser (ValueError otherwise), so a typo or a
    field the optimiser lacks (momentum for Adam) is caught instead of silently ignored.
    Returns the hyperparameters applied.
    """
    groups = optimizer.param_groups
    kind = type(optimizer).__name__
    if names is None:
        chosen = [n for n in hparams if _known(n) and all(_field(n) in g for g in groups)]
    else:
        chosen = list(names)
        for name in chosen:
            if name not in hparams:
                raise ValueError(f"hyperparameter {name!r} is listed in names but missing from hparams")
            if name == "params" or not groups or any(_field(name) not in g for g in groups):
                raise ValueError(f"optimiser {kind} has no field {_field(name)!r} for hyperparameter {name!r}")
    applied = {name: _plain(hparams[name]) for name in chosen}
    for group in groups:
        for name, value in applied.items():
            _write(group, name, value)
    for i, group in enumerate(optimizer.param_groups):
        for name, value in applied.items():
            if not _same(_read(group, name), value):
                raise RuntimeError(
                    f"optimiser {kind} param group {i} holds {_field(name)}={_read(group, name)!r} "
                    f"after writing {name}={value!r}"
                )
    return applied


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
) -> dict[str, Any]:
    """Restore a `save_state` snapshot, then apply `hparams` so they win; returns the extra values."""
    model.load_state_dict(state["model"])
    _load_optimizer(optimizer, state["optimizer"])
    if hparams is not None:
        apply_hparams(optimizer, hparams, names)
    return _detached_copy(state.get("extra", {}))


class TorchTrainable(Trainable):
    """A Trainable for a PyTorch model and optimiser: state copying and hyperparameter application done right.

    Subclasses build `self.model` and `self.optimizer` in `__init__` (after calling this one)
    and write `train()` and `evaluate()`. Draw data order and initial weights from
    `self.generator`, so members are reproducible from their seed. Set `optimizer_hparams` to
    the names the optimiser must have, to turn a misspelt or unsupported one into an error.
    """

    optimizer_hparams: tuple[str, ...] | None = None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def __init__(self, hparams: Hparams, seed: int) -> None:
        super().__init__(hparams, seed)
        self.generator = torch.Generator().manual_seed(seed)

    def extra_state(self) -> Any:
        """Anything else to checkpoint (e.g. a scheduler's state); override with load_extra_state."""
        return {}

    def load_extra_state(self, extra: Any) -> None:
        """Restore what `extra_state` returned."""

    def set_hparams(self, hparams: Hparams) -> None:
        """Store the hyperparameters and write the optimiser's ones into every param group."""
        apply_hparams(self.optimizer, hparams, self.optimizer_hparams)
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
