"""The vectorized engine: the same decisions as the serial engine, exact per-member training, bad input."""

from __future__ import annotations

import math
import uuid

import pytest
import torch

import poptrain
from poptrain.experiment import load_spec
from conftest import EXAMPLES
from mlp_digits import MLPDigits, MLPDigitsPopulation
from trainables import HparamScore


def test_same_decisions_as_the_serial_engine_for_the_same_scores(storage):
    def run(engine: str, url: str) -> list:
        exp = poptrain.Experiment(name="h", trainable=HparamScore, space={"lr": poptrain.LogUniform(0.01, 0.5)},
                                  metric="score", population=6, steps=12, ready=poptrain.Every(3), seed=4,
                                  storage=url, synchronous=True)
        result = exp.run(engine=engine)
        return [(e.member, e.step, e.source, e.new_hparams) for e in result.events()]

    serial = run("serial", storage)
    vectorized = run("vectorized", f"memory://{uuid.uuid4().hex}")
    assert serial and sorted(serial) == sorted(vectorized)


def test_a_generation_reads_the_t_tests_histories_once(tmp_path, monkeypatch):
    """The t-test decides for every member at once: one read of recent scores, not one per member."""
    from poptrain.store.sql import SQLStore

    reads = []
    original = SQLStore.recent_scores
    monkeypatch.setattr(SQLStore, "recent_scores", lambda self, *a, **k: reads.append(k) or original(self, *a, **k))
    exp = poptrain.Experiment(name="t", trainable=HparamScore, space={"lr": poptrain.LogUniform(0.01, 0.5)},
                              metric="score", population=8, steps=12, ready=poptrain.Every(4),
                              exploit=poptrain.TTest(window=3), storage=f"sqlite:///{tmp_path}/t.db")
    exp.run(engine="vectorized")
    assert len(reads) == 2 and all(k.get("members") is None for k in reads)  # ready at steps 4 and 8


def test_without_exploit_each_member_trains_as_it_would_alone(tmp_path):
    exp = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/v.db", population=3, steps=4,
                    exploit="none")
    result = exp.run(engine="vectorized")
    for m in result.store.members("mlp_digits"):
        alone = MLPDigits(m.hparams, m.seed)
        for _ in range(4):
            alone.train()
        batched = result.store.checkpoints("mlp_digits", m.id)[0]
        state = poptrain.store.CheckpointStore(result.spec["checkpoints"]).load(batched.key, batched.checksum)
        for name, tensor in alone.model.state_dict().items():
            torch.testing.assert_close(state["model"][name], tensor, rtol=1e-4, atol=1e-5)
        assert result.store.member("mlp_digits", m.id).last_score == pytest.approx(alone.evaluate()["accuracy"],
                                                                                  abs=1 / 450 + 1e-9)


def test_best_member_state_is_an_ordinary_state_dict(tmp_path):
    result = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/v.db", population=4,
                       steps=6).run(engine="vectorized")
    assert set(result.members().status) == {"done"} and len(result.events()) > 0
    state = result.best().load_state()
    member = MLPDigits(result.best().hparams, 0)
    member.model.load_state_dict(state["model"])  # loads into the ordinary per-member model
    assert member.evaluate()["accuracy"] == pytest.approx(result.best().score, abs=1e-6)
    files = list((tmp_path / "v.checkpoints" / "mlp_digits").iterdir())
    assert len(files) <= result.spec["keep_checkpoints"]  # one file per checkpoint for the whole population


class NanInMemberOne(MLPDigitsPopulation):
    """Member 1's weights turn NaN after the second epoch."""

    epochs = 0

    def train(self) -> None:
        super().train()
        NanInMemberOne.epochs += 1
        if NanInMemberOne.epochs == 2:
            for tensor in self.population.params.values():
                tensor[1] = float("nan")


def test_a_nan_member_scores_worst_and_is_replaced_the_others_untouched(tmp_path):
    def run(cls: type | None, tag: str) -> poptrain.Result:
        exp = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/{tag}.db", population=4,
                        steps=4, ready={"type": "every", "intervals": 3})
        return exp.run(engine="vectorized") if cls is None else _run_with(exp, cls)

    clean = run(None, "clean")
    NanInMemberOne.epochs = 0
    broken = run(NanInMemberOne, "nan")
    reports = {(r.member, r.step): r.score for r in broken.store.reports("mlp_digits")}
    losses = {(r.member, r.step): r.metrics["loss"] for r in broken.store.reports("mlp_digits")}
    assert math.isnan(losses[(1, 2)]) and math.isnan(losses[(1, 3)])
    assert reports[(1, 3)] == min(reports[(m, 3)] for m in range(4))  # it ranks worst
    assert [e.member for e in broken.events()].count(1) == 1  # and member 1 copies another at step 3
    for member in (0, 2, 3):
        for step in (1, 2, 3):
            assert reports[(member, step)] == {(r.member, r.step): r.score
                                               for r in clean.store.reports("mlp_digits")}[(member, step)]


