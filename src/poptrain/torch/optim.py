"""Optimisers over a stacked population: every hyperparameter is a per-member tensor.

Each matches its torch.optim counterpart for every member (tests compare them step by step), so
exploit and explore are index copies and tensor writes instead of new optimiser objects.
"""

from __future__ import annotations

from typing import Any

import torch

Tensor = torch.Tensor


def _per_member(value: Any, size: int, device: torch.device, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.dim() == 0:
        t = t.expand(size).clone()
    if t.shape != (size,):
        raise ValueError(f"{name} must be a number or {size} numbers (one per member), got shape {tuple(t.shape)}")
    return t


def _along(values: Tensor, like: Tensor) -> Tensor:
    """A [P] tensor shaped to broadcast against a [P, ...] parameter."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class BatchedOptimizer:
    """Shared bookkeeping: per-member hyperparameters and state, exploit as an index copy."""

    hparams: tuple[str, ...] = ()

    def __init__(self, params: dict[str, Tensor], **values: Any) -> None:
        first = next(iter(params.values()))
        self.params, self.size, self.device = params, first.shape[0], first.device
        self.values = {k: _per_member(v, self.size, self.device, k) for k, v in values.items()}
        self.state: dict[str, dict[str, Tensor]] = self.initial_state()

    def initial_state(self) -> dict[str, dict[str, Tensor]]:
        """The state before any step, made up front so that a compiled step never sees it grow."""
        return {}

    def set_hparams(self, member: int, hparams: dict[str, Any]) -> None:
        """Write a member's hyperparameters (the ones this optimiser has; others are ignored)."""
        for key, value in hparams.items():
            if key in self.values:
                self.values[key][member] = float(value)

    @torch.no_grad()
    def copy_members(self, dsts: list[int], srcs: list[int]) -> None:
        """Give each `dsts[i]` the optimiser state of `srcs[i]` (hyperparameters are set apart)."""
        for slots in self.state.values():
            for t in slots.values():
                t[list(dsts)] = t[list(srcs)]

    def state_dict(self) -> dict[str, Any]:
        return {"values": {k: v.clone() for k, v in self.values.items()},
                "state": {n: {k: t.clone() for k, t in s.items()} for n, s in self.state.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = {k: v.clone().to(self.device) for k, v in state["values"].items()}
        loaded = {n: {k: t.clone().to(self.device) for k, t in s.items()} for n, s in state["state"].items()}
        self.state = {**self.initial_state(), **loaded}  # a state saved before any step may lack slots

    def member_state(self, member: int) -> dict[str, Any]:
        """One member's optimiser state and hyperparameters, as plain tensors."""
        return {"hparams": {k: float(v[member]) for k, v in self.values.items()},
                "state": {n: {k: t[member].clone() for k, t in s.items()} for n, s in self.state.items()}}


class BatchedSGD(BatchedOptimizer):
    """torch.optim.SGD (momentum, dampening, Nesterov, weight decay) for every member at once."""

    hparams = ("lr", "momentum", "weight_decay", "dampening")

    def __init__(self, params: dict[str, Tensor], lr: Any, momentum: Any = 0.0, weight_decay: Any = 0.0,
                 dampening: Any = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening)
        self.nesterov = nesterov

    def initial_state(self) -> dict[str, dict[str, Tensor]]:
        """Per parameter: the momentum buffer and which members have started it (their first step with momentum)."""
        return {name: {"momentum_buffer": torch.zeros_like(p),
                       "started": torch.zeros(self.size, dtype=torch.bool, device=self.device)}
                for name, p in self.params.items()}

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor]) -> None:
        v = self.values
        moving = v["momentum"] != 0  # torch.optim keeps no buffer while a member's momentum is 0
        # branching on tensor values would split a compiled graph; compiled, the general path fuses anyway
        eager = not torch.compiler.is_compiling()
        everyone_moving = eager and bool(moving.all())
        undamped = everyone_moving and not bool(v["dampening"].any())
        for name, p in self.params.items():
            lr, momentum, dampening = _along(v["lr"], p), _along(v["momentum"], p), _along(v["dampening"], p)
            g = grads[name] + _along(v["weight_decay"], p) * p
            buf, started = self.state[name]["momentum_buffer"], self.state[name]["started"]
            if everyone_moving and bool(started.all()):
                # the usual case, the same numbers as the general one below in fewer passes over memory
                buf.mul_(momentum).add_(g if undamped else (1 - dampening) * g)
                p.sub_(lr * (g.add_(momentum * buf) if self.nesterov else buf))
                continue
            # a member's buffer starts at its first gradient with momentum, then decays and accumulates
            updated = torch.where(_along(started, p), momentum * buf + (1 - dampening) * g, g)
            buf.copy_(torch.where(_along(moving, p), updated, buf))
            started |= moving
            step = g + momentum * buf if self.nesterov else buf
            p.sub_(lr * torch.where(_along(moving, p), step, g))


class BatchedAdam(BatchedOptimizer):
    """torch.optim.Adam, or AdamW with `decoupled=True`, for every member at once."""

    hparams = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(self, params: dict[str, Tensor], lr: Any, beta1: Any = 0.9, beta2: Any = 0.999, eps: Any = 1e-8,
                 weight_decay: Any = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        self.decoupled = decoupled

    def initial_state(self) -> dict[str, dict[str, Tensor]]:
        """The step count per member, and both moment estimates per parameter."""
        return {"_": {"step": torch.zeros(self.size, device=self.device)},
                **{name: {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                   for name, p in self.params.items()}}

    def set_hparams(self, member: int, hparams: dict[str, Any]) -> None:
        super().set_hparams(member, hparams)
        if "betas" in hparams:
            self.values["beta1"][member], self.values["beta2"][member] = map(float, hparams["betas"])

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor]) -> None:
        v = self.values
        count = self.state["_"]["step"]
        count.add_(1)
        for name, p in self.params.items():
            lr, wd = _along(v["lr"], p), _along(v["weight_decay"], p)
            beta1, beta2, eps = _along(v["beta1"], p), _along(v["beta2"], p), _along(v["eps"], p)
            g = grads[name]
            if self.decoupled:
                p.mul_(1 - lr * wd)
            else:
                g = g + wd * p
            m, s = self.state[name]["exp_avg"], self.state[name]["exp_avg_sq"]
            m.lerp_(g, 1 - beta1)
            s.mul_(beta2).add_((1 - beta2) * g * g)
            t = _along(count, p)
            bias1, bias2 = 1 - beta1 ** t, 1 - beta2 ** t
            denom = s.sqrt() / bias2.sqrt() + eps
            p.sub_((lr / bias1) * m / denom)


def BatchedAdamW(params: dict[str, Tensor], lr: Any, beta1: Any = 0.9, beta2: Any = 0.999, eps: Any = 1e-8,
                 weight_decay: Any = 0.01) -> BatchedAdam:
    """torch.optim.AdamW (decoupled weight decay) for every member at once."""
    return BatchedAdam(params, lr, beta1, beta2, eps, weight_decay, decoupled=True)
