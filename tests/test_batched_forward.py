"""A linear stack runs as batched matrix products; it must give what vmap gives, member by member."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poptrain.torch.stacked import StackedModules, linear_stack

SEEDS = [3, 4, 5, 6]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Sequential(nn.Linear(16, 8), nn.Tanh()), nn.Linear(8, 3))


def batch(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(len(SEEDS), *shape, 6, generator=g), torch.randint(0, 3, (len(SEEDS), *shape), generator=g)


def under_vmap(pop: StackedModules) -> StackedModules:
    """The same population with the direct path switched off."""
    twin = StackedModules.from_factory(mlp, SEEDS)
    twin.layers = None
    twin.load_state_dict(pop.state_dict())
    return twin


def test_linear_stacks_are_recognised_and_other_models_are_not():
    layers = linear_stack(mlp())
    assert [x if isinstance(x, str) else type(x) for x in layers] == ["0.", nn.GELU, "2.0.", nn.Tanh, "3."]
    assert linear_stack(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) is None
    assert linear_stack(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))) is None
    assert linear_stack(nn.Sequential(nn.Conv2d(1, 2, 3))) is None
    assert linear_stack(nn.Linear(4, 2)) is None  # not a Sequential: its forward could be anything

    class Residual(nn.Sequential):
        def forward(self, x):
            return x + super().forward(x)

    assert linear_stack(Residual(nn.Linear(4, 4))) is None
    assert linear_stack(nn.Sequential(nn.Linear(4, 4), Residual(nn.Linear(4, 4)))) is None


def test_direct_gradients_and_outputs_equal_vmaps():
    pop = StackedModules.from_factory(mlp, SEEDS)
    assert pop.layers is not None
    twin = under_vmap(pop)
    x, y = batch(5)
    grads, losses = pop.gradients(F.cross_entropy, x, y)
    expected, expected_losses = twin.gradients(F.cross_entropy, x, y)
    assert set(grads) == set(expected)
    for k in grads:
        torch.testing.assert_close(grads[k], expected[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses, expected_losses)
    torch.testing.assert_close(pop.forward(x), twin.forward(x), rtol=1e-5, atol=1e-6)


def test_extra_axes_before_the_features_are_kept():
    pop = StackedModules.from_factory(mlp, SEEDS)
    x, _ = batch(5, 7)  # [P, B, T, features], as a sequence model would see
    out = pop.forward(x)
    assert out.shape == (len(SEEDS), 5, 7, 3)
    torch.testing.assert_close(out, under_vmap(pop).forward(x), rtol=1e-5, atol=1e-6)


def test_each_member_equals_its_own_model():
    pop = StackedModules.from_factory(mlp, SEEDS)
    x, _ = batch(5)
    out = pop.forward(x)
    for i, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        model = mlp()
        torch.testing.assert_close(out[i], model(x[i]), rtol=1e-5, atol=1e-6)


def dropout_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))


def dropout_cnn() -> nn.Module:  # not a linear stack: runs under vmap
    return nn.Sequential(nn.Unflatten(1, (1, 6)), nn.Conv1d(1, 4, 3), nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3))


def test_dropout_masks_differ_per_member_in_training_and_are_off_when_scoring():
    for factory in (dropout_mlp, dropout_cnn):
        pop = StackedModules.from_factory(factory, [7, 7])  # two identical members
        x = torch.randn(1, 10, 6).expand(2, 10, 6)
        y = torch.zeros(2, 10, dtype=torch.long)
        _, losses = pop.gradients(F.cross_entropy, x, y)
        assert losses[0] != losses[1], factory.__name__  # each member draws its own mask
        scored = pop.forward(x)
        torch.testing.assert_close(scored[0], scored[1])
        torch.manual_seed(7)
        torch.testing.assert_close(scored[0], factory().eval()(x[0]), rtol=1e-5, atol=1e-6)


def _members_agree(factory, x: torch.Tensor, y: torch.Tensor) -> StackedModules:
    """Direct outputs and gradients equal vmap's, and each member's outputs equal its own model's."""
    models = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        models.append(factory())
    pop, twin = StackedModules(models), StackedModules(models)
    twin.layers = None
    torch.testing.assert_close(pop.forward(x), twin.forward(x))
    torch.testing.assert_close(pop.forward(x), torch.stack([m.eval()(x[i]) for i, m in enumerate(models)]))
    grads, losses = pop.gradients(F.cross_entropy, x, y)
    twin_grads, twin_losses = twin.gradients(F.cross_entropy, x, y)
    torch.testing.assert_close(losses, twin_losses)
    for name in grads:
        torch.testing.assert_close(grads[name], twin_grads[name])
    return pop


