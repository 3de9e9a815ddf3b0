"""The RL agents: a batched member trains as it would alone, exploit copies what it should, both examples run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from poptrain.experiment import load_spec
from poptrain.torch.envs import BatchedAcrobot, BatchedCartPole
from poptrain.torch.rl import ActorCriticPopulation

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import rl_a2c  # noqa: E402

HPARAMS = [{"lr": 3e-3, "ent_coef": 0.01, "gae_lambda": 0.95}, {"lr": 1e-3, "ent_coef": 0.1, "gae_lambda": 0.8},
           {"lr": 1e-2, "ent_coef": 0.001, "gae_lambda": 1.0}]
SEEDS = [11, 7, 3]


class SmallCartPole(ActorCriticPopulation):
    """Toy sizes, so that episodes end and exploits happen within a few short intervals."""

    env = BatchedCartPole
    num_envs, rollout, interval_steps, window, hidden = 4, 4, 64, 8, 16


class SmallAcrobot(SmallCartPole):
    env = BatchedAcrobot


def member_state(population: ActorCriticPopulation, i: int) -> dict[str, torch.Tensor]:
    """Member i's networks and Adam state, as tensors that can be compared."""
    state = {f"actor.{k}": v for k, v in population.actor.member_state_dict(i).items()}
    state.update({f"critic.{k}": v for k, v in population.critic.member_state_dict(i).items()})
    for name, slots in population.optimizer.state.items():
        for slot, t in slots.items():
            state[f"adam.{name}.{slot}"] = t[i].clone()
    return state


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("cls", [SmallCartPole, SmallAcrobot])
def test_a_member_trains_the_same_alone_and_inside_a_population(cls: type[ActorCriticPopulation]) -> None:
    alone = cls([HPARAMS[1]], [SEEDS[1]])
    together = cls(HPARAMS, SEEDS)
    for _ in range(3):
        alone.train()
        together.train()
    assert_same(member_state(alone, 0), member_state(together, 1))
    assert alone.evaluate()[0] == together.evaluate()[1]
    assert not torch.equal(together.actor.params["0.weight"][0], together.actor.params["0.weight"][1])  # not all alike
    assert alone.evaluate()[0]["env_steps"] == 3 * cls.interval_steps


def test_exploit_copies_networks_adam_state_and_recent_returns_and_restarts_the_episodes() -> None:
    population = SmallCartPole(HPARAMS, SEEDS)
    for _ in range(4):
        population.train()
    source = member_state(population, 2)
    recent, finished = population.recent[2].clone(), population.finished[2].item()
    assert finished > 0
    population.copy_members([0], [2])
    population.set_hparams(0, {"lr": 5e-4, "ent_coef": 0.05, "gae_lambda": 0.9})
    assert_same(member_state(population, 0), source)
    assert_same(member_state(population, 2), source)  # the source is untouched
    assert torch.equal(population.recent[0], recent) and population.finished[0].item() == finished
    assert population.evaluate()[0]["return"] == population.evaluate()[2]["return"]
    assert population.optimizer.values["lr"][0].item() == pytest.approx(5e-4)
    assert population.ent_coef[0].item() == pytest.approx(0.05) and population.gae_lambda[0].item() == pytest.approx(0.9)
    assert population.optimizer.values["lr"][2].item() == pytest.approx(1e-2)  # the source keeps its own
    mine = slice(0, population.num_envs)
    assert torch.all(population.envs.elapsed[mine] == 0) and torch.all(population.returns[0] == 0)
    assert torch.all(population.envs.state[mine].abs() <= 0.05)  # fresh CartPole episodes
    population.train()  # and training goes on
    assert population.finished[0].item() > finished


def test_episode_returns_are_kept_per_member() -> None:
    """On CartPole an episode's return is its length: every recorded return is a whole number of steps."""
    population = SmallCartPole(HPARAMS, SEEDS)
    population.train()
    population.train()
    for i in range(3):
        n = min(population.finished[i].item(), population.window)
        kept = population.recent[i, :n]
        assert n > 0 and torch.all(kept >= 8) and torch.all(kept == kept.round())
        assert population.evaluate()[i]["return"] == pytest.approx(kept.mean().item())


def test_a_population_resumes_exactly_from_its_state_dict() -> None:
    a = SmallCartPole(HPARAMS, SEEDS)
    a.train()
    saved = a.state_dict()
    a.train()
    b = SmallCartPole([HPARAMS[0]] * 3, [0, 0, 0])
    b.load_state_dict(saved)
    b.train()
    for i in range(3):
        assert_same(member_state(a, i), member_state(b, i))
    assert a.evaluate() == b.evaluate()


def test_the_vectorized_engine_refuses_an_unknown_hyperparameter() -> None:
    population = SmallCartPole(HPARAMS, SEEDS)
    with pytest.raises(ValueError, match="cannot vary 'gamma'"):
        population.set_hparams(0, {"gamma": 0.9})


def test_the_single_agent_copies_actor_critic_and_adam_and_applies_new_hparams(monkeypatch) -> None:
    monkeypatch.setattr(rl_a2c, "INTERVAL_STEPS", 128)
    a, b = rl_a2c.CartPole(HPARAMS[0], 1), rl_a2c.CartPole(HPARAMS[1], 2)
    a.train()
    assert a.evaluate()["env_steps"] == 128
    state = a.state_dict()
    b.load_state_dict(state)
    b.set_hparams({**HPARAMS[1], "lr": 2e-4})
    for k, v in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[k], v), k
    assert torch.equal(b.optimizer.state_dict()["state"][0]["exp_avg"], a.optimizer.state_dict()["state"][0]["exp_avg"])
    assert b.optimizer.param_groups[0]["lr"] == 2e-4 and a.optimizer.param_groups[0]["lr"] == 3e-3
    assert list(b.recent) == list(a.recent) and b.evaluate()["return"] == a.evaluate()["return"]
    b.train()
    assert not torch.equal(b.model.state_dict()["actor.0.weight"], state["model"]["actor.0.weight"])  # a copy, not a view


def small(name: str, folder: Path, **changes):
    """An example at CI size: 2 members, 3 intervals of 256 environment steps, ready every interval."""
    sizes = {"population": 2, "steps": 3, **changes}
    exp = load_spec(EXAMPLES / f"{name}.toml", storage=f"sqlite:///{folder}/rl.db", **sizes)
    exp.ready = type(exp.ready)(intervals=1)
    return exp


@pytest.fixture
def short_intervals(monkeypatch):
    monkeypatch.setattr(rl_a2c, "INTERVAL_STEPS", 256)
    monkeypatch.setattr(rl_a2c.BatchedSettings, "interval_steps", 256)


@pytest.mark.parametrize("name", ["rl_cartpole_vectorized", "rl_acrobot"])
def test_the_vectorized_examples_run_small(tmp_path: Path, name: str, short_intervals) -> None:
    result = small(name, tmp_path).run()
    members = result.members()
    assert list(members.step) == [3, 3] and members.score.notna().all()
    assert {"lr", "ent_coef", "gae_lambda"} <= set(members.columns)
    assert len(result.events()) >= 1  # with two members and ready every interval, the worse one copies the better


def test_the_local_example_runs_small(tmp_path: Path) -> None:
    """The local engine imports rl_a2c afresh in its workers: full-size intervals (2,048 steps, about 0.2 s)."""
    result = small("rl_cartpole", tmp_path, steps=2).run()
    members = result.members()
    assert list(members.step) == [2, 2] and (members.score > 5).all()
