"""A population in shards: a copy between shards is the copy one process makes, and a sharded file reads back."""

from __future__ import annotations

import pytest
import torch

import poptrain
from conftest import EXAMPLES
from mlp_digits import MLPDigits, MLPDigitsPopulation
from poptrain.engines import Vectorized
from poptrain.engines.shards import ShardedPopulation, copies_more_than_it_exports, split
from poptrain.wire import dumps
from poptrain.experiment import load_spec
from poptrain.store import CheckpointStore
from poptrain.store.checkpoints import SHARDS


def small(cls: type, **settings: int) -> type:
    """`cls` with shorter intervals, so a test trains it in a second."""
    return type(f"Small{cls.__name__}", (cls,), settings)


def populations() -> list:
    import gan_digits
    import rl_a2c
    import rl_ppo
    import rl_td3

    return [pytest.param(MLPDigitsPopulation, [{"lr": 0.05 * (i + 1), "momentum": 0.9, "weight_decay": 1e-4}
                                               for i in range(4)], id="mlp_digits"),
            pytest.param(small(rl_a2c.CartPolePopulation, interval_steps=128),
                         [{"lr": 1e-3 * (i + 1), "ent_coef": 0.01, "gae_lambda": 0.95} for i in range(4)], id="a2c"),
            pytest.param(small(rl_ppo.PendulumPopulation, interval_steps=512),
                         [{"lr": 1e-3 * (i + 1), "ent_coef": 0.0, "gae_lambda": 0.95, "clip_range": 0.2} for i in range(4)],
                         id="ppo-pendulum"),
            pytest.param(small(rl_td3.Pendulum, interval_steps=40, learning_starts=20, buffer_size=80, batch_size=8),
                         [{"lr": 1e-3 * (i + 1), "tau": 0.005, "expl_noise": 0.1, "policy_noise": 0.2}
                          for i in range(4)], id="td3"),
            pytest.param(gan_digits.DigitsGANPopulation, [{"lr_g": 1e-3 * (i + 1), "lr_d": 2e-3 / (i + 1)}
                                                          for i in range(4)], id="gan")]


@pytest.mark.parametrize("cls, hparams", populations())
def test_a_copy_between_two_shards_trains_on_as_a_copy_in_one_population(cls, hparams):
    """Members 0-1 and 2-3 in two shards against all four in one: the same scores before and after exploits that
    cross the shards both ways, so a sharded population decides as one does."""
    whole = cls(hparams, [0, 1, 2, 3])
    left, right = cls(hparams[:2], [0, 1]), cls(hparams[2:], [2, 3])
    for population in (whole, left, right):
        population.train()
    assert whole.evaluate() == left.evaluate() + right.evaluate()
    whole.copy_members([0, 3], [2, 1])  # 0 <- 2 and 3 <- 1: each copy reads the state from before any copy
    from_right, from_left = right.export_members([0]), left.export_members([1])
    left.import_members([0], from_right)
    right.import_members([1], from_left)
    for population in (whole, left, right):
        population.train()
    assert whole.evaluate() == left.evaluate() + right.evaluate()


def test_the_best_member_of_a_sharded_run_loads_as_an_ordinary_state_dict(tmp_path):
    result = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/s.db", population=5,
                       steps=6).run(engine=Vectorized(shards=2))
    assert set(result.members().status) == {"done"} and len(result.events()) > 0
    assert result.best().load_state()["model"].keys() == MLPDigits({**result.best().hparams}, 0).model.state_dict().keys()
    files = CheckpointStore(result.spec["checkpoints"])
    for member in result.store.members("mlp_digits"):  # each shard's (of 3 and 2 members)
        newest = result.store.checkpoints("mlp_digits", member.id)[0]
        alone = MLPDigits(member.hparams, 0)
        alone.model.load_state_dict(files.load(newest.key, newest.checksum)["model"])
        assert alone.evaluate()["accuracy"] == pytest.approx(member.last_score, abs=1e-6)


