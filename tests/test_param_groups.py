"""The one optimiser writer: TorchTrainable and the Lightning and Hugging Face callbacks write hyperparameters alike."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch

from poptrain.torch import TorchTrainable, apply_hparams


def warmup(step: int) -> float:
    """A linear warmup over four steps: the schedule's factor is 0.25, then 0.5 after one step, then 0.75."""
    return min(1.0, (step + 1) / 4)


def build(kind: str) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """A model with a decayed group (matrices) and an undecayed one (bias, norm), one step into a warmup."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    groups = [{"params": [p for p in net.parameters() if p.ndim >= 2], "weight_decay": 0.01},
              {"params": [p for p in net.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    if kind == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    else:  # a tensor learning rate, as capturable and fused optimisers hold it
        opt = torch.optim.AdamW(groups, lr=torch.tensor(0.1), betas=(0.9, 0.999), foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup)
    net(torch.ones(2, 3)).sum().backward()
    opt.step()
    sched.step()
    return net, opt, sched


class Member(TorchTrainable):
    """A TorchTrainable that steps a learning-rate scheduler."""

    def __init__(self, hparams: dict, seed: int, kind: str) -> None:
        super().__init__(hparams, seed)
        self.model, self.optimizer, self.scheduler = build(kind)


def through_torch_trainable(kind: str, hparams: dict) -> tuple[torch.optim.Optimizer, Any]:
    member = Member({}, seed=0, kind=kind)
    member.set_hparams(hparams)
    assert member.hparams == hparams
    return member.optimizer, member.scheduler


def through_lightning(kind: str, hparams: dict) -> tuple[torch.optim.Optimizer, Any]:
    from poptrain.lightning import PBTCallback
    net, opt, sched = build(kind)
    other = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.3)
    other_sched = torch.optim.lr_scheduler.LambdaLR(other, warmup)
    trainer = SimpleNamespace(optimizers=[opt, other],
                              lr_scheduler_configs=[SimpleNamespace(scheduler=other_sched), SimpleNamespace(scheduler=sched)])
    PBTCallback("sqlite://", "x", monitor="val_loss")._write(trainer, net, None, hparams)  # type: ignore[arg-type]
    # the second optimiser takes the same rules: its own scheduler's factor, its own base rates
    assert other.param_groups[0]["lr"] == pytest.approx(hparams["lr"] * 0.25) and other_sched.base_lrs == [hparams["lr"]]
    return opt, sched


def through_transformers(kind: str, hparams: dict) -> tuple[torch.optim.Optimizer, Any]:
    from poptrain.transformers import PBTCallback
    callback = PBTCallback("sqlite://", "x")
    callback._model, callback._optimizer, callback._scheduler = build(kind)
    callback._write(None, {("learning_rate" if k == "lr" else k): v for k, v in hparams.items()})
    return callback._optimizer, callback._scheduler


USERS: dict[str, Callable[[str, dict], tuple[torch.optim.Optimizer, Any]]] = {
    "TorchTrainable": through_torch_trainable,
    "lightning": through_lightning,
    "transformers": through_transformers,
}


@pytest.mark.parametrize("kind", ["sgd", "adamw-tensor-lr"])
@pytest.mark.parametrize("user", list(USERS))
def test_every_user_writes_lr_with_the_schedules_factor_skips_undecayed_groups_and_writes_momentum(user, kind):
    if user != "TorchTrainable":
        pytest.importorskip(user)
    extra = {"momentum": 0.5} if kind == "sgd" else {"beta1": 0.8, "beta2": 0.95}
    hparams = {"lr": 0.02, "weight_decay": 0.3, "dropout": 0.1, **extra}
    opt, sched = USERS[user](kind, hparams)
    lrs = [float(g["lr"]) for g in opt.param_groups]
    assert lrs == pytest.approx([0.01, 0.01])  # the warmup's factor 0.5 stays on the new rate
    assert [float(b) for b in sched.base_lrs] == pytest.approx([0.02, 0.02])
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]  # the bias and norm group stays undecayed
    assert "dropout" not in opt.param_groups[0]  # a hyperparameter the optimiser lacks is the model's
    if kind == "sgd":
        assert [g["momentum"] for g in opt.param_groups] == [0.5, 0.5]
    else:
        assert [g["betas"] for g in opt.param_groups] == [(0.8, 0.95), (0.8, 0.95)]
        assert all(isinstance(g["lr"], torch.Tensor) for g in opt.param_groups)  # filled in place
    opt.step()
    sched.step()
    assert [float(g["lr"]) for g in opt.param_groups] == pytest.approx([0.02 * 0.75] * 2)  # the schedule goes on


def test_without_a_scheduler_lr_is_written_as_given_and_a_lone_group_of_vectors_decays():
    vector = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([vector], lr=0.1)
    assert apply_hparams(opt, {"lr": 0.02, "weight_decay": 0.3}) == {"lr": 0.02, "weight_decay": 0.3}
    assert opt.param_groups[0]["lr"] == 0.02 and opt.param_groups[0]["weight_decay"] == 0.3
    assert "initial_lr" not in opt.param_groups[0]


def test_betas_as_one_hyperparameter_and_any_field_every_group_has():
    opt = torch.optim.Adagrad(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    assert apply_hparams(opt, {"lr_decay": 0.01, "params": 3, "initial_lr": 1.0}) == {"lr_decay": 0.01}
    adam = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    apply_hparams(adam, {"betas": (0.7, 0.9)})
    assert adam.param_groups[0]["betas"] == (0.7, 0.9)
    with pytest.raises(ValueError, match="no field 'initial_lr'"):
        apply_hparams(adam, {"initial_lr": 1.0}, names=["initial_lr"])


def test_a_chained_schedulers_parts_follow_the_new_rate_and_other_optimisers_schedulers_do_not():
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    first = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    second = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    chained = torch.optim.lr_scheduler.ChainedScheduler([first, second])
    other = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.3), warmup)
    factor = opt.param_groups[0]["lr"] / 0.1
    apply_hparams(opt, {"lr": 0.2}, schedulers=[chained, other])
    assert first.base_lrs == [0.2] and second.base_lrs == [0.2] and other.base_lrs == [0.3]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * factor)
