"""PB2's explore: a GP-UCB pick from the population's history, in bounds, aware of pending points."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest

from poptrain.errors import SpecError
from poptrain.records import Continue, Exploit, Interval, Standings
from poptrain.policy import PB2, Every, Policy, Truncation, build_explore
from poptrain.space import parse_space, validate_hparams

SPACE = parse_space({
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
    "momentum": {"type": "uniform", "low": 0.0, "high": 0.99},
    "layers": {"type": "int", "low": 1, "high": 8},
    "act": {"type": "choice", "values": ["relu", "tanh", "gelu"]},
})


def improvement(h):
    """The synthetic task: each interval improves most at lr = 0.1 (log scale) and momentum = 0.9."""
    return 1.0 - (math.log10(h["lr"]) + 1) ** 2 / 4 - (h["momentum"] - 0.9) ** 2


def history_standings(n=16, steps=8, seed=0, current=None):
    """Members with random fixed hparams whose fitness grows by `improvement` each step."""
    rng = np.random.default_rng(seed)
    history, fit = {}, []
    for m in range(n):
        h = {"lr": float(10 ** rng.uniform(-4, 0)), "momentum": float(rng.uniform(0, 0.99)),
             "layers": int(rng.integers(1, 9)), "act": "relu"}
        f, points = 0.0, []
        for s in range(1, steps + 1):
            f += improvement(h) + rng.normal(0, 0.01)
            points.append(Interval(s, f, h))
        history[m] = tuple(points)
        fit.append(f)
    return Standings(np.arange(n), np.array(fit), history=history, current=current or {}, step=steps)


def rngs(k, seed=0):
    return [np.random.default_rng([seed, i]) for i in range(k)]


def test_pb2_picks_in_bounds_with_types_and_finds_the_better_region():
    standings = history_standings()
    source = {"lr": 1e-4, "momentum": 0.1, "layers": 3, "act": "tanh"}
    picks = PB2(kappa=0.5).explore_batch([(m, source) for m in range(4)], SPACE, rngs(4), standings)
    for new in picks:
        assert validate_hparams(SPACE, new, "pb2") == new
        assert [type(new[k]) for k in SPACE] == [float, float, int, str]
    # The predicted best is near lr 0.1, momentum 0.9: far better than the source's own point.
    assert np.mean([improvement(p) for p in picks]) > improvement(source) + 0.5
    assert picks == PB2(kappa=0.5).explore_batch([(m, source) for m in range(4)], SPACE, rngs(4), standings)


def test_pb2_copies_do_not_pick_the_same_point():
    standings = history_standings()
    source = {"lr": 0.01, "momentum": 0.5, "layers": 3, "act": "relu"}
    picks = PB2().explore_batch([(m, source) for m in range(6)], SPACE, rngs(6), standings)
    points = {(round(p["lr"], 6), round(p["momentum"], 4)) for p in picks}
    assert len(points) == 6
    # A member explored since its last report is a pending point: the next pick avoids it.
    alone = PB2(kappa=3.0).explore_batch([(100, source)], SPACE, rngs(1), standings)[0]
    with_pending = history_standings(current={0: alone})
    moved = PB2(kappa=3.0).explore_batch([(100, source)], SPACE, rngs(1), with_pending)[0]
    assert moved != alone


def test_pb2_without_history_perturbs_as_pbt_does():
    source = {"lr": 0.01, "momentum": 0.5, "layers": 3, "act": "relu"}
    empty = Standings(np.arange(2), np.zeros(2))
    for seed in range(20):
        new = PB2().explore_batch([(0, source)], SPACE, rngs(1, seed), empty)[0]
        assert validate_hparams(SPACE, new, "pb2") == new and new != source


def test_pb2_skips_intervals_across_an_exploit():
    # A member whose hparams changed between reports copied weights in between: that jump is not an improvement.
    h, g = {"lr": 0.01, "momentum": 0.5, "layers": 3, "act": "relu"}, {"lr": 0.02, "momentum": 0.5, "layers": 3, "act": "relu"}
    standings = Standings(np.arange(1), np.zeros(1), history={0: (Interval(1, 0.0, h), Interval(2, 100.0, g))})
    from poptrain.policy.pb2 import _Box, _observations
    assert _observations(standings, _Box(SPACE), 100) is None


def test_policy_explores_a_generation_together_and_each_worker_agrees():
    standings = history_standings(n=8)
    policy = Policy(Every(1), Truncation(0.5), PB2(), SPACE, seed=3)
    hparams = {m: dict(standings.history[m][-1].hparams) for m in range(8)}
    decided = policy.decide_generation(standings, 8, hparams.get)
    copies = {m: d for m, d in decided.items() if isinstance(d, Exploit)}
    assert len(copies) == 4 and all(isinstance(d, Continue) for m, d in decided.items() if m not in copies)
    assert len({tuple(sorted(d.hparams.items())) for d in copies.values()}) == 4
    # A worker that chooses the generation and then explores one member at a time gets the same hparams.
    from poptrain.asktell.generation import GenerationMemo

    worker = GenerationMemo(Policy(Every(1), Truncation(0.5), PB2(), SPACE, seed=3))
    picks = worker.generation("scores at 8", 8, lambda: standings).picks
    for m, d in copies.items():
        assert worker.complete(m, picks[m], hparams[picks[m].source]) == d
    assert policy.reads == frozenset({"history"}) and policy.history == 16


def test_pb2_decision_at_64_members_and_1000_intervals_is_fast():
    standings = history_standings(n=64, steps=16)  # 1,024 recorded intervals
    source = {"lr": 0.01, "momentum": 0.5, "layers": 3, "act": "relu"}
    PB2().explore_batch([(0, source)], SPACE, rngs(1), standings)  # imports scikit-learn
    start = time.perf_counter()
    PB2().explore_batch([(0, source)], SPACE, rngs(1), standings)
    assert time.perf_counter() - start < 0.5  # 100 ms is the benchmark's line; a shared CI core gets slack


def test_pb2_arguments_and_round_trip():
    assert build_explore({"type": "pb2", "kappa": 1.0}) == PB2(kappa=1.0)
    assert PB2().to_dict() == {"type": "pb2", "kappa": 2.0, "history": 16, "max_points": 256, "candidates": 512}
    for kwargs in ({"kappa": -1}, {"history": 1}, {"max_points": 2}, {"candidates": 0}):
        with pytest.raises(SpecError, match="pb2"):
            PB2(**kwargs)


def test_importing_poptrain_does_not_import_scikit_learn():
    code = "import poptrain, poptrain.policy, poptrain.engines, sys; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_read_standings_supplies_history_current_hparams_and_metrics_only_when_read(tmp_path):
    from pathlib import Path

    import poptrain
    from poptrain.standings import read_standings
    from poptrain.store import Event, MemberRecord, open_store

    examples = str(Path(__file__).resolve().parent.parent / "examples")
    url = f"sqlite:///{tmp_path}/h.db"

    def stored(name, **kw):
        exp = poptrain.Experiment(name=name, trainable="toy_quadratic:ToyQuadratic", paths=[examples], population=2,
                                  space={"lr": {"type": "uniform", "low": 0.0, "high": 1.0}}, steps=100, storage=url,
                                  metric="score", mode="max", **kw)
        store = open_store(url)
        store.create_experiment(name, exp.to_spec(), [MemberRecord(id=i, seed=i, hparams={"lr": 0.5},
                                                                   initial_hparams={"lr": 0.5}) for i in range(2)])
        store.claim_all(name, "w", 3600, time.time())
        for step in range(1, 21):
            store.report_many(name, "w", step, [(m, step * (m + 1.0), {"score": step * (m + 1.0), "size": 3},
                                                 {"lr": 0.5}) for m in range(2)], time.time())
        return exp, store

    exp, store = stored("pb2", explore=PB2(history=4))
    store.record_exploits("pb2", [Event(member=0, step=20, source=1, source_step=20, old_hparams={"lr": 0.5},
                                        new_hparams={"lr": 0.9}, time=time.time())], "w")
    s = read_standings(store, "pb2", exp, None)
    assert [p.step for p in s.history[0]] == [17, 18, 19, 20] and s.history[1][-1].fitness == 40.0
    assert s.current == {0: {"lr": 0.9}, 1: {"lr": 0.5}} and not s.metrics  # member 0 is a pending point
    assert read_standings(store, "pb2", exp, 20, everyone=True).current == {}  # a generation knows its own
    exp, store = stored("mo", exploit=poptrain.Pareto({"score": "max", "size": "min"}))
    s = read_standings(store, "mo", exp, None)
    assert s.metrics == {0: {"score": 20.0, "size": 3.0}, 1: {"score": 40.0, "size": 3.0}} and not s.history
    exp, store = stored("plain")
    s = read_standings(store, "plain", exp, None)
    assert not s.history and not s.metrics and not s.current