def test_a_population_whose_copy_takes_more_than_it_exports_is_refused_in_shards():
    class CopiesMore(MLPDigitsPopulation):
        def copy_members(self, dsts, srcs):  # a copy that would take more than export/import carry between shards
            super().copy_members(dsts, srcs)

    class ExportsToo(CopiesMore):
        export_members, import_members = MLPDigitsPopulation.export_members, MLPDigitsPopulation.import_members

    assert copies_more_than_it_exports(CopiesMore)
    assert not copies_more_than_it_exports(ExportsToo) and not copies_more_than_it_exports(MLPDigitsPopulation)
    hparams = [{"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}] * 2
    population = ShardedPopulation(CopiesMore, hparams, [0, 1], ["cpu", "cpu"])
    try:
        with pytest.raises(poptrain.SpecError, match="CopiesMore cannot be sharded: it overrides copy_members"):
            population.copy_members([0], [1])
    finally:
        population.close()


def test_shards_and_devices_are_checked_in_one_line():
    for bad, message in [(dict(shards=0), "shards must be a positive integer"),
                         (dict(devices=[]), "devices must list torch devices"),
                         (dict(devices=["cpu", "cpu"], shards=3), "one shard runs on each device"),
                         (dict(devices=["cpu", "cpu"], device="cpu"), "not both")]:
        with pytest.raises(poptrain.SpecError, match=message):
            Vectorized(**bad)
    assert Vectorized(devices=["cpu", "cpu"]).placement() == ["cpu", "cpu"]
    assert Vectorized(shards=1).placement() == []  # one shard: the population in this process, as without shards
    assert Vectorized().resolved_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_population_splits_into_contiguous_shards_as_even_as_can_be():
    assert split(5, 2) == [3, 2] and split(4, 3) == [2, 1, 1] and split(6, 3) == [2, 2, 2]
    assert sum(split(1000, 7)) == 1000 and max(split(1000, 7)) - min(split(1000, 7)) <= 1


def test_more_shards_than_members_is_one_line(tmp_path):
    exp = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/m.db", population=2, steps=2)
    with pytest.raises(poptrain.SpecError, match="3 shards for a population of 2"):
        exp.run(engine=Vectorized(shards=3))
    members = poptrain.load(exp.storage, "mlp_digits").store.members("mlp_digits")
    assert {(m.status, m.failures, m.worker) for m in members} == {("active", 0, None)}  # nothing charged or held


def test_the_cli_runs_a_population_in_shards(tmp_path):
    from poptrain.cli import main

    storage = f"sqlite:///{tmp_path}/c.db"
    assert main(["run", f"{EXAMPLES}/mlp_digits.toml", "--storage", storage, "--engine", "vectorized",
                 "--devices", "cpu,cpu", "--quiet"]) == 0
    result = poptrain.load(storage, "mlp_digits")
    assert set(result.members().step) == {30}
    newest = result.store.checkpoints("mlp_digits", 0)[0]
    assert CheckpointStore(result.spec["checkpoints"]).load(newest.key.partition("#")[0], newest.checksum)[SHARDS] == [4, 4]


def test_a_reply_a_shard_cannot_send_is_the_batched_steps_failure_not_a_hang(tmp_path):
    from trainables import Traced, TracedPopulation

    class Unsendable(TracedPopulation):
        def evaluate(self) -> list:
            return [{"score": lambda: 0.0} for _ in self.x]  # what pickle cannot carry to the driver

    class Twin(Traced):
        vectorized = Unsendable

    exp = poptrain.Experiment(name="u", trainable=Twin, space={"lr": poptrain.LogUniform(0.01, 0.3)}, metric="score",
                              population=2, steps=3, storage=f"sqlite:///{tmp_path}/u.db", max_failures=0)
    result = exp.run(engine=Vectorized(shards=2))
    members = result.store.members("u")
    assert {m.status for m in members} == {"failed"} and "reply cannot be sent" in members[0].error


def test_the_pipe_carries_tensors_exactly_whatever_their_type_and_layout():
    import pickle

    g = torch.Generator().manual_seed(3)
    message = {"weights": torch.randn(4, 3, 2), "rng": [g.get_state()], "view": torch.arange(12.0).view(3, 4).t(),
               "scalar": torch.tensor(2.5, dtype=torch.float64), "mask": torch.tensor([True, False]),
               "bf16": torch.ones(3, dtype=torch.bfloat16), "neg": torch.randn(3, dtype=torch.complex64).conj()}
    back = pickle.loads(dumps(message))
    for key, sent in message.items():
        for a, b in zip(sent if isinstance(sent, list) else [sent], back[key] if isinstance(sent, list) else [back[key]]):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.resolve_conj(), b), key
    back["weights"].add_(1)  # writable: a shard trains on what it was sent
    assert not torch.equal(back["weights"], message["weights"])
