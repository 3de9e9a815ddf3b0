"""poptrain.torch: hyperparameters applied after an optimiser's state is loaded, and state copies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from poptrain.torch import OPTIMIZER_HPARAMS, TorchTrainable, apply_hparams, load_state, save_state


def make_model(seed: int) -> nn.Module:
    """A tiny linear model with deterministic weights."""
    g = torch.Generator().manual_seed(seed)
    model = nn.utils.skip_init(nn.Linear, 3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, 3, generator=g))
        model.bias.copy_(torch.randn(2, generator=g))
    return model


def two_group_sgd(model: nn.Module, lr: float, momentum: float) -> torch.optim.SGD:
    """SGD with weight and bias in separate param groups, so 'every group' is tested."""
    return torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=lr, momentum=momentum)


def take_step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int = 0) -> None:
    """One optimisation step on a fixed batch."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
    optimizer.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    optimizer.step()


def source_state() -> dict:
    """Optimiser A's state after two steps: lr 0.1, momentum 0.9, momentum buffers filled."""
    model_a = make_model(0)
    opt_a = two_group_sgd(model_a, lr=0.1, momentum=0.9)
    take_step(model_a, opt_a, 1)
    take_step(model_a, opt_a, 2)
    return opt_a.state_dict()


NEW = {"lr": 0.02, "momentum": 0.5, "hidden": 64}


@pytest.mark.parametrize("how", ["apply_hparams", "load_state", "TorchTrainable"])
def test_hparams_applied_after_loading_win_and_drive_the_next_step(how: str) -> None:
    state_a = source_state()
    model_b = make_model(1)
    opt_b = two_group_sgd(model_b, lr=0.5, momentum=0.0)
    if how == "apply_hparams":
        opt_b.load_state_dict(state_a)
        assert [g["lr"] for g in opt_b.param_groups] == [0.1, 0.1]  # loading restored A's values
        applied = apply_hparams(opt_b, NEW)
        assert applied == {"lr": 0.02, "momentum": 0.5}  # 'hidden' belongs to the model
    elif how == "load_state":
        load_state(model_b, opt_b, {"model": model_b.state_dict(), "optimizer": state_a}, hparams=NEW)
    else:
        member = TorchTrainable({"lr": 0.5, "momentum": 0.0}, seed=0)
        member.model, member.optimizer = model_b, opt_b
        state = member.state_dict()
        state["optimizer"] = state_a
        member.load_state_dict(state)
        member.set_hparams(NEW)
    for group in opt_b.param_groups:
        assert group["lr"] == 0.02 and group["momentum"] == 0.5

    # The next step must use the new lr and momentum: p -= lr * (momentum * buf + grad).
    bufs = [opt_b.state[p]["momentum_buffer"].clone() for p in (model_b.weight, model_b.bias)]
    before = [p.detach().clone() for p in (model_b.weight, model_b.bias)]
    take_step(model_b, opt_b, 3)
    for p, buf, old in zip((model_b.weight, model_b.bias), bufs, before):
        expected = old - 0.02 * (0.5 * buf + p.grad)
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7)


def test_hparams_applied_before_loading_are_lost() -> None:
    """The trap this module exists for: load_state_dict brings back the source's lr and momentum."""
    state_a = source_state()
    opt_b = two_group_sgd(make_model(1), lr=0.5, momentum=0.0)
    apply_hparams(opt_b, NEW)
    opt_b.load_state_dict(state_a)
    assert [(g["lr"], g["momentum"]) for g in opt_b.param_groups] == [(0.1, 0.9), (0.1, 0.9)]


def test_adam_betas_set_through_beta1_and_beta2() -> None:
    model = make_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    take_step(model, opt)
    state = opt.state_dict()
    assert apply_hparams(opt, {"beta1": 0.8, "lr": 0.01}) == {"beta1": 0.8, "lr": 0.01}
    assert opt.param_groups[0]["betas"] == (0.8, 0.999)  # beta2 untouched
    opt.load_state_dict(state)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    apply_hparams(opt, {"beta1": 0.7, "beta2": 0.99, "eps": 1e-6}, names=["beta1", "beta2", "eps"])
    assert opt.param_groups[0]["betas"] == (0.7, 0.99) and opt.param_groups[0]["eps"] == 1e-6
    assert "betas" in OPTIMIZER_HPARAMS


def test_adam_tensor_lr_is_filled_in_place() -> None:
    model = make_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3))
    apply_hparams(opt, {"lr": 0.05})
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.item() == pytest.approx(0.05)


def test_numpy_scalars_are_written_as_python_numbers() -> None:
    import numpy as np
    opt = torch.optim.SGD(make_model(0).parameters(), lr=0.1)
    apply_hparams(opt, {"lr": np.float64(0.3)})
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] == 0.3


