"""torch.compile for the vectorized engine: the eager numbers when it compiles, eager training when it cannot."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import poptrain
import poptrain.torch.compiled as compiled_module
from poptrain.cli import engine_options, parser
from poptrain.torch.optim import BatchedSGD
from poptrain.torch.stacked import StackedModules
from poptrain.torch.vectorized import BatchedTrainable

FAILED = "torch.compile failed"


class TinyPopulation(BatchedTrainable):
    """Three members of a 6-16-3 MLP on 24 fixed samples: small enough to compile in seconds."""

    hparams = ("lr", "momentum")

    def __init__(self, hparams: list[dict], seeds: list[int], device: str = "cpu") -> None:
        super().__init__(hparams, seeds, device)
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(24, 6, generator=g), torch.randint(0, 3, (24,), generator=g)
        self.population = StackedModules.from_factory(lambda: nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)),
                                                  seeds)
        self.optimizer = BatchedSGD(self.population.params, lr=[h["lr"] for h in hparams],
                                    momentum=[h["momentum"] for h in hparams])

    def train(self) -> None:
        self.epoch(self.x, self.y, batch_size=8)

    def evaluate(self) -> list[dict[str, float]]:
        return self.classification_metrics(self.x, self.y)


def tiny() -> TinyPopulation:
    hparams = [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.0}, {"lr": 0.2, "momentum": 0.5}]
    return TinyPopulation(hparams, [1, 2, 3])


def test_a_compiled_population_trains_and_scores_as_the_eager_one(caplog):
    eager, compiled = tiny(), tiny()
    compiled.compile()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for _ in range(3):
        eager.train()
        compiled.train()
    scores = compiled.evaluate()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= graphs + 2  # the step and the forward pass
    assert FAILED not in caplog.text
    for name, tensor in eager.population.params.items():
        torch.testing.assert_close(compiled.population.params[name], tensor, rtol=1e-5, atol=1e-6)
    for name, slots in eager.optimizer.state.items():
        torch.testing.assert_close(compiled.optimizer.state[name]["momentum_buffer"], slots["momentum_buffer"],
                                   rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(scores, eager.evaluate()):
        assert mine["accuracy"] == theirs["accuracy"] and mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)


def test_when_compiling_fails_the_run_warns_once_and_trains_eagerly(tmp_path, monkeypatch, caplog):
    def no_compiler(graph, inputs):
        raise RuntimeError("no working C++ compiler")

    def scores(tag: str, compile: bool) -> list[float]:
        exp = poptrain.Experiment(name="tiny", trainable=TinyPopulation, metric="accuracy", population=3, steps=4,
                                  space={"lr": poptrain.LogUniform(0.01, 0.3), "momentum": poptrain.Uniform(0, 0.9)},
                                  ready=poptrain.Every(2), storage=f"sqlite:///{tmp_path}/{tag}.db")
        result = exp.run(engine="vectorized", compile=compile)
        assert set(result.members().status) == {"done"}
        return list(result.members().score)

    eager = scores("eager", compile=False)
    monkeypatch.setattr(compiled_module, "BACKEND", no_compiler)
    with caplog.at_level(logging.WARNING, logger="poptrain"):
        fallen_back = scores("compiled", compile=True)
    warnings = [r for r in caplog.records if FAILED in r.getMessage()]
    assert len(warnings) == 1 and "no working C++ compiler" in warnings[0].getMessage()
    assert fallen_back == eager  # eager after the fallback: the very same numbers
    assert engine_options(parser().parse_args(["run", "x.toml", "--engine", "vectorized", "--compile"]))["compile"]
