"""Fit before you start: the vectorized engine estimates the population's memory and refuses one that would not fit."""

from __future__ import annotations

import os
import re

import pytest
import torch

import poptrain
from conftest import EXAMPLES
from mlp_digits import MLPDigitsPopulation
from poptrain.engines import Vectorized
from poptrain.errors import SpecError
from poptrain.experiment import load_spec
from poptrain.torch.memory import available, check_fits, estimate
from test_rl import SmallCartPole

HP = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
MLP_PARAMS = 64 * 128 + 128 + 128 * 10 + 10


def test_a_member_costs_at_least_its_weights_momentum_and_gradients_and_the_global_rng_is_untouched() -> None:
    before = torch.random.get_rng_state()
    guess = estimate(MLPDigitsPopulation, [HP], [0, 1])
    assert torch.equal(torch.random.get_rng_state(), before)
    assert guess.per_member >= 3 * 4 * MLP_PARAMS  # weights, momentum buffer, gradients (float32)
    assert guess.per_member < 2**21  # and not wildly more: one batch of 32 is small
    assert not guess.measured  # on the CPU, an upper bound
    assert guess.total(10) == guess.shared + 10 * guess.per_member
    assert guess.largest(guess.total(7) + guess.per_member - 1) == 7


def test_an_rl_population_is_estimated_from_one_update() -> None:
    guess = estimate(SmallCartPole, [{"lr": 1e-3, "ent_coef": 0.01, "gae_lambda": 0.95}], [0, 1])
    assert guess.per_member > 0 and guess.shared >= 0


def test_the_cpu_limit_is_the_hosts_available_memory() -> None:
    assert 0 < available("cpu") < 2**50


def test_the_engine_refuses_a_population_that_does_not_fit_naming_the_largest_that_does(tmp_path) -> None:
    guess = estimate(MLPDigitsPopulation, [HP], [0, 1])
    limit = guess.total(3) + guess.per_member // 2
    exp = load_spec(os.path.join(EXAMPLES, "mlp_digits.toml"), storage=f"sqlite:///{tmp_path}/db.sqlite", population=8, steps=2)
    with pytest.raises(SpecError) as err:
        exp.run(engine=Vectorized(memory_limit=limit))
    message = str(err.value)
    assert "\n" not in message
    assert re.search(r"8 members of MLPDigitsPopulation need about [\d.]+ GiB on cpu .* the largest population "
                     r"that fits is 3: set population = 3 or fewer", message), message
    members = poptrain.load(f"sqlite:///{tmp_path}/db.sqlite", exp.name).members()
    assert list(members.step) == [0] * 8  # refused before training anything
    assert list(exp.run(engine=Vectorized()).members().step) == [2] * 8  # nothing was left leased

    small = load_spec(os.path.join(EXAMPLES, "mlp_digits.toml"), name="small", storage=f"sqlite:///{tmp_path}/db.sqlite",
                      population=3, steps=2)
    assert list(small.run(engine=Vectorized(memory_limit=limit)).members().step) == [2, 2, 2]


def test_a_limit_must_be_a_positive_number_of_bytes() -> None:
    with pytest.raises(SpecError, match="memory_limit"):
        Vectorized(memory_limit=0)


def test_an_estimate_that_raises_skips_the_check(caplog) -> None:
    class Broken(MLPDigitsPopulation):
        def train(self) -> None:
            raise RuntimeError("boom")

    assert check_fits(Broken, [HP] * 4, [0, 1, 2, 3], "cpu", limit=1) is None
    assert "could not estimate the population's memory (RuntimeError: boom)" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_on_cuda_the_estimate_is_the_measured_peak() -> None:
    guess = estimate(MLPDigitsPopulation, [HP], [0, 1], "cuda")
    assert guess.measured and guess.per_member >= 3 * 4 * MLP_PARAMS
    with pytest.raises(SpecError, match="the largest population that fits is 2:"):
        check_fits(MLPDigitsPopulation, [HP] * 8, list(range(8)), "cuda", limit=guess.total(2) + 1)


def test_the_cli_flag_sets_the_limit(tmp_path, capsys) -> None:
    from poptrain.cli import main

    code = main(["run", os.path.join(EXAMPLES, "mlp_digits.toml"), "--storage", f"sqlite:///{tmp_path}/c.db",
                 "--engine", "vectorized", "--population", "4", "--steps", "1", "--memory-limit", "1000", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "the largest population that fits is 0" in err, err


def test_a_cpu_run_without_a_limit_takes_no_trial_steps(tmp_path, monkeypatch) -> None:
    import poptrain.torch.memory as memory

    def refuse(*args, **kwargs):
        raise AssertionError("the estimate ran on the CPU without a memory_limit")

    monkeypatch.setattr(memory, "estimate", refuse)
    exp = load_spec(os.path.join(EXAMPLES, "mlp_digits.toml"), storage=f"sqlite:///{tmp_path}/f.db", population=2,
                    steps=1)
    assert list(exp.run(engine=Vectorized()).members().step) == [1, 1]
