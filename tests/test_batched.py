"""The batched population and its optimisers equal ordinary torch training, member by member."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poptrain.torch.optim import BatchedAdam, BatchedAdamW, BatchedSGD
from poptrain.torch.stacked import NotVectorizable, StackedModules

SEEDS = [11, 12, 13]


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def data(steps: int = 6, batch: int = 8):
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(steps, len(SEEDS), batch, 6, generator=g)
    ys = torch.randint(0, 3, (steps, len(SEEDS), batch), generator=g)
    return xs, ys


def single(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return model()


CASES = {
    "sgd": (lambda p, h: BatchedSGD(p, **h), lambda ps, h: torch.optim.SGD(ps, **h),
            [dict(lr=0.1, momentum=0.9, weight_decay=1e-3), dict(lr=0.05, momentum=0.0, weight_decay=0.0),
             dict(lr=0.2, momentum=0.5, weight_decay=1e-2)]),
    # every member moving: the step that keeps the gradient as the new buffer, and (with dampening) the one that does not
    "sgd-moving": (lambda p, h: BatchedSGD(p, **h), lambda ps, h: torch.optim.SGD(ps, **h),
                   [dict(lr=0.1, momentum=0.9, weight_decay=1e-3), dict(lr=0.05, momentum=0.3, weight_decay=0.0),
                    dict(lr=0.2, momentum=0.5, weight_decay=1e-2)]),
    "sgd-damped": (lambda p, h: BatchedSGD(p, **h), lambda ps, h: torch.optim.SGD(ps, **h),
                   [dict(lr=0.1, momentum=0.9, dampening=0.1), dict(lr=0.05, momentum=0.3, dampening=0.0),
                    dict(lr=0.2, momentum=0.5, dampening=0.5)]),
    "sgd-nesterov": (lambda p, h: BatchedSGD(p, nesterov=True, **h), lambda ps, h: torch.optim.SGD(ps, nesterov=True, **h),
                     [dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.8), dict(lr=0.2, momentum=0.5)]),
    "adam": (lambda p, h: BatchedAdam(p, **h), lambda ps, h: torch.optim.Adam(ps, lr=h["lr"], betas=(h["beta1"], h["beta2"]),
                                                                           eps=h["eps"], weight_decay=h["weight_decay"]),
             [dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
              dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=1e-3),
              dict(lr=5e-2, beta1=0.95, beta2=0.9, eps=1e-7, weight_decay=1e-2)]),
    "adamw": (lambda p, h: BatchedAdamW(p, **h), lambda ps, h: torch.optim.AdamW(ps, lr=h["lr"], betas=(h["beta1"], h["beta2"]),
                                                                             eps=h["eps"], weight_decay=h["weight_decay"]),
              [dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
               dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
               dict(lr=5e-2, beta1=0.95, beta2=0.9, eps=1e-7, weight_decay=0.0)]),
}


def batched_hparams(per_member: list[dict]) -> dict:
    return {k: [h[k] for h in per_member] for k in per_member[0]}


@pytest.mark.parametrize("case", list(CASES))
def test_batched_optimiser_equals_torch_optim_per_member(case):
    make_batched, make_torch, hparams = CASES[case]
    pop = StackedModules.from_factory(model, SEEDS)
    opt = make_batched(pop.params, batched_hparams(hparams))
    xs, ys = data()
    for x, y in zip(xs, ys):
        grads, _ = pop.gradients(F.cross_entropy, x, y)
        opt.step(grads)
    for i, seed in enumerate(SEEDS):
        alone = single(seed)
        optimiser = make_torch(alone.parameters(), hparams[i])
        for x, y in zip(xs, ys):
            optimiser.zero_grad()
            F.cross_entropy(alone(x[i]), y[i]).backward()
            optimiser.step()
        for name, tensor in alone.state_dict().items():
            torch.testing.assert_close(pop.member_state_dict(i)[name], tensor, rtol=1e-5, atol=1e-6)


def test_exploit_copies_weights_and_optimiser_state_exactly():
    pop = StackedModules.from_factory(model, SEEDS)
    opt = BatchedAdam(pop.params, lr=[1e-2, 2e-2, 3e-2])
    xs, ys = data(steps=3)
    for x, y in zip(xs, ys):
        opt.step(pop.gradients(F.cross_entropy, x, y)[0])
    pop.copy_members([0], [2])
    opt.copy_members([0], [2])
    for name in pop.params:
        assert torch.equal(pop.params[name][0], pop.params[name][2])
        assert not torch.equal(pop.params[name][1], pop.params[name][2])
        for slot in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[name][slot][0], opt.state[name][slot][2])
    opt.set_hparams(0, {"lr": 0.5, "betas": (0.7, 0.9)})  # explore writes into the tensors
    assert opt.values["lr"][0].item() == 0.5 and opt.values["beta1"][0].item() == pytest.approx(0.7)
    assert opt.values["lr"][2].item() == pytest.approx(3e-2)


def test_a_nan_loss_stays_in_its_member():
    pop = StackedModules.from_factory(model, SEEDS)
    opt = BatchedSGD(pop.params, lr=[0.1, 0.1, 0.1])
    x, y = data(steps=1)[0][0], data(steps=1)[1][0]
    x = x.clone()
    x[1, 0, 0] = float("nan")
    before = {k: v.clone() for k, v in pop.params.items()}
    grads, loss = pop.gradients(F.cross_entropy, x, y)
    opt.step(grads)
    assert torch.isnan(loss[1]) and not torch.isnan(loss[[0, 2]]).any()
    for name, tensor in pop.params.items():
        assert torch.isnan(tensor[1]).any()
        assert torch.isfinite(tensor[[0, 2]]).all() and not torch.equal(tensor[0], before[name][0])


def test_members_start_from_their_own_seeds_without_touching_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    pop = StackedModules.from_factory(model, SEEDS)
    assert torch.equal(torch.rand(1), expected)
    for i, seed in enumerate(SEEDS):
        for name, tensor in single(seed).state_dict().items():
            assert torch.equal(pop.member_state_dict(i)[name], tensor)


def test_layers_vmap_cannot_batch_are_named():
    def with_batchnorm() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))

    with pytest.raises(NotVectorizable, match=r"layer '1' \(BatchNorm1d\).*local engine"):
        StackedModules.from_factory(with_batchnorm, SEEDS)


def test_copies_read_the_state_before_any_copy():
    pop = StackedModules.from_factory(model, SEEDS)
    before = {k: v.clone() for k, v in pop.params.items()}
    pop.copy_members([0, 1], [1, 0])  # a swap: each takes the other's weights from before the round
    for name, tensor in pop.params.items():
        assert torch.equal(tensor[0], before[name][1]) and torch.equal(tensor[1], before[name][0])


def test_momentum_switched_on_mid_run_matches_torch_optim():
    pop = StackedModules.from_factory(model, SEEDS)
    opt = BatchedSGD(pop.params, lr=[0.1, 0.1, 0.1], momentum=[0.0, 0.9, 0.0])
    alone = single(SEEDS[0])
    reference = torch.optim.SGD(alone.parameters(), lr=0.1, momentum=0.0)
    xs, ys = data(steps=6)
    for step, (x, y) in enumerate(zip(xs, ys)):
        if step == 2:  # explore turns member 0's momentum on, as torch.optim's param group would
            opt.set_hparams(0, {"momentum": 0.9})
            for group in reference.param_groups:
                group["momentum"] = 0.9
        opt.step(pop.gradients(F.cross_entropy, x, y)[0])
        reference.zero_grad()
        F.cross_entropy(alone(x[0]), y[0]).backward()
        reference.step()
    for name, tensor in alone.state_dict().items():
        torch.testing.assert_close(pop.member_state_dict(0)[name], tensor, rtol=1e-5, atol=1e-6)


def test_sgd_shortcuts_follow_momentum_writes_copies_and_loads(monkeypatch):
    """The eager step's host-side flags (every member moving, every buffer started) never outlive what they describe."""
    hparams = [{"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3}, {"lr": 0.05, "momentum": 0.8},
               {"lr": 0.2, "momentum": 0.0, "dampening": 0.2, "weight_decay": 1e-2}]
    pop = StackedModules.from_factory(model, SEEDS)
    opt = BatchedSGD(pop.params, **batched_hparams([{"dampening": 0.0, "weight_decay": 0.0, **h} for h in hparams]))
    alone = [single(seed) for seed in SEEDS]
    references = [torch.optim.SGD(m.parameters(), **h) for m, h in zip(alone, hparams)]
    paths = []

    def spy(method, letter):
        def call(*args):
            paths.append(letter)
            return method(*args)
        return call

    monkeypatch.setattr(opt, "_general_step", spy(opt._general_step, "g"))
    monkeypatch.setattr(opt, "_moving_step", spy(opt._moving_step, "m"))

    def set_momentum(member: int, momentum: float) -> None:
        opt.set_hparams(member, {"momentum": momentum})
        references[member].param_groups[0]["momentum"] = momentum

    xs, ys = data(steps=12)
    for step, (x, y) in enumerate(zip(xs, ys)):
        if step == 2:  # member 1 takes member 2's weights and its buffer, which has never started
            pop.copy_members([1], [2])
            opt.copy_members([1], [2])
            alone[1].load_state_dict(alone[2].state_dict())
            references[1] = torch.optim.SGD(alone[1].parameters(), **hparams[1])
            set_momentum(2, 0.5)  # now every member moves, two of them from unstarted buffers
            saved = pop.state_dict(), opt.state_dict(), copy.deepcopy((alone, references))
        if step == 5:
            set_momentum(0, 0.0)
        if step == 6:
            set_momentum(0, 0.9)  # its buffer resumes where it stopped
        if step == 9:  # back to step 2: the flags of steps 3 to 8 no longer hold
            pop.load_state_dict(saved[0])
            opt.load_state_dict(saved[1])
            alone, references = copy.deepcopy(saved[2])
        opt.step(pop.gradients(F.cross_entropy, x, y)[0])
        for i, (m, reference) in enumerate(zip(alone, references)):
            reference.zero_grad()
            F.cross_entropy(m(x[i]), y[i]).backward()
            reference.step()
            for name, tensor in m.state_dict().items():
                torch.testing.assert_close(pop.member_state_dict(i)[name], tensor, rtol=1e-5, atol=1e-6)
    assert "".join(paths) == "gggmmggmmgmm"  # the shortcut (m) ran, so the checks above covered it


def test_sgd_reads_hyperparameters_that_a_load_replaced():
    """Loaded values are new tensors as unwritten as the old ones: the step must still see them."""
    pop = StackedModules.from_factory(model, SEEDS)
    opt = BatchedSGD(pop.params, lr=0.1, momentum=0.9)
    xs, ys = data(steps=4)
    for x, y in zip(xs[:2], ys[:2]):
        opt.step(pop.gradients(F.cross_entropy, x, y)[0])
    state = opt.state_dict()
    state["values"]["momentum"][1] = 0.0
    opt.load_state_dict(state)
    for x, y in zip(xs[2:], ys[2:]):
        opt.step(pop.gradients(F.cross_entropy, x, y)[0])
    for name, slots in state["state"].items():  # torch.optim leaves the buffer alone while momentum is 0
        assert torch.equal(opt.state[name]["momentum_buffer"][1], slots["momentum_buffer"][1])


@pytest.mark.parametrize("case", ["adam", "adamw"])
def test_adam_follows_hyperparameters_written_mid_run(case):
    make_batched, make_torch, hparams = CASES[case]
    pop = StackedModules.from_factory(model, SEEDS)
    opt = make_batched(pop.params, batched_hparams(hparams))
    alone = [single(seed) for seed in SEEDS]
    references = [make_torch(m.parameters(), h) for m, h in zip(alone, hparams)]
    xs, ys = data()
    for step, (x, y) in enumerate(zip(xs, ys)):
        if step == 3:  # explore changes what the step derives from lr and the betas
            opt.set_hparams(1, {"lr": 0.02, "betas": (0.7, 0.95)})
            references[1].param_groups[0].update(lr=0.02, betas=(0.7, 0.95))
        opt.step(pop.gradients(F.cross_entropy, x, y)[0])
        for i, (m, reference) in enumerate(zip(alone, references)):
            reference.zero_grad()
            F.cross_entropy(m(x[i]), y[i]).backward()
            reference.step()
    for i, m in enumerate(alone):
        for name, tensor in m.state_dict().items():
            torch.testing.assert_close(pop.member_state_dict(i)[name], tensor, rtol=1e-5, atol=1e-6)


def test_hyperparameters_are_copied_from_the_callers_array():
    import numpy as np

    pop = StackedModules.from_factory(model, SEEDS)
    lr = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    opt = BatchedSGD(pop.params, lr=lr, momentum=0.9)
    lr[0] = 5.0  # the optimiser's step caches views of its own tensors; the caller's array is not one of them
    assert opt.values["lr"].tolist() == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize("write", ["set_hparams", "behind its back", "load_state_dict"])
def test_sgd_chooses_its_step_from_the_hyperparameters_however_they_were_written(write: str) -> None:
    """The host's copy of the hyperparameters (read without a sync) follows every kind of write."""
    params = {"w": torch.ones(3, 4)}
    sgd = BatchedSGD(params, lr=0.1, momentum=0.9, weight_decay=0.0)
    sgd.step({"w": torch.ones(3, 4)})
    sgd.step({"w": torch.ones(3, 4)})
    assert sgd._all_moving and not sgd._decays
    if write == "set_hparams":
        sgd.set_hparams(1, {"momentum": 0.0, "weight_decay": 0.01})
    elif write == "behind its back":
        sgd.values["momentum"][1] = 0.0
        sgd.values["weight_decay"][1] = 0.01
    else:
        state = sgd.state_dict()
        state["values"]["momentum"][1], state["values"]["weight_decay"][1] = 0.0, 0.01
        sgd.load_state_dict(state)
    before = params["w"].clone()
    sgd.step({"w": torch.ones(3, 4)})
    assert not sgd._all_moving and sgd._decays
    assert sgd.host["momentum"] == pytest.approx([0.9, 0.0, 0.9]) and sgd.host["weight_decay"][1] == pytest.approx(0.01)
    # member 1 now steps without momentum: lr * (gradient + weight decay * weight)
    assert torch.allclose(before[1] - params["w"][1], 0.1 * (1 + 0.01 * before[1]))
