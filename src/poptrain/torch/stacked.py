"""A population of one architecture as a single batched model (torch.func: stack, vmap, grad).

Every parameter and buffer gets a leading member axis; one call runs forward and backward for
all members, each on its own data order. Exploit is an index copy along that axis. A plain stack
of Linear layers and activations runs as batched matrix products directly; any other model runs
under vmap.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

Tensor = torch.Tensor

# Layers whose forward writes to their own buffers: vmap cannot batch that in-place update.
UNBATCHABLE = (nn.modules.batchnorm._BatchNorm,)
# Layers without parameters that act on each element alone, so a stacked [P, B, ...] input goes
# through them as it is.
ELEMENTWISE = (nn.Identity, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
               nn.Softplus, nn.Dropout)


# Activations whose gradient the direct backward takes from the layer's output: (grad, output) -> grad of the input.
OUTPUT_DERIVATIVES: dict[type, Callable[[Tensor, Tensor], Tensor]] = {
    nn.ReLU: lambda grad, out: torch.ops.aten.threshold_backward(grad, out, 0),
    nn.Tanh: torch.ops.aten.tanh_backward,
    nn.Sigmoid: torch.ops.aten.sigmoid_backward,
    nn.Identity: lambda grad, out: grad,
}
# The same activations in place, for scoring, where nothing keeps their inputs.
IN_PLACE: dict[type, Callable[[Tensor], Tensor]] = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_,
                                                   nn.Sigmoid: torch.sigmoid_, nn.Identity: lambda x: x}
IGNORE_INDEX = -100  # F.cross_entropy's default: such a target adds no loss and no gradient


class NotVectorizable(ValueError):
    """The model has a layer the batched population cannot run."""


def check_vectorizable(model: nn.Module) -> None:
    """Refuse, naming the layer, models whose layers vmap cannot batch."""
    for name, layer in model.named_modules():
        if isinstance(layer, UNBATCHABLE) and layer.track_running_stats:
            raise NotVectorizable(
                f"layer {name!r} ({type(layer).__name__}) updates its running statistics in place, which "
                f"torch.func.vmap cannot batch: use GroupNorm or LayerNorm, track_running_stats=False, "
                f"or the local engine")


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None))


def linear_stack(model: nn.Module, names: dict[int, str] | None = None) -> list[str | nn.Module] | None:
    """A Sequential of Linear and ELEMENTWISE layers as a list (a Linear by its parameters' prefix), else None."""
    if type(model) is not nn.Sequential or _hooked(model):  # a subclass may override forward; hooks would be skipped
        return None
    if names is None:  # each module's first name: the one its parameters are stacked under (a tied layer has one)
        names = {id(module): name for name, module in reversed(list(model.named_modules(remove_duplicate=False)))}
    layers: list[str | nn.Module] = []
    for layer in model._modules.values():  # every position, a layer used twice included (named_children skips repeats)
        if type(layer) is nn.Sequential:
            inner = linear_stack(layer, names)
            if inner is None:
                return None
            layers += inner
        elif type(layer) is nn.Linear and not _hooked(layer) and isinstance(layer.weight, nn.Parameter) \
                and (layer.bias is None or isinstance(layer.bias, nn.Parameter)):
            layers.append(f"{names[id(layer)]}.")
        elif type(layer) in ELEMENTWISE:
            layers.append(layer)  # called as a module: its own hooks run
        else:
            return None
    return layers


def direct_backward(layers: list[str | nn.Module] | None, params: Sequence[str]) -> bool:
    """Whether `gradients` can run backward by hand: every parameter in one Linear used once, activations known."""
    if layers is None:
        return False
    linears = [layer for layer in layers if isinstance(layer, str)]
    covered = {name + part for name in linears for part in ("weight", "bias")}
    return (len(set(linears)) == len(linears) and set(params) <= covered
            and all(isinstance(layer, str) or (type(layer) in OUTPUT_DERIVATIVES and not _hooked(layer))
                    for layer in layers))


def member_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Each member's mean cross-entropy, all at once: logits [P, B, classes], targets [P, B] -> [P]."""
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(1)


class StackedModules:
    """Models of one architecture stacked along a leading member axis, trained in one batched call."""

    def __init__(self, modules: Sequence[nn.Module], device: str | torch.device = "cpu") -> None:
        check_vectorizable(modules[0])
        self.size, self.device = len(modules), torch.device(device)
        params, buffers = stack_module_state(list(modules))
        self.params = {k: v.detach().to(self.device) for k, v in params.items()}
        self.buffers = {k: v.detach().to(self.device) for k, v in buffers.items()}
        self.template = copy.deepcopy(modules[0]).to("meta")
        self.evaluator = copy.deepcopy(self.template).eval()  # dropout off when scoring
        self.layers = linear_stack(self.template)
        self.direct = direct_backward(self.layers, list(self.params))

    @classmethod
    def from_factory(cls, factory: Callable[[], nn.Module], seeds: Sequence[int],
                     device: str | torch.device = "cpu") -> "StackedModules":
        """`factory()`'s model once per seed, each initialised from its seed (the global RNG untouched)."""
        modules = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                modules.append(factory())
        return cls(modules, device)

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def _evaluate(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.evaluator, (params, buffers), (x,))

    def _stacked(self, params: dict[str, Tensor], x: Tensor, training: bool, saved: list[Tensor] | None = None) -> Tensor:
        """The linear stack's outputs for every member at once, without vmap's per-op batching rules.

        `saved`, if given, receives what a backward by hand needs, per layer: a Linear's input, an activation's output.
        """
        assert self.layers is not None
        if x.shape[0] != self.size:  # reshaping below would silently mix members' rows
            raise ValueError(f"expected inputs with {self.size} members on the first axis, got shape {tuple(x.shape)}")
        made = False  # whether x is a tensor this call made, which an activation may then overwrite when scoring
        for layer in self.layers:
            if isinstance(layer, str):
                if saved is not None:
                    saved.append(x)
                weight, bias = params[layer + "weight"].transpose(1, 2), params.get(layer + "bias")
                flat = x.reshape(self.size, -1, x.shape[-1])  # Linear acts on the last axis, whatever comes before
                # the bias in the product: a separate add of a large output cost as much as the product
                out = torch.bmm(flat, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), flat, weight)
                x, made = out.reshape(*x.shape[:-1], out.shape[-1]), True
            elif not training and made and type(layer) in IN_PLACE and not _hooked(layer):
                x = IN_PLACE[type(layer)](x)  # no fresh pages for a large scoring batch
            elif training or not isinstance(layer, nn.Dropout):  # dropout is the identity when scoring
                x, made = layer(x), False
                if saved is not None:
                    saved.append(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Every member's outputs in eval mode (dropout off): `x` is [P, B, ...], each member its own batch."""
        if self.layers is not None and not torch.compiler.is_compiling():
            return self._stacked(self.params, x, training=False)
        return vmap(self._evaluate, randomness="different")(self.params, self.buffers, x)

    def gradients(self, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                  y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Each member's gradients and loss on its own batch (x [P, B, ...], y [P, B, ...])."""
        if torch.compiler.is_compiling():  # dynamo traces vmap(grad) whole, but not autograd.grad
            def loss(params: dict[str, Tensor], buffers: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
                return loss_fn(self._call(params, buffers, xb), yb)

            return vmap(grad_and_value(loss), randomness="different")(self.params, self.buffers, x, y)
        if (self.direct and self.layers is not None and loss_fn is F.cross_entropy and x.dim() == 3
                and y.dim() == 2 and y.dtype == torch.long and not torch.is_autocast_enabled(x.device.type)):
            return self._direct_gradients(x, y)
        params = {k: v.detach().requires_grad_(True) for k, v in self.params.items()}
        with torch.enable_grad():
            if self.layers is not None:
                outputs = self._stacked(params, x, training=True)
            else:
                outputs = vmap(self._call, randomness="different")(params, self.buffers, x)
            if loss_fn is F.cross_entropy and outputs.dim() == 3:  # [P, B, classes]: skip vmap's slow nll_loss rule
                losses = member_cross_entropy(outputs, y)
            else:
                losses = vmap(loss_fn, randomness="different")(outputs, y)
            # member i's parameters reach only loss i, so the gradient of the sum is each member's own;
            # in eager mode one plain backward costs less than vmap(grad(...)), whose batching rules wrap every op
            grads = torch.autograd.grad(losses.sum(), list(params.values()))
        return dict(zip(params, grads)), losses.detach()

    @torch.no_grad()
    def _direct_gradients(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """`gradients` of a linear stack under each member's mean cross-entropy, backward written out: autograd's
        numbers from fewer kernels (no engine, bias folded into the product, the ReLU mask from its output)."""
        saved: list[Tensor] = []
        x = self._stacked(self.params, x, training=True, saved=saved)
        # softmax by hand: over a few classes, log_softmax's kernel costs three times these five
        shifted = x - x.amax(2, keepdim=True)
        exp = shifted.exp()
        total = exp.sum(2, keepdim=True)
        # per target: 1/B, or 0 where it is ignored (F.cross_entropy's ignore_index; the mean still counts it)
        scale = (y != IGNORE_INDEX).unsqueeze(2).to(x.dtype).div_(y.shape[1])
        target = y.clamp(min=0).unsqueeze(2)
        losses = (total.log() - shifted.gather(2, target)).mul_(scale).sum((1, 2))
        grad = exp.mul_(scale / total).scatter_add_(2, target, scale.neg())  # (softmax - one-hot) / B
        grads: dict[str, Tensor] = {}
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if isinstance(layer, str):
                grads[layer + "weight"] = torch.bmm(grad.transpose(1, 2), saved[i])
                if layer + "bias" in self.params:
                    grads[layer + "bias"] = grad.sum(1)
                if i:  # the inputs need no gradient
                    grad = torch.bmm(grad, self.params[layer + "weight"])
            else:
                grad = OUTPUT_DERIVATIVES[type(layer)](grad, saved[i])
        return {k: grads[k] for k in self.params}, losses

    @torch.no_grad()
    def copy_members(self, dsts: Sequence[int], srcs: Sequence[int]) -> None:
        """Exploit: each `dsts[i]` takes `srcs[i]`'s weights and buffers as they were before any copy."""
        self.import_members(dsts, self.export_members(srcs))

    def export_members(self, srcs: Sequence[int]) -> dict[str, Tensor]:
        """The weights and buffers of `srcs` (gathered copies), for `import_members` here or in another shard."""
        return {k: t[list(srcs)] for k, t in {**self.params, **self.buffers}.items()}

    @torch.no_grad()
    def import_members(self, dsts: Sequence[int], exported: dict[str, Tensor]) -> None:
        """Write `export_members`' weights and buffers into `dsts`, in order."""
        for k, t in {**self.params, **self.buffers}.items():
            t[list(dsts)] = exported[k].to(t.device)

    def member_state_dict(self, member: int) -> dict[str, Tensor]:
        """One member's ordinary `state_dict` (loadable into `factory()`'s model)."""
        return {k: v[member].detach().clone().cpu() for k, v in {**self.params, **self.buffers}.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"params": {k: v.clone() for k, v in self.params.items()},
                "buffers": {k: v.clone() for k, v in self.buffers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["params"].items():
            self.params[k].copy_(v)
        for k, v in state["buffers"].items():
            self.buffers[k].copy_(v)
