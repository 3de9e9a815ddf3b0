"""Multi-objective selection: non-dominated fronts, crowding, the exploit rule, the front of a run, hypervolume."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poptrain.analysis import hypervolume
from poptrain.errors import SpecError
from poptrain.records import Continue, Exploit, Standings
from poptrain.policy import Pareto, build_exploit
from poptrain.policy.pareto import crowding, fronts

OBJ = {"acc": "max", "size": "min"}


def standings(rows, fitness=None):
    """Members 0..n-1 with metrics rows (dicts); fitness 0 unless given (-inf marks a failed score)."""
    n = len(rows)
    fit = np.zeros(n) if fitness is None else np.array(fitness, dtype=float)
    return Standings(np.arange(n), fit, metrics=dict(enumerate(rows)))


def rng(seed=0):
    return np.random.default_rng(seed)


def test_fronts_and_crowding():
    v = np.array([[3, 1], [1, 3], [2, 2], [1, 1], [0, 0], [np.nan, 5]], dtype=float)
    assert fronts(v).tolist() == [0, 0, 0, 1, 2, -1]
    crowd = crowding(v, fronts(v))
    assert math.isinf(crowd[0]) and math.isinf(crowd[1]) and crowd[2] == pytest.approx(2.0)


def dominates(a, b):
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


value = st.one_of(st.integers(0, 4).map(float), st.just(math.nan))


@settings(max_examples=150)
@given(st.lists(st.tuples(value, value, st.booleans()), min_size=1, max_size=12), st.floats(0.01, 0.5),
       st.integers(0, 2**32 - 1))
def test_pareto_never_copies_a_dominated_or_failed_member(rows, fraction, seed):
    metrics = [{"acc": a, "size": s} if keep else {"acc": a} for a, s, keep in rows]
    fitness = [-math.inf if math.isnan(a) else 0.0 for a, _, _ in rows]
    st_ = standings(metrics, fitness)
    strategy = Pareto(OBJ, fraction)
    point = [(m.get("acc", math.nan), -m.get("size", math.nan)) for m in metrics]
    valid = [not any(math.isnan(x) for x in p) for p in point]
    for i in range(len(rows)):
        d = strategy.decide(st_.view(i), st_, rng(seed))
        if len(rows) < 2:
            assert d == Continue()
        if isinstance(d, Exploit):
            assert d.source != i and valid[d.source]  # a member with a missing or failed objective is never a source
            assert not (valid[i] and dominates(point[i], point[d.source]))  # never copies a member it dominates


def test_pareto_copies_exactly_the_bottom_quantile_into_the_top():
    # front 0: members 0-2; then 3 (dominated by 2), 4, 5 worst
    rows = [{"acc": 0.9, "size": 9}, {"acc": 0.5, "size": 1}, {"acc": 0.8, "size": 3}, {"acc": 0.7, "size": 4},
            {"acc": 0.4, "size": 5}, {"acc": 0.1, "size": 8}, {"acc": 0.2, "size": 9}, {"acc": 0.3, "size": 6}]
    st_ = standings(rows)
    for seed in range(20):
        decided = {i: Pareto(OBJ, 0.25).decide(st_.view(i), st_, rng(seed)) for i in range(8)}
        copying = {i for i, d in decided.items() if isinstance(d, Exploit)}
        assert copying == {5, 6}  # the last front (q = 2)
        assert {decided[i].source for i in copying} <= {0, 1, 2}  # q = 2 of front 0: its two ends (infinite crowding)
        assert {decided[i].source for i in copying} <= {0, 1}


def test_pareto_decisions_are_order_independent_and_use_the_generation_tiebreak():
    rows = [{"acc": float(i % 3), "size": float(i % 4)} for i in range(12)]
    st_ = standings(rows)
    shared = st_.with_tiebreak(rng(5))
    first = [Pareto(OBJ).decide(shared.view(i), shared, rng(1)) for i in range(12)]
    assert first == [Pareto(OBJ).decide(shared.view(i), shared, rng(1)) for i in range(12)]
    assert any(isinstance(d, Exploit) for d in first)


@pytest.mark.parametrize("objectives", [{"acc": "max"}, {"acc": "up", "size": "min"}, "acc", [["acc", "max"], ["acc", "min"]],
                                        {}, {"": "max", "b": "min"}])
def test_pareto_rejects_bad_objectives_in_one_line(objectives):
    with pytest.raises(SpecError, match="pareto objectives must be a table of metric"):
        Pareto(objectives)


def test_pareto_round_trips_through_its_toml_table():
    made = build_exploit({"type": "pareto", "objectives": {"acc": "max", "size": "min"}, "fraction": 0.3})
    assert made == Pareto(OBJ, 0.3) and made.objectives == (("acc", "max"), ("size", "min"))
    assert made.to_dict() == {"type": "pareto", "objectives": {"acc": "max", "size": "min"}, "fraction": 0.3}
    assert build_exploit(made.to_dict()) == made and Pareto.reads == frozenset({"metrics"})


def test_hypervolume_of_two_objectives():
    assert hypervolume(np.array([[1.0, 1.0]]), (0.0, 0.0)) == 1.0
    assert hypervolume(np.array([[2.0, 1.0], [1.0, 2.0], [0.5, 0.5]]), (0.0, 0.0)) == 3.0
    assert hypervolume(np.array([[-1.0, 5.0]]), (0.0, 0.0)) == 0.0  # below the reference: nothing
