"""Synchronous generations are ranked once: exactly the bottom quantile copies, never from a member that copies too."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import poptrain
from poptrain.records import Exploit, Standings
from poptrain.space import Uniform, parse_space
from trainables import Tied


def policy(fraction: float, seed: int = 0) -> poptrain.policy.Policy:
    return poptrain.policy.Policy(poptrain.Every(1), poptrain.Truncation(fraction), poptrain.Perturb(),
                                  parse_space({"lr": Uniform(0.01, 1.0)}), seed)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 40), fraction=st.sampled_from([0.1, 0.2, 0.25, 0.5]), step=st.integers(0, 1000),
       levels=st.integers(1, 3))
def test_a_tied_generation_copies_exactly_the_bottom_quantile(n, fraction, step, levels):
    fitness = np.random.default_rng(step).integers(levels, size=n).astype(float)  # few distinct values: many ties
    standings = Standings(np.arange(n), fitness)
    picks = policy(fraction).choose_generation(standings, step)
    copies = {m: d.source for m, d in picks.items() if isinstance(d, Exploit)}
    assert len(copies) == poptrain.Truncation(fraction).quantile(n)
    assert not set(copies.values()) & set(copies)  # no source copies in the same generation
    worst_copier = max(fitness[m] for m in copies)
    assert all(fitness[s] >= worst_copier for s in copies.values())


def test_a_generation_is_decided_the_same_whoever_asks():
    standings = Standings(np.arange(8), np.zeros(8))
    first, second = (policy(0.25, seed=3).decide_generation(standings, 12, lambda s: {"lr": 0.5}) for _ in range(2))
    assert first == second and sum(isinstance(d, Exploit) for d in first.values()) == 2


def test_four_tied_members_copy_one_member_per_generation_for_forty_generations(tmp_path):
    exp = poptrain.Experiment(name="tied", trainable=Tied, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                              population=4, steps=41, ready=poptrain.Every(1), exploit=poptrain.Truncation(0.25),
                              synchronous=True, storage=f"sqlite:///{tmp_path}/t.db", seed=0)
    events = exp.run(engine="serial").events()
    per_step = Counter(e.step for e in events)
    assert per_step == Counter({step: 1 for step in range(1, 41)})
    assert len({e.member for e in events}) > 1  # the shared tie-break differs between generations


def test_a_partial_initial_entry_keeps_what_it_gives_and_samples_the_rest(tmp_path):
    space = {"lr": poptrain.LogUniform(1e-3, 1.0), "momentum": poptrain.Uniform(0.0, 0.99)}
    exp = poptrain.Experiment(name="partial", trainable=Tied, space=space, population=3, steps=2,
                              ready=poptrain.Every(1), initial=[{"lr": 0.1}], storage=f"sqlite:///{tmp_path}/p.db")
    members = exp.initial_members()
    assert members[0].hparams["lr"] == 0.1 and 0.0 <= members[0].hparams["momentum"] <= 0.99
    assert members[0].hparams == exp.initial_members()[0].hparams  # the same draw every time
    result = exp.run(engine="serial")
    first = result.frame().query("member == 0 and step == 1").iloc[0]
    assert first.lr == 0.1 and first.momentum == members[0].hparams["momentum"]
    other = poptrain.Experiment(**{**exp.to_spec(), "trainable": Tied, "initial": [{"lr": 0.1}], "seed": 1,
                                   "space": space, "storage": f"sqlite:///{tmp_path}/q.db", "checkpoints": None})
    assert other.initial_members()[0].hparams["momentum"] != members[0].hparams["momentum"]
