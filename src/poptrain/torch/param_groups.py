"""The one optimiser writer: hyperparameters into an optimiser's param groups, verified.

`TorchTrainable`, `load_state` and the Lightning and Hugging Face callbacks all write through
`apply_hparams`, so the same hyperparameters do the same thing wherever a member trains:

- a hyperparameter is written when every param group has its field (`beta1` and `beta2` write
  `betas`); explicit `names` must all exist, or nothing is written and one error says which;
- a new `lr` keeps a learning-rate scheduler's present factor: the group's rate becomes
  `lr × (rate / initial_lr)`, and `initial_lr` and the schedulers' `base_lrs` become `lr`, so
  the schedule continues from the new base. Without a scheduler there is no `initial_lr`, the
  factor is 1 and `lr` is written as it is;
- `weight_decay` skips groups kept out of decay (weight decay 0 and no matrix, such as biases
  and norms, where another group holds the matrices);
- tensor fields (capturable or fused optimisers) are filled in place, so they stay on their device;
- every value is read back after writing, and one that did not hold is an error.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import torch

# The fields a space usually names; any field every param group has is written (see above).
OPTIMIZER_HPARAMS: tuple[str, ...] = ("lr", "momentum", "weight_decay", "dampening", "eps", "betas", "alpha")
_BETAS = {"beta1": 0, "beta2": 1}
_NOT_HPARAMS = ("params", "initial_lr")  # the group's parameters, and the scheduler's record of the base rate


def _field(name: str) -> str:
    """The param-group key that hyperparameter `name` writes."""
    return "betas" if name in _BETAS else name


def _plain(value: Any) -> Any:
    """A numpy or tensor scalar as a Python number, so param groups hold plain values."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value


def _chosen(groups: list[dict[str, Any]], hparams: Mapping[str, Any], names: Iterable[str] | None,
            kind: str) -> list[str]:
    """The hyperparameters to write: those every group has a field for, or exactly `names` (checked)."""
    if names is None:
        return [n for n in hparams if n not in _NOT_HPARAMS and groups and all(_field(n) in g for g in groups)]
    chosen = list(names)
    for name in chosen:
        if name not in hparams:
            raise ValueError(f"hyperparameter {name!r} is listed in names but missing from hparams")
        if name in _NOT_HPARAMS or not groups or any(_field(name) not in g for g in groups):
            raise ValueError(f"optimiser {kind} has no field {_field(name)!r} for hyperparameter {name!r}")
    return chosen


def _decays(group: dict[str, Any], matrices_elsewhere: bool) -> bool:
    """Whether `weight_decay` goes to this group: it decays already, holds a matrix, or nothing is set apart."""
    return bool(_plain(group["weight_decay"])) or not matrices_elsewhere or any(p.ndim >= 2 for p in group["params"])


def _plan(groups: list[dict[str, Any]], applied: Mapping[str, Any]) -> list[tuple[int, str, Any]]:
    """Every (group index, key, value) to write; `beta1`/`beta2` stand for one element of `betas`."""
    matrices = "weight_decay" in applied and any(p.ndim >= 2 for g in groups for p in g["params"])
    plan = []
    for i, group in enumerate(groups):
        for name, value in applied.items():
            if name == "lr" and "initial_lr" in group:
                base = _plain(group["initial_lr"])
                plan += [(i, "lr", value * (_plain(group["lr"]) / base if base else 1.0)), (i, "initial_lr", value)]
            elif name == "weight_decay" and not _decays(group, matrices):
                continue
            elif name == "betas":
                plan += [(i, "beta1", value[0]), (i, "beta2", value[1])]
            else:
                plan.append((i, name, value))
    return plan


def _put(holder: Any, key: Any, value: Any) -> None:
    """Set holder[key], filling a tensor in place (a tensor lr must stay a tensor on its device)."""
    if isinstance(holder[key], torch.Tensor):
        holder[key].fill_(value)
    else:
        holder[key] = value


def _write(group: dict[str, Any], name: str, value: Any) -> None:
    """Write one value into one param group."""
    if name in _BETAS:
        betas = list(group["betas"])
        _put(betas, _BETAS[name], value)
        group["betas"] = tuple(betas)
    else:
        _put(group, name, value)


def _read(group: dict[str, Any], name: str) -> Any:
    """Read one value back from one param group."""
    return _plain(group["betas"][_BETAS[name]] if name in _BETAS else group[name])


def _same(held: Any, wanted: Any) -> bool:
    """Whether a read-back value equals the written one (float32 tensor fields round slightly)."""
    if isinstance(held, float) and isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return math.isclose(held, wanted, rel_tol=1e-6, abs_tol=1e-12)
    return held == wanted


def _driving(schedulers: Iterable[Any], groups: list[dict[str, Any]]) -> list[Any]:
    """The schedulers (and those inside a chained or sequential one) that drive these param groups."""
    found = []
    for scheduler in schedulers:
        found += _driving(getattr(scheduler, "_schedulers", ()), groups)
        optimizer = getattr(scheduler, "optimizer", None)
        if hasattr(scheduler, "base_lrs") and getattr(optimizer, "param_groups", None) is groups:
            found.append(scheduler)
    return found


def writable(optimizer: torch.optim.Optimizer, names: Iterable[str]) -> list[str]:
    """The hyperparameters among `names` that `apply_hparams` writes into this optimiser (a field every group has)."""
    return _chosen(optimizer.param_groups, dict.fromkeys(names), None, "")


def apply_hparams(optimizer: torch.optim.Optimizer, hparams: Mapping[str, Any], names: Iterable[str] | None = None,
                  schedulers: Iterable[Any] = ()) -> dict[str, Any]:
    """Write the optimiser's hyperparameters into its param groups by the rules above, verify them; return them.

    Without `names`, every hyperparameter whose field all param groups have is written, and the
    rest are left to the model. With `names`, exactly those are written and each must exist in the
    optimiser (ValueError otherwise), so a typo or a field the optimiser lacks (momentum for Adam)
    is caught instead of silently ignored. Pass the `schedulers` that drive the optimiser so that
    their base rates follow a new `lr` (schedulers of other optimisers are left alone).
    """
    groups = optimizer.param_groups
    kind = type(optimizer).__name__
    applied = {name: _plain(hparams[name]) for name in _chosen(groups, hparams, names, kind)}
    plan = _plan(groups, applied)
    for i, name, value in plan:
        _write(groups[i], name, value)
    if "lr" in applied:
        for scheduler in _driving(schedulers, groups):
            for i in range(min(len(scheduler.base_lrs), len(groups))):
                _put(scheduler.base_lrs, i, applied["lr"])
    held = optimizer.param_groups
    for i, name, value in plan:
        if not _same(_read(held[i], name), value):
            raise RuntimeError(f"optimiser {kind} param group {i} holds {_field(name)}={_read(held[i], name)!r} "
                               f"after writing {name}={value!r}")
    return applied
