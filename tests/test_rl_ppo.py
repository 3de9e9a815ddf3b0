"""PPO agents: a batched member trains as it would alone, on discrete and continuous actions; exploit copies
the Gaussian policy's spread; the single agents and the examples run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import poptrain
from poptrain.engines import Vectorized
from poptrain.experiment import load_spec
from poptrain.torch.envs import BatchedCartPole, BatchedPendulum
from poptrain.torch.ppo import PPOPopulation, clipped_surrogate, normalise, value_error

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import rl_ppo  # noqa: E402
from test_rl import assert_same, member_state, small  # noqa: E402

HPARAMS = [{"lr": 3e-3, "ent_coef": 0.01, "gae_lambda": 0.95, "clip_range": 0.2},
           {"lr": 1e-3, "ent_coef": 0.001, "gae_lambda": 0.8, "clip_range": 0.1},
           {"lr": 1e-2, "ent_coef": 0.0, "gae_lambda": 1.0, "clip_range": 0.3}]
SEEDS = [11, 7, 3]

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # two threads made these tiny steps 15 times slower here


class SmallCartPole(PPOPopulation):
    """Toy sizes: 2 updates an interval, each 2 epochs of 2 minibatches; value clipping on."""

    env = BatchedCartPole
    num_envs, rollout, interval_steps, window, hidden, epochs, minibatches, clip_value = 4, 8, 64, 8, 16, 2, 2, True


class SmallPendulum(SmallCartPole):
    env = BatchedPendulum
    gamma, reward_scale, clip_value = 0.9, 0.1, False


def ppo_state(population: PPOPopulation, i: int) -> dict[str, torch.Tensor]:
    state = member_state(population, i)
    if population.continuous:
        state["log_std"] = population.log_std[i].clone()
    return state


@pytest.mark.parametrize("cls", [SmallCartPole, SmallPendulum])
def test_a_ppo_member_trains_the_same_alone_and_inside_a_population(cls: type[PPOPopulation]) -> None:
    alone = cls([HPARAMS[1]], [SEEDS[1]])
    together = cls(HPARAMS, SEEDS)
    start = ppo_state(together, 1)
    for _ in range(3):
        alone.train()
        together.train()
    assert_same(ppo_state(alone, 0), ppo_state(together, 1))
    assert alone.evaluate()[0] == together.evaluate()[1] and alone.evaluate()[0]["env_steps"] == 3 * cls.interval_steps
    assert not torch.equal(ppo_state(together, 1)["actor.0.weight"], start["actor.0.weight"])  # it learned
    assert together.optimizer.state["_"]["step"][1].item() == 3 * 2 * 2 * 2  # updates x epochs x minibatches
    if cls is SmallPendulum:
        assert together.log_std.shape == (3, 1) and not torch.equal(together.log_std[1], start["log_std"])


def test_exploit_copies_the_gaussian_spread_and_the_clip_range_is_the_members_own() -> None:
    population = SmallPendulum(HPARAMS, SEEDS)
    population.train()
    source = ppo_state(population, 2)
    population.copy_members([0], [2])
    population.set_hparams(0, {**HPARAMS[0], "clip_range": 0.15})
    assert_same(ppo_state(population, 0), source)
    assert population.clip_range.tolist() == pytest.approx([0.15, 0.1, 0.3])
    saved = population.state_dict()
    population.train()
    restored = SmallPendulum(HPARAMS, [0, 0, 0])
    restored.load_state_dict(saved)
    restored.train()
    for i in range(3):
        assert_same(ppo_state(population, i), ppo_state(restored, i))
    with pytest.raises(ValueError, match="cannot vary 'gamma'"):
        population.set_hparams(0, {"gamma": 0.9})


def test_the_clipped_surrogate_stops_pushing_past_the_clip_range() -> None:
    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.5, 0.5])).requires_grad_(True)
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0])
    loss = clipped_surrogate(logp, old, advantages, 0.2)
    loss.sum().backward()
    # past the range in the advantage's direction: clipped, no gradient; against it: the unclipped ratio
    assert loss.tolist() == pytest.approx([-1.2, 0.8, 1.5, -0.5]) and logp.grad.tolist() == pytest.approx([0, 0, 1.5, -0.5])
    assert value_error(torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([0.0]), 0.5).item() == 4.5
    assert value_error(torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([4.0]), 0.5).item() == 3.125  # 1.5, 2.5 from 4
    rows = normalise(torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]]))
    assert rows.mean(1).abs().max() < 1e-6 and torch.allclose(rows.std(1), torch.ones(2))


def test_the_single_pendulum_agent_copies_its_spread_and_trains_on(monkeypatch) -> None:
    monkeypatch.setattr(rl_ppo, "INTERVAL_STEPS", 512)
    monkeypatch.setattr(rl_ppo.Pendulum, "epochs", 2)
    a, b = rl_ppo.Pendulum(HPARAMS[0], 1), rl_ppo.Pendulum(HPARAMS[1], 2)
    before = a.model.log_std.detach().clone()
    a.train()
    assert a.evaluate()["env_steps"] == 512 and not torch.equal(a.model.log_std.detach(), before)
    b.load_state_dict(a.state_dict())
    b.set_hparams({**HPARAMS[1], "lr": 2e-4})
    assert torch.equal(b.model.log_std, a.model.log_std) and b.optimizer.param_groups[0]["lr"] == 2e-4
    b.train()
    assert b.evaluate()["env_steps"] == 1024 and not torch.equal(b.model.log_std, a.model.log_std)


def test_the_vectorized_pendulum_example_runs_small(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(rl_ppo.BatchedSettings, "interval_steps", 512)
    monkeypatch.setattr(rl_ppo.PendulumPopulation, "epochs", 2)
    result = small("rl_ppo_pendulum", tmp_path).run(engine=Vectorized(threads=1))
    members = result.members()
    assert list(members.step) == [3, 3] and (members.score < 0).all()
    assert {"lr", "clip_range", "ent_coef", "gae_lambda"} <= set(members.columns)
    assert len(result.events()) >= 1



def test_two_processes_of_the_own_ppo_script_train_one_population(tmp_path: Path) -> None:
    """examples/ppo_own_loop.py, run as two processes, at toy size: every member done, exploits applied."""
    url = f"sqlite:///{tmp_path}/ppo.db"
    exp = load_spec(EXAMPLES / "ppo_own_loop.toml", storage=url, population=2, steps=4)
    exp.ready = type(exp.ready)(intervals=2)
    exp.synchronous = True  # generations: the bottom member copies the top one at step 2 whatever the timing
    exp.create()
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent / "src")}
    sizes = ["--num-envs", "2", "--num-steps", "64", "--interval-steps", "256", "--update-epochs", "2"]
    procs = [subprocess.Popen([sys.executable, str(EXAMPLES / "ppo_own_loop.py"), url, *sizes], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        try:
            assert p.wait(120) == 0, p.stderr.read()
        finally:
            p.kill()
    result = poptrain.load(url, "ppo")
    members = result.members()
    assert set(members.status) == {"done"} and set(members.step) == {4} and (members.score > 5).all()
    assert len(result.frame()) == 2 * 4 and len(result.events()) >= 1  # the bottom member copied at step 2
    for event in result.events():  # the copy trained on with the explored values, reported with its next score
        assert event.source != event.member and event.new_hparams != event.old_hparams
