"""Neuroevolution: Gaussian mutation of the weights (per member, and batched over stacked weights), no optimiser."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import poptrain
from poptrain.torch.neuroevolution import Mutation, NeuroevolutionTrainable, mutate_
from test_cli import EXAMPLES, cli, sqlite



class Line(NeuroevolutionTrainable):
    def __init__(self, hparams, seed):
        super().__init__(hparams, seed)
        self.model = torch.nn.Linear(100, 100)

    def evaluate(self):
        return 0.0


def test_a_member_mutates_by_sigma_and_keeps_its_own_noise_stream():
    a = Line({"sigma": 0.1}, seed=1)
    before = a.model.weight.detach().clone()
    a.train()
    change = a.model.weight.detach() - before
    assert change.std().item() == pytest.approx(0.1, rel=0.05) and abs(change.mean().item()) < 0.01
    b = Line({"sigma": 0.1}, seed=2)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.model.weight, a.model.weight)
    a.train(), b.train()
    assert not torch.equal(b.model.weight, a.model.weight)  # two copies of one parent diverge


def test_batched_mutation_scales_each_members_slice_by_its_sigma():
    params = {"w": torch.zeros(3, 200, 50), "b": torch.zeros(3, 50)}
    m = Mutation(params, sigma=[0.0, 0.1, 1.0], seed=0)
    m.step()
    assert torch.count_nonzero(params["w"][0]) == 0
    assert params["w"][1].std().item() == pytest.approx(0.1, rel=0.05)
    assert params["w"][2].std().item() == pytest.approx(1.0, rel=0.05)
    m.set_hparams(0, {"sigma": 0.5})
    saved = m.state_dict()
    m.step()
    after = {k: v.clone() for k, v in params.items()}
    for k in params:
        params[k].copy_(after[k])
    other = Mutation({k: v.clone() for k, v in params.items()}, sigma=[0.0, 0.0, 0.0], seed=9)
    other.load_state_dict(saved)  # sigma and the generator come back
    assert other.values["sigma"].tolist() == pytest.approx([0.5, 0.1, 1.0])
    assert other.generator.get_state().equal(torch.Generator().set_state(saved["rng"]).get_state())


def test_mutate_on_module_parameters():
    model = torch.nn.Linear(4, 4)
    before = [p.detach().clone() for p in model.parameters()]
    mutate_(model.parameters(), 0.0, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("engine", ["vectorized", "local"])
def test_the_neuroevolution_example_runs_from_toml_and_the_cli(tmp_path: Path, engine: str) -> None:
    url = sqlite(tmp_path / "ne.db")
    code, out, err = cli("run", EXAMPLES / "neuroevolution_digits.toml", "--storage", url, "--engine", engine,
                         "--steps", "6", "--population", "8", "--quiet")
    assert code == 0, err
    result = poptrain.load(url, "neuroevolution_digits")
    frame = result.frame()
    assert len(result.events()) >= 6  # truncation copies every interval
    assert frame.groupby("step").score.max().iloc[-1] > 0.1  # better than chance after selection
    assert ((frame.sigma >= 1e-3) & (frame.sigma <= 0.3)).all()