def _run_with(exp: poptrain.Experiment, batched: type) -> poptrain.Result:
    from poptrain.engines.vectorized import VectorizedRun
    from poptrain.result import Result
    from poptrain.store import open_store

    exp.create()
    store = open_store(exp.storage)
    VectorizedRun(store, exp.name, trainable=batched).run()
    return Result(store, exp.name)


def test_shape_changing_hyperparameters_are_refused_by_name(tmp_path):
    exp = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/s.db", population=2, steps=2)
    exp.space["hidden"] = poptrain.IntUniform(16, 256)
    exp.initial = []
    with pytest.raises(poptrain.SpecError, match="'hidden' cannot be vectorized.*local engine"):
        exp.run(engine="vectorized")


def test_a_trainable_without_a_batched_twin_is_refused():
    exp = poptrain.Experiment(name="q", trainable="trainables:Quadratic", space={"lr": poptrain.LogUniform(0.01, 0.5)},
                              metric="score", population=2, steps=2, storage=f"memory://{uuid.uuid4().hex}")
    with pytest.raises(poptrain.SpecError, match="no batched counterpart.*local engine"):
        exp.run(engine="vectorized")


def test_one_word_in_the_toml_moves_mlp_digits_to_the_vectorized_engine(tmp_path):
    from poptrain.cli import main

    with open(f"{EXAMPLES}/mlp_digits.toml") as f:
        text = f.read()
    spec = tmp_path / "v.toml"
    spec.write_text(f'engine = "vectorized"\npaths = [{str(EXAMPLES)!r}]\n' + text)
    url = f"sqlite:///{tmp_path}/v.db"
    assert main(["run", str(spec), "--storage", url, "--population", "3", "--steps", "4", "--quiet"]) == 0
    result = poptrain.load(url, "mlp_digits")
    assert all("population-" in c.key for m in range(3) for c in result.store.checkpoints("mlp_digits", m))
    with pytest.raises(poptrain.SpecError, match="unknown engine 'gpu'"):
        load_spec(spec, engine="gpu")


def test_cnn_example_learns_batched_what_each_member_learns_alone(tmp_path):
    from cnn_digits import CNNDigits

    exp = load_spec(f"{EXAMPLES}/cnn_digits.toml", storage=f"sqlite:///{tmp_path}/c.db", population=3, steps=2,
                    exploit="none")
    result = exp.run()  # the spec names the vectorized engine
    for m in result.store.members("cnn_digits"):
        alone = CNNDigits(m.hparams, m.seed)
        alone.train()
        alone.train()
        ckpt = result.store.checkpoints("cnn_digits", m.id)[0]
        assert "population-" in ckpt.key
        # a batched convolution sums in another order, and Adam magnifies float noise in parameters
        # whose gradients are near zero: compare what the member learned, not every weight
        assert result.store.member("cnn_digits", m.id).last_score == pytest.approx(alone.evaluate()["accuracy"],
                                                                                  abs=0.03)


class StopsAtEpoch(MLPDigitsPopulation):
    """Interrupted (as by Ctrl-C) during epoch `stop`."""

    stop = 0
    epochs = 0

    def train(self) -> None:
        if self.size < 3:  # the memory check's populations of one and two members, before the run
            return super().train()
        StopsAtEpoch.epochs += 1
        if StopsAtEpoch.epochs == StopsAtEpoch.stop:
            raise KeyboardInterrupt
        super().train()


@pytest.mark.parametrize("stop", [2, 5])  # before the first checkpoint (step 3), and after it
def test_an_interrupted_vectorized_run_resumes_each_step_once(tmp_path, stop):
    url = f"sqlite:///{tmp_path}/i.db"
    exp = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=url, population=3, steps=7)
    StopsAtEpoch.stop, StopsAtEpoch.epochs = stop, 0
    with pytest.raises(KeyboardInterrupt):
        _run_with(exp, StopsAtEpoch)
    result = poptrain.resume(url, "mlp_digits", force=True)  # finds the population checkpoints: vectorized
    steps = result.frame().groupby("member").step.apply(list)
    assert all(s == list(range(1, 8)) for s in steps) and set(result.members().status) == {"done"}
    clean = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/c.db", population=3,
                      steps=7).run(engine="vectorized")
    assert result.frame().score.tolist() == clean.frame().score.tolist()  # as if never interrupted
    with pytest.raises(poptrain.SpecError, match="vectorized engine"):
        poptrain.resume(url, "mlp_digits", engine="local")


def test_the_vectorized_engine_follows_a_schedule(tmp_path):
    schedule = [{"step": 0, "hparams": {"lr": 0.02, "momentum": 0.5, "weight_decay": 1e-4}},
                {"step": 2, "hparams": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}}]
    exp = load_spec(f"{EXAMPLES}/mlp_digits.toml", storage=f"sqlite:///{tmp_path}/s.db", population=1, steps=4,
                    exploit="none", schedule=schedule, initial=[])
    result = exp.run(engine="vectorized")
    assert result.schedule(0).lr.tolist() == [0.02, 0.02, 0.1, 0.1]