def test_a_layer_used_twice_runs_twice():
    def shared_activation() -> nn.Module:
        act = nn.ReLU()  # one module at two positions: named_children yields it once
        return nn.Sequential(nn.Linear(6, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 3))

    def tied() -> nn.Module:
        layer = nn.Linear(6, 6)  # one weight, stacked under its first name
        return nn.Sequential(nn.Sequential(layer, nn.Tanh()), nn.Sequential(layer), nn.Linear(6, 3))

    x, y = batch(5)
    assert _members_agree(shared_activation, x, y).layers is not None
    assert _members_agree(tied, x, y).layers is not None


def test_hooked_layers_run_under_vmap():
    def hooked() -> nn.Module:
        model = mlp()
        model[0].register_forward_hook(lambda module, args, out: out * 0.5)
        return model

    def pre_hooked() -> nn.Module:
        model = mlp()
        model.register_forward_pre_hook(lambda module, args: (args[0] * 2,))
        return model

    x, y = batch(5)
    assert _members_agree(hooked, x, y).layers is None
    assert _members_agree(pre_hooked, x, y).layers is None


def test_inputs_without_the_member_axis_are_refused():
    pop = StackedModules.from_factory(mlp, SEEDS)
    with pytest.raises(ValueError, match="members on the first axis"):
        pop.forward(torch.randn(2 * len(SEEDS), 5, 6))  # reshaping would mix members' rows


def test_a_layer_the_user_put_in_eval_mode_stays_there():
    def frozen_dropout() -> nn.Module:
        model = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.5), nn.Linear(32, 3))
        model[1].eval()
        return model

    pop = StackedModules.from_factory(frozen_dropout, [7, 7])
    x = torch.randn(1, 10, 6).expand(2, 10, 6)
    _, losses = pop.gradients(F.cross_entropy, x, torch.zeros(2, 10, dtype=torch.long))
    assert losses[0] == losses[1]  # no mask drawn in training either


def test_backward_by_hand_equals_autograds_for_every_activation_it_knows():
    def known() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8, bias=False), nn.Tanh(),
                             nn.Sequential(nn.Linear(8, 8), nn.Sigmoid(), nn.Identity()), nn.Linear(8, 3))

    pop = StackedModules.from_factory(known, SEEDS)
    twin = StackedModules.from_factory(known, SEEDS)
    assert pop.direct and twin.direct
    twin.direct = False  # autograd through the same batched products
    x, y = batch(9)
    y[0, :4] = -100  # F.cross_entropy's ignore_index: no loss, no gradient, counted in the member's mean
    grads, losses = pop.gradients(F.cross_entropy, x, y)
    expected, expected_losses = twin.gradients(F.cross_entropy, x, y)
    assert list(grads) == list(expected) == list(pop.params)
    for k in grads:
        torch.testing.assert_close(grads[k], expected[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses, expected_losses)
    assert losses[0] < losses[1:].min()  # the ignored targets lowered member 0's mean


def test_backward_by_hand_is_used_only_where_it_applies():
    assert StackedModules.from_factory(dropout_mlp, SEEDS).direct is False  # a mask to draw: autograd
    assert StackedModules.from_factory(mlp, SEEDS).direct is False  # GELU: autograd

    def tied() -> nn.Module:
        layer = nn.Linear(6, 6)
        return nn.Sequential(layer, nn.ReLU(), layer, nn.Linear(6, 3))

    assert StackedModules.from_factory(tied, SEEDS).direct is False  # one weight's gradient from two places

    def hooked() -> nn.Module:
        model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
        model[1].register_forward_hook(lambda module, args, out: out * 2)
        return model

    assert StackedModules.from_factory(hooked, SEEDS).direct is False

    def relu_mlp() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))

    pop, twin = StackedModules.from_factory(relu_mlp, SEEDS), StackedModules.from_factory(relu_mlp, SEEDS)
    assert pop.direct
    x, y = batch(5)
    grads, _ = pop.gradients(lambda out, t: F.cross_entropy(out, t), x, y)  # another loss function: autograd
    for k, g in twin.gradients(F.cross_entropy, x, y)[0].items():
        torch.testing.assert_close(grads[k], g, rtol=1e-5, atol=1e-6)


def test_scoring_leaves_the_inputs_as_they_were():
    def leading_activation() -> nn.Module:  # the first ReLU sees the caller's tensor: never overwritten
        return nn.Sequential(nn.ReLU(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))

    x, y = batch(5)
    before = x.clone()
    pop = _members_agree(leading_activation, x, y)
    assert pop.layers is not None
    pop.forward(x)
    assert torch.equal(x, before)
