"""Optimisers over a stacked population: every hyperparameter is a per-member tensor.

Each matches its torch.optim counterpart for every member (tests compare them step by step), so
exploit and explore are index copies and tensor writes instead of new optimiser objects.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

Tensor = torch.Tensor


def _per_member(value: Any, size: int, device: torch.device, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    # a copy, never a view of the caller's array: writes there would bypass the step's cached views
    t = t.expand(size).clone() if t.dim() == 0 else t.clone()
    if t.shape != (size,):
        raise ValueError(f"{name} must be a number or {size} numbers (one per member), got shape {tuple(t.shape)}")
    return t


def _along(values: Tensor, like: Tensor) -> Tensor:
    """A [P] tensor shaped to broadcast against a [P, ...] parameter."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def _along_each(values: Tensor, dims: list[int]) -> list[Tensor]:
    """A [P] tensor shaped to broadcast against each parameter, given their numbers of dimensions."""
    shaped = {d: values.view(-1, *([1] * (d - 1))) for d in set(dims)}
    return [shaped[d] for d in dims]


class BatchedOptimizer:
    """Shared bookkeeping: per-member hyperparameters and state, exploit as an index copy.

    `step(grads)` uses up the gradients it is given: it may write into them and keep them as its own state
    (SGD's momentum buffers), so pass tensors that nothing reads or writes afterwards.
    """

    hparams: tuple[str, ...] = ()

    def __init__(self, params: dict[str, Tensor], **values: Any) -> None:
        first = next(iter(params.values()))
        self.params, self.size, self.device = params, first.shape[0], first.device
        self.values = {k: _per_member(v, self.size, self.device, k) for k, v in values.items()}
        self.state: dict[str, dict[str, Tensor]] = self.initial_state()
        self._dims = [p.dim() for p in params.values()]
        self._views: dict[str, list[Tensor]] = {}
        self._stamp: list[tuple[int, int]] = []  # (id, version) of each tensor in self.values when _views were made
        self._stamped: list[Tensor] = []
        self._mirror()

    def _stamp_now(self) -> list[tuple[int, int]]:
        # _version counts in-place writes (set_hparams or any other); a new id is a replaced tensor (load_state_dict)
        return [(id(t), t._version) for t in self.values.values()]

    def _mirror(self) -> None:
        """Copy the hyperparameters to the host (a sync), where `read_flags` reads them without one."""
        self.host = {k: v.tolist() for k, v in self.values.items()}
        self._host_stamp: list[tuple[int, int]] | None = self._stamp_now()
        self._host_values = list(self.values.values())  # held, so that no new tensor takes an id

    def initial_state(self) -> dict[str, dict[str, Tensor]]:
        """The state before any step, made up front so that a compiled step never sees it grow."""
        return {}

    def derived(self) -> dict[str, Tensor]:
        """[P] tensors that the step needs and that follow from the hyperparameters alone."""
        return {}

    def read_flags(self) -> None:
        """Set host-side flags from `self.host` (the hyperparameters as floats), once after each change.

        `set_hparams` keeps `self.host` in step with its writes, so a step after one needs no sync;
        only a write that bypasses it costs one copy to the host, at the next step.
        """

    def hparam_views(self) -> dict[str, list[Tensor]]:
        """Each hyperparameter and `derived` tensor shaped against every parameter; eagerly, kept until one is written."""
        if torch.compiler.is_compiling():
            return self._make_views()
        stamp = self._stamp_now()
        if stamp != self._stamp:
            self._views = self._make_views()
            if stamp != self._host_stamp:  # written behind set_hparams' back
                self._mirror()
            self.read_flags()
            self._stamp, self._stamped = stamp, list(self.values.values())  # held, so that no new tensor takes an id
        return self._views

    def _make_views(self) -> dict[str, list[Tensor]]:
        return {k: _along_each(t, self._dims) for k, t in {**self.values, **self.derived()}.items()}

    def set_hparams(self, member: int, hparams: dict[str, Any]) -> None:
        """Write a member's hyperparameters (the ones this optimiser has; others are ignored)."""
        for key, value in hparams.items():
            if key in self.values:
                self._write(key, member, float(value))

    def _write(self, key: str, member: int, value: float) -> None:
        """One member's hyperparameter, on the device and in the host's copy (no sync)."""
        mirrored = self._host_stamp == self._stamp_now()
        self.values[key][member] = value
        self.host[key][member] = value
        self._host_stamp = self._stamp_now() if mirrored else None

    @torch.no_grad()
    def copy_members(self, dsts: list[int], srcs: list[int]) -> None:
        """Give each `dsts[i]` the optimiser state of `srcs[i]` (hyperparameters are set apart)."""
        self.import_members(dsts, self.export_members(srcs))

    def export_members(self, srcs: Sequence[int]) -> dict[str, dict[str, Tensor]]:
        """The optimiser state of `srcs` (gathered copies), for `import_members` here or in another shard."""
        return {n: {k: t[list(srcs)] for k, t in slots.items()} for n, slots in self.state.items()}

    @torch.no_grad()
    def import_members(self, dsts: Sequence[int], exported: dict[str, dict[str, Tensor]]) -> None:
        """Write `export_members`' state into `dsts`, in order."""
        for n, slots in self.state.items():
            for k, t in slots.items():
                t[list(dsts)] = exported[n][k].to(t.device)

    def state_dict(self) -> dict[str, Any]:
        return {"values": {k: v.clone() for k, v in self.values.items()},
                "state": {n: {k: t.clone() for k, t in s.items()} for n, s in self.state.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = {k: v.clone().to(self.device) for k, v in state["values"].items()}
        loaded = {n: {k: t.clone().to(self.device) for k, t in s.items()} for n, s in state["state"].items()}
        self.state = {**self.initial_state(), **loaded}  # a state saved before any step may lack slots
        self._mirror()


class BatchedSGD(BatchedOptimizer):
    """torch.optim.SGD (momentum, dampening, Nesterov, weight decay) for every member at once."""

    hparams = ("lr", "momentum", "weight_decay", "dampening")

    def __init__(self, params: dict[str, Tensor], lr: Any, momentum: Any = 0.0, weight_decay: Any = 0.0,
                 dampening: Any = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening)
        self.nesterov = nesterov
        self._all_moving = False  # every member's momentum is nonzero
        self._decays = True  # some member's weight decay is nonzero
        self._damps = True  # some member's dampening is nonzero
        self._all_started = False  # every member's buffer has started, for every parameter (copies cannot undo it)

    def initial_state(self) -> dict[str, dict[str, Tensor]]:
        """Per parameter: the momentum buffer and which members have started it (their first step with momentum)."""
        return {name: {"momentum_buffer": torch.zeros_like(p),
                       "started": torch.zeros(self.size, dtype=torch.bool, device=self.device)}
                for name, p in self.params.items()}

    def derived(self) -> dict[str, Tensor]:
        return {"1-dampening": 1 - self.values["dampening"]}

    def read_flags(self) -> None:
        self._all_moving = all(m != 0 for m in self.host["momentum"])
        self._decays = any(w != 0 for w in self.host["weight_decay"])
        self._damps = any(d != 0 for d in self.host["dampening"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._all_started = False  # until the next step in which every member moves

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor]) -> None:
        # branching on tensor values would split a compiled graph; compiled, the general path fuses anyway
        if torch.compiler.is_compiling():
            self._general_step(grads)
            return
        views = self.hparam_views()
        if self._all_moving and self._all_started:
            self._moving_step(grads, views)
        else:
            self._general_step(grads)
            self._all_started = self._all_moving

    def _moving_step(self, grads: dict[str, Tensor], views: dict[str, list[Tensor]]) -> None:
        """The usual case, every member with momentum and a started buffer: the general step's numbers in fewer passes."""
        params = list(self.params.values())
        bufs = [self.state[name]["momentum_buffer"] for name in self.params]
        g = [grads[name] for name in self.params]
        if self._decays:  # in place: a new tensor per parameter per step cost 3x the write (fresh pages each time)
            torch._foreach_addcmul_(g, params, views["weight_decay"])
        if not self.nesterov and not self._damps and all(
                t.is_contiguous() and t.shape == b.shape and t.dtype == b.dtype and t.data_ptr() != b.data_ptr()
                for t, b in zip(g, bufs)):
            # the gradient becomes the new buffer (gradient + momentum * buffer): a pass over the weights fewer
            torch._foreach_addcmul_(g, bufs, views["momentum"])
            torch._foreach_addcmul_(params, g, views["lr"], value=-1)
            for name, buffer in zip(self.params, g):
                self.state[name]["momentum_buffer"] = buffer
            return
        torch._foreach_mul_(bufs, views["momentum"])
        torch._foreach_addcmul_(bufs, g, views["1-dampening"])
        step = torch._foreach_addcmul(g, bufs, views["momentum"]) if self.nesterov else bufs
        torch._foreach_addcmul_(params, step, views["lr"], value=-1)

    def _general_step(self, grads: dict[str, Tensor]) -> None:
        """Any mix of members with and without momentum, with buffers started or not."""
        v = self.values
        moving = v["momentum"] != 0  # torch.optim keeps no buffer while a member's momentum is 0
        for name, p in self.params.items():
            lr, momentum, dampening = _along(v["lr"], p), _along(v["momentum"], p), _along(v["dampening"], p)
            g = grads[name] + _along(v["weight_decay"], p) * p
            buf, started = self.state[name]["momentum_buffer"], self.state[name]["started"]
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

    def derived(self) -> dict[str, Tensor]:
        v = self.values
        return {"1-beta1": 1 - v["beta1"], "1-beta2": 1 - v["beta2"], "1-lr*wd": 1 - v["lr"] * v["weight_decay"]}

    def set_hparams(self, member: int, hparams: dict[str, Any]) -> None:
        super().set_hparams(member, hparams)
        if "betas" in hparams:
            beta1, beta2 = map(float, hparams["betas"])
            self._write("beta1", member, beta1)
            self._write("beta2", member, beta2)

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor]) -> None:
        v, views = self.values, self.hparam_views()
        count = self.state["_"]["step"]
        count.add_(1)
        bias1, bias2 = 1 - v["beta1"] ** count, 1 - v["beta2"] ** count
        step_size, bias2_sqrt = _along_each(v["lr"] / bias1, self._dims), _along_each(bias2.sqrt(), self._dims)
        params = list(self.params.values())
        m = [self.state[name]["exp_avg"] for name in self.params]
        s = [self.state[name]["exp_avg_sq"] for name in self.params]
        g = [grads[name] for name in self.params]
        if self.decoupled:
            torch._foreach_mul_(params, views["1-lr*wd"])
        else:
            torch._foreach_addcmul_(g, params, views["weight_decay"])  # in place, as in BatchedSGD
        torch._foreach_lerp_(m, g, views["1-beta1"])
        torch._foreach_mul_(s, views["beta2"])
        torch._foreach_addcmul_(s, torch._foreach_mul(g, views["1-beta2"]), g)
        denom = torch._foreach_sqrt(s)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, views["eps"])
        torch._foreach_addcdiv_(params, torch._foreach_mul(m, step_size), denom, value=-1)


def BatchedAdamW(params: dict[str, Tensor], lr: Any, beta1: Any = 0.9, beta2: Any = 0.999, eps: Any = 1e-8,
                 weight_decay: Any = 0.01) -> BatchedAdam:
    """torch.optim.AdamW (decoupled weight decay) for every member at once."""
    return BatchedAdam(params, lr, beta1, beta2, eps, weight_decay, decoupled=True)
