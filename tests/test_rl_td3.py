"""The TD3 population: a member trains as it would alone, exploit copies its replay buffer (or not), it resumes, it runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from poptrain.engines import Vectorized
from poptrain.experiment import load_spec
from poptrain.torch.envs import BatchedPendulum
from poptrain.torch.td3 import TD3Population

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import rl_td3  # noqa: E402
from test_host_syncs import counting_host_reads  # noqa: E402
from test_rl import assert_same  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HPARAMS = [{"lr": 1e-3, "tau": 0.005, "expl_noise": 0.1, "policy_noise": 0.2},
           {"lr": 3e-3, "tau": 0.02, "expl_noise": 0.3, "policy_noise": 0.1},
           {"lr": 3e-4, "tau": 0.01, "expl_noise": 0.2, "policy_noise": 0.3}]
SEEDS = [11, 7, 3]


class SmallPendulum(TD3Population):
    """Toy sizes: updates from the second interval on, and a buffer that wraps around in the fourth."""

    env = BatchedPendulum
    num_envs, interval_steps, learning_starts, batch_size, buffer_size, hidden, window = 2, 40, 40, 8, 120, 16, 2


class SmallOwnBuffer(SmallPendulum):
    copy_buffer = False


def member_state(population: TD3Population, i: int) -> dict[str, torch.Tensor]:
    """Member i's networks, targets and both Adam states, as tensors that can be compared."""
    state = {}
    for name, net in population.networks().items():
        state.update({f"{name}.{k}": v for k, v in net.member_state_dict(i).items()})
        state.update({f"target.{name}.{k}": v[i].clone() for k, v in population.targets[name].items()})
    for label, optimizer in (("actor_adam", population.actor_optimizer), ("critic_adam", population.optimizer)):
        for name, slots in optimizer.state.items():
            state.update({f"{label}.{name}.{slot}": t[i].clone() for slot, t in slots.items()})
    return state


def buffer_of(population: TD3Population, i: int) -> dict[str, torch.Tensor]:
    return {k: v[i].clone() for k, v in population.buffer.data.items()}


def test_a_member_trains_the_same_alone_and_inside_a_population() -> None:
    alone, together = SmallPendulum([HPARAMS[1]], [SEEDS[1]]), SmallPendulum(HPARAMS, SEEDS)
    for _ in range(3):
        alone.train()
        together.train()
    assert together.updates == 41 and together.buffer.stored == 120
    assert_same(member_state(alone, 0), member_state(together, 1))
    assert_same(buffer_of(alone, 0), buffer_of(together, 1))
    assert alone.evaluate()[0] == together.evaluate()[1]
    assert not torch.equal(together.buffer.data["obs"][0], together.buffer.data["obs"][1])  # each its own experience
    start = member_state(SmallPendulum([HPARAMS[1]], [SEEDS[1]]), 0)
    assert not torch.equal(start["actor.0.weight"], alone.actor.params["0.weight"][0])  # it learned
    assert not torch.equal(alone.targets["critic1"]["0.weight"], alone.critic1.params["0.weight"])  # targets lag


@pytest.mark.parametrize("cls", [SmallPendulum, SmallOwnBuffer])
def test_exploit_copies_the_replay_buffer_with_the_weights_unless_told_not_to(cls: type[TD3Population]) -> None:
    population = cls(HPARAMS, SEEDS)
    population.envs.elapsed.fill_(BatchedPendulum.max_steps - 30)  # episodes end within the interval
    for _ in range(2):
        population.train()
    source, own = member_state(population, 2), buffer_of(population, 0)
    source_buffer, recent = buffer_of(population, 2), population.recent[2].clone()
    assert population.finished[2].item() > 0
    population.copy_members([0], [2])
    population.set_hparams(0, {"lr": 5e-4, "tau": 0.03, "expl_noise": 0.4, "policy_noise": 0.25})
    assert_same(member_state(population, 0), source)
    assert_same(member_state(population, 2), source)  # the source is untouched
    assert_same(buffer_of(population, 2), source_buffer)
    # the copy's buffer equals its source's at the copy, or stays its own
    assert_same(buffer_of(population, 0), source_buffer if cls.copy_buffer else own)
    assert torch.equal(population.recent[0], recent) and torch.all(population.returns[0] == 0)
    assert torch.all(population.envs.elapsed[:population.num_envs] == 0)  # the copy's episodes restart
    assert population.actor_optimizer.values["lr"][0].item() == pytest.approx(5e-4)
    assert population.optimizer.values["lr"][0].item() == pytest.approx(5e-4)
    assert population.tau[0].item() == pytest.approx(0.03) and population.expl_noise[0].item() == pytest.approx(0.4)
    assert population.policy_noise[2].item() == pytest.approx(0.3)  # the source keeps its own
    population.train()  # and training goes on, into the copied buffer
    assert not torch.equal(population.buffer.data["obs"][0], population.buffer.data["obs"][2])


def test_a_population_resumes_exactly_from_its_state_dict() -> None:
    a = SmallPendulum(HPARAMS, SEEDS)
    a.train()
    a.train()
    saved = a.state_dict()
    a.train()
    b = SmallPendulum([HPARAMS[0]] * 3, [0, 0, 0])
    b.load_state_dict(saved)
    b.train()
    for i in range(3):
        assert_same(member_state(a, i), member_state(b, i))
        assert_same(buffer_of(a, i), buffer_of(b, i))
    assert a.evaluate() == b.evaluate()


def test_an_interval_reads_nothing_back_and_unknown_hparams_are_refused() -> None:
    population = SmallPendulum(HPARAMS[:2], SEEDS[:2])
    population.envs.elapsed.fill_(BatchedPendulum.max_steps - 10)  # episodes are cut inside the interval
    for _ in range(2):  # random actions, then updates
        with counting_host_reads() as counts:
            population.train()
        assert counts == {}
        population.evaluate()
        population.copy_members([0], [1])
    assert population.finished.min() > 0
    with pytest.raises(ValueError, match="cannot vary 'gamma'"):
        population.set_hparams(0, {"gamma": 0.9})


def test_the_pendulum_example_runs_small_with_exploits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"interval_steps": 50, "learning_starts": 50, "batch_size": 16, "hidden": 16}.items():
        monkeypatch.setattr(rl_td3.Pendulum, name, value)
    exp = load_spec(EXAMPLES / "rl_pendulum.toml", storage=f"sqlite:///{tmp_path}/rl.db", population=2, steps=3)
    exp.ready = type(exp.ready)(intervals=1)
    result = exp.run(engine=Vectorized(threads=1))
    members = result.members()
    assert list(members.step) == [3, 3] and members.score.notna().all() and (members.score < 0).all()
    assert {"lr", "tau", "expl_noise", "policy_noise"} <= set(members.columns)
    assert len(result.events()) >= 1  # with two members and ready every interval, the worse one copies the better
