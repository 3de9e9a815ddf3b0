"""FIRE PBT's exploit: sub-population 0 by score, the others by improvement rate, evaluators carrying weights up."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poptrain.errors import SpecError
from poptrain.records import Continue, Exploit, Interval, Standings
from poptrain.policy import Fire, build_exploit
from poptrain.policy.fire import improvement_rate


def standings(curves, hparams=None):
    """Member i's fitness over steps 1..len(curves[i]) (its latest is its fitness), one hparams per member."""
    history = {}
    for i, curve in enumerate(curves):
        h = (hparams or {}).get(i, {"lr": 0.1 * (i + 1)})
        history[i] = tuple(Interval(s + 1, f, h) for s, f in enumerate(curve))
    fit = np.array([c[-1] if c else -math.inf for c in curves], dtype=float)
    return Standings(np.arange(len(curves)), fit, history=history)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_improvement_rate_is_the_slope_since_the_last_change_after_settling():
    h, g = {"lr": 0.1}, {"lr": 0.2}
    s = Standings(np.arange(1), np.zeros(1), history={0: (Interval(1, 0.0, h), Interval(2, 5.0, g), Interval(3, 6.0, g),
                                                          Interval(4, 8.0, g), Interval(5, 10.0, g))})
    assert improvement_rate(s, 0, settle=1) == pytest.approx(2.0)  # steps 3..5 (the jump to step 2 left out)
    assert improvement_rate(s, 0, settle=3) != improvement_rate(s, 0, settle=3)  # one point left: NaN
    assert math.isnan(improvement_rate(s, 7, settle=0))


def test_sub_populations_and_evaluators():
    fire = Fire(subpopulations=2, evaluators=1)
    groups, evaluators = fire.roles(np.arange(8))
    assert groups == {0: [0, 2, 4, 6], 1: [1, 3, 5, 7]} and evaluators == {7}


def test_trainers_above_the_greedy_sub_population_rank_by_rate_not_score():
    # Sub-population 1 = members 1, 3, 5, 7 (7 the evaluator). Member 1 scores best but has stalled;
    # member 5 scores worse and improves fastest; member 3 improves slowest.
    curves = [[0.0] * 6 for _ in range(8)]
    curves[1] = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    curves[3] = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
    curves[5] = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    s = standings(curves)
    fire = Fire(subpopulations=2, evaluators=1, fraction=0.25)
    decided = {m: fire.decide(s.view(m), s, rng(1)) for m in (1, 3, 5)}
    assert decided[1] == Exploit(5)  # the stalled leader copies the fast improver: no greed
    assert decided[3] == Continue() and decided[5] == Continue()


def test_an_evaluator_anneals_the_fastest_trainer_with_the_schedule_below_unless_it_holds_the_best():
    curves = [[float(i)] * 4 for i in range(8)]
    curves[3] = [0.0, 1.0, 2.0, 3.0]  # the fastest trainer of sub-population 1 (members 1, 3, 5; 7 evaluates)
    s = standings(curves)
    fire = Fire(subpopulations=2, evaluators=1)
    assert fire.decide(s.view(7), s, rng()) == Continue()  # 7 scores best of all: it keeps what it holds
    curves[7] = [0.0] * 4
    s = standings(curves)
    # member 6 scores best in sub-population 0: its hyperparameters go with member 3's weights
    assert fire.decide(s.view(7), s, rng()) == Exploit(3, {"lr": 0.1 * 7})


curve = st.lists(st.one_of(st.integers(-3, 3).map(float), st.just(-math.inf)), min_size=0, max_size=6)


@settings(max_examples=150)
@given(st.lists(curve, min_size=1, max_size=10), st.integers(1, 3), st.integers(0, 2), st.integers(0, 2**32 - 1))
def test_fire_never_copies_a_worse_or_failed_member_by_its_rule(curves, subpops, evaluators, seed):
    s = standings(curves)
    fire = Fire(subpopulations=subpops, evaluators=evaluators)
    _, evals = fire.roles(s.ids)
    for m in range(len(curves)):
        d = fire.decide(s.view(m), s, rng(seed))
        if not isinstance(d, Exploit):
            continue
        src = d.source
        assert src != m and math.isfinite(s.fitness[src])  # never a failed member
        assert src not in evals or fire.group(m) == 0  # an evaluator is a source only for sub-population 0
        if m in evals:  # its rule: the fastest trainer of its sub-population, with hparams from the one below
            assert fire.group(src) == fire.group(m) and d.hparams is not None
            assert any(s.fitness[o] > s.fitness[m] for o in range(len(curves)) if o != m)  # it did not hold the best
        elif fire.group(m) == 0:  # by score, from its sub-population or the evaluators of sub-population 1
            assert s.fitness[src] > s.fitness[m] and fire.group(src) == 0 or (src in evals and fire.group(src) == 1)
        elif s.fitness[m] == -math.inf:
            assert s.fitness[src] > s.fitness[m] and fire.group(src) == fire.group(m)  # by score
        else:
            assert fire.group(src) == fire.group(m)
            assert improvement_rate(s, src, fire.settle) > improvement_rate(s, m, fire.settle)  # by rate


def test_fire_arguments_and_round_trip():
    made = build_exploit({"type": "fire", "subpopulations": 3, "evaluators": 2})
    assert made == Fire(3, 2) and build_exploit(made.to_dict()) == made and Fire.reads == frozenset({"history"})
    for kwargs in ({"subpopulations": 0}, {"evaluators": -1}, {"fraction": 0.9}, {"history": 2}, {"settle": 7}):
        with pytest.raises(SpecError, match="fire"):
            Fire(**kwargs)


def test_the_policy_takes_the_hparams_an_exploit_rule_names_without_exploring():
    from poptrain.policy import Every, Perturb, Policy
    from poptrain.space import parse_space

    curves = [[float(i)] * 4 for i in range(8)]
    curves[3], curves[7] = [0.0, 1.0, 2.0, 3.0], [0.0] * 4
    s = standings(curves)
    space = parse_space({"lr": {"type": "uniform", "low": 0.0, "high": 1.0}})
    policy = Policy(Every(4), Fire(2, 1), Perturb(), space, seed=0)
    hparams = {m: {"lr": 0.1 * (m + 1)} for m in range(8)}
    decided = policy.decide_generation(s, 4, hparams.get)
    assert decided[7] == Exploit(3, {"lr": 0.1 * 7})  # member 6's, not perturbed
    from poptrain.asktell.generation import GenerationMemo

    worker = GenerationMemo(Policy(Every(4), Fire(2, 1), Perturb(), space, seed=0))  # a worker: pick, then explore
    picks = worker.generation("scores at 4", 4, lambda: s).picks
    assert worker.complete(7, picks[7], hparams[picks[7].source]) == Exploit(3, {"lr": 0.1 * 7})


def test_the_greedy_sub_population_copies_an_evaluator_that_scores_better():
    curves = [[0.0] * 4 for _ in range(8)]
    curves[7] = [5.0] * 4  # the evaluator of sub-population 1 holds the best annealed weights
    s = standings(curves)
    copies = {Fire(2, 1, fraction=0.25).decide(s.view(m), s, np.random.default_rng(seed)) for m in (0, 2, 4, 6)
              for seed in range(10)}
    assert Exploit(7) in copies and copies <= {Exploit(7), Continue()}