def test_a_named_field_the_optimiser_lacks_is_an_error() -> None:
    opt = torch.optim.Adam(make_model(0).parameters(), lr=1e-3)
    with pytest.raises(ValueError, match=r"Adam.*'momentum'"):
        apply_hparams(opt, {"lr": 0.1, "momentum": 0.9}, names=["lr", "momentum"])
    assert opt.param_groups[0]["lr"] == 1e-3  # nothing written when the names are wrong
    with pytest.raises(ValueError, match="'lr'.*missing"):
        apply_hparams(opt, {}, names=["lr"])
    # Without names, momentum is not Adam's: it is left alone rather than guessed at.
    assert apply_hparams(opt, {"lr": 0.1, "momentum": 0.9}) == {"lr": 0.1}


def test_a_value_the_optimiser_does_not_keep_is_an_error() -> None:
    class Forgetful:
        """An optimiser-like object whose param groups are rebuilt on every access."""

        @property
        def param_groups(self) -> list[dict]:
            return [{"lr": 0.1}]

    with pytest.raises(RuntimeError, match="Forgetful.*lr=0.1"):
        apply_hparams(Forgetful(), {"lr": 0.5})  # type: ignore[arg-type]


class Regression(TorchTrainable):
    """A TorchTrainable for the tests: a linear model fitted by SGD on generator-drawn data."""

    optimizer_hparams = ("lr", "momentum")

    def __init__(self, hparams: dict, seed: int) -> None:
        super().__init__(hparams, seed)
        self.model = make_model(seed)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=hparams["lr"], momentum=hparams["momentum"])
        self.steps = 0

    def train(self) -> None:
        x = torch.randn(16, 3, generator=self.generator)
        self.optimizer.zero_grad()
        ((self.model(x) - x[:, :2]) ** 2).mean().backward()
        self.optimizer.step()
        self.steps += 1

    def evaluate(self) -> float:
        with torch.no_grad():
            return float(self.model.weight.sum() + self.model.bias.sum())

    def extra_state(self) -> dict:
        return {"steps": self.steps}

    def load_extra_state(self, extra: dict) -> None:
        self.steps = extra["steps"]


def test_state_dict_is_a_deep_copy_and_round_trips_exactly() -> None:
    member = Regression({"lr": 0.1, "momentum": 0.9}, seed=0)
    member.train()
    state = member.state_dict()
    saved = {k: v.clone() for k, v in state["model"].items()}
    saved_buf = state["optimizer"]["state"][0]["momentum_buffer"].clone()
    score, next_x = member.evaluate(), torch.randn(4, generator=member.generator)
    for _ in range(3):
        member.train()
    assert member.evaluate() != score
    for k, v in state["model"].items():
        assert torch.equal(v, saved[k])  # training did not reach the snapshot
    assert torch.equal(state["optimizer"]["state"][0]["momentum_buffer"], saved_buf)

    member.load_state_dict(state)
    assert member.evaluate() == score and member.steps == 1
    assert torch.equal(torch.randn(4, generator=member.generator), next_x)  # rng restored

    # Two members restored from one state train the same and leave the state untouched.
    other = Regression({"lr": 0.1, "momentum": 0.9}, seed=5)
    other.load_state_dict(state)
    member.load_state_dict(state)
    member.train()
    other.train()
    assert member.evaluate() == other.evaluate()
    assert torch.equal(state["optimizer"]["state"][0]["momentum_buffer"], saved_buf)


def test_set_hparams_with_a_misnamed_hparam_fails_loudly() -> None:
    member = Regression({"lr": 0.1, "momentum": 0.9}, seed=0)
    with pytest.raises(ValueError, match="momentum"):
        member.set_hparams({"lr": 0.7, "momentom": 0.9})
    assert member.hparams == {"lr": 0.1, "momentum": 0.9}  # a rejected set changes nothing
    assert member.optimizer.param_groups[0]["lr"] == 0.1
    member.set_hparams({"lr": 0.3, "momentum": 0.1})
    assert member.hparams == {"lr": 0.3, "momentum": 0.1}
    assert member.optimizer.param_groups[0]["lr"] == 0.3


def test_save_state_and_load_state_for_code_that_does_not_subclass() -> None:
    model, other = make_model(0), make_model(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    take_step(model, opt)
    state = save_state(model, opt, epoch=3)
    weight = state["model"]["weight"].clone()
    take_step(model, opt, 1)
    assert torch.equal(state["model"]["weight"], weight)

    opt_other = torch.optim.SGD(other.parameters(), lr=0.5, momentum=0.0)
    extra = load_state(other, opt_other, state)
    assert extra == {"epoch": 3}
    assert torch.equal(other.weight.detach(), weight)
    assert opt_other.param_groups[0]["lr"] == 0.1  # without hparams, the saved values come back
