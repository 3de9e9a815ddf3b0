"""Full states of sharded (FSDP2 `fully_shard`) members: gathered for a checkpoint, loaded back into the shards.

Under a `GroupConnection` a `state=` callable runs on every rank at once, so `full_state` (a
collective: every rank sends its shards) works there; with `everywhere=False` only rank 0
receives the gathered state, which is the value poptrain saves. The copied state of an exploit
reaches every rank, so `load_full_state` loads the full dict on every rank, each keeping its shard.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from . import _detached_copy


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, everywhere: bool = False) -> dict[str, Any]:
    """The full model and optimiser state as plain CPU tensors, gathered from every rank (call it on all of them)."""
    # cpu_offload keeps the gathered state on rank 0 alone (the others get empty dicts) and off the accelerator
    options = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere)
    model_state = get_model_state_dict(model, options=options)
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=options)
    return {"model": _detached_copy(dict(model_state)), "optimizer": _detached_copy(optimizer_state)}


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a `full_state` (the same dict on every rank) into this rank's shards of the model and optimiser."""
    options = StateDictOptions(full_state_dict=True)
    # the loaders replace entries of the dicts they are given and may keep views of its tensors: give them copies,
    # so training never writes into the caller's state (an exploit's copied checkpoint)
    set_model_state_dict(model, _detached_copy(dict(state["model"])), options=options)
    set_optimizer_state_dict(model, optimizer, _detached_copy(state["optimizer"]), options=options)
