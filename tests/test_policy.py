"""The paper's decisions: ready, exploit (truncation, tournament, t-test) and explore strategies."""

from __future__ import annotations

import json
import math
import sys
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from poptrain.errors import SpecError
from poptrain.records import Continue, Exploit, MemberView
from poptrain.policy import (
    Every,
    ExploitStrategy,
    ExploreFunction,
    ExploreStrategy,
    Fire,
    Noise,
    PB2,
    Pareto,
    Perturb,
    Policy,
    Resample,
    Tournament,
    Truncation,
    TTest,
    build_exploit,
    build_explore,
    build_ready,
    registered,
)
from poptrain.space import Uniform, parse_space
from poptrain.testing import StrategySuite

NEG_INF = -math.inf
seeds = st.integers(0, 2**32 - 1)


def pop(fitnesses, recents=None):
    """Members 0..n-1 with the given fitness (and recent values)."""
    recents = recents or [()] * len(fitnesses)
    return [MemberView(id=i, step=10, fitness=f, recent=tuple(r)) for i, (f, r) in enumerate(zip(fitnesses, recents))]


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- ready


@pytest.mark.parametrize(
    "ready, step, last, expected",
    [
        (Every(4), 3, 0, False),
        (Every(4), 4, 0, True),
        (Every(4), 7, 4, False),
        (Every(4), 8, 4, True),
        (Every(4, burn_in=10), 8, 0, False),
        (Every(4, burn_in=10), 10, 0, True),
        (Every(1), 1, 0, True),
        (Every(1), 1, 1, False),
    ],
)
def test_every(ready, step, last, expected):
    assert ready.is_ready(step, last) is expected


@pytest.mark.parametrize("kwargs", [{"intervals": 0}, {"intervals": 2.5}, {"intervals": 4, "burn_in": -1}])
def test_every_rejects_bad_arguments(kwargs):
    with pytest.raises(SpecError, match="every"):
        Every(**kwargs)


# ---------------------------------------------------------------- truncation


@pytest.mark.parametrize("n, fraction, q", [(2, 0.25, 1), (4, 0.25, 1), (10, 0.2, 2), (10, 0.25, 3),
                                            (3, 0.5, 1), (20, 0.15, 3), (7, 0.5, 3), (100, 0.01, 1)])
def test_truncation_quantile(n, fraction, q):
    assert Truncation(fraction).quantile(n) == q


@settings(max_examples=150)
@given(
    st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, NEG_INF]), min_size=1, max_size=16),
    st.floats(0.01, 0.5),
    seeds,
)
def test_truncation_copies_only_from_top_into_bottom(fitnesses, fraction, seed):
    members = pop(fitnesses)
    strategy = Truncation(fraction)
    n = len(members)
    r = rng(seed)
    for m in members:
        decision = strategy.decide(m, members, r)
        if n < 2:
            assert decision == Continue()
            continue
        q = strategy.quantile(n)
        worse = sum(f < m.fitness for f in fitnesses)
        better = sum(f > m.fitness for f in fitnesses)
        if isinstance(decision, Exploit):
            src = members[decision.source]
            assert src.id != m.id
            assert worse < q  # some tie-break puts m in the bottom q
            assert sum(f > src.fitness for f in fitnesses) < q  # ... and the source in the top q
            assert math.isfinite(src.fitness) and src.fitness >= m.fitness
        elif better >= n - q and sorted(fitnesses, reverse=True)[q - 1] > NEG_INF:
            # m is surely in the bottom q; it continues only if every top-q candidate is -inf
            # (impossible here: the q-th best is finite, so every possible top q has a finite one).
            pytest.fail(f"member {m.id} is in the bottom {q} of {fitnesses} but continued")


@settings(max_examples=100)
@given(st.lists(st.floats(-100, 100), min_size=2, max_size=16, unique=True), st.floats(0.01, 0.5), seeds)
def test_truncation_with_distinct_scores_exploits_exactly_the_bottom(fitnesses, fraction, seed):
    members = pop(fitnesses)
    strategy = Truncation(fraction)
    q = strategy.quantile(len(members))
    ranked = sorted(range(len(members)), key=lambda i: -fitnesses[i])
    top, bottom = set(ranked[:q]), set(ranked[-q:])
    for m in members:
        decision = strategy.decide(m, members, rng(seed))
        assert isinstance(decision, Exploit) == (m.id in bottom)
        if isinstance(decision, Exploit):
            assert decision.source in top


def test_truncation_draws_sources_uniformly_from_the_top():
    members = pop([10, 9, 8, 7, 6, 5, 4, 3, 2, 1])  # q = 3 at fraction 0.25
    counts = {i: 0 for i in range(10)}
    for seed in range(600):
        counts[Truncation(0.25).decide(members[9], members, rng(seed)).source] += 1
    assert {i for i, c in counts.items() if c} == {0, 1, 2}
    assert all(150 < counts[i] < 250 for i in (0, 1, 2))


def test_truncation_two_tied_members_each_copy_the_other_sometimes():
    # The paper's toy starts tied: one of the two must be "bottom" and copy the other.
    a, b = pop([0.39, 0.39])
    decisions = {m.id: [Truncation().decide(m, [a, b], rng(seed)) for seed in range(200)] for m in (a, b)}
    assert Exploit(1) in decisions[0] and Continue() in decisions[0]
    assert Exploit(0) in decisions[1] and Continue() in decisions[1]
    assert 60 < decisions[0].count(Exploit(1)) < 140


def test_truncation_never_copies_minus_inf():
    members = pop([NEG_INF, NEG_INF, NEG_INF, NEG_INF])
    assert all(Truncation(0.5).decide(m, members, rng(s)) == Continue() for m in members for s in range(20))
    members = pop([NEG_INF, 1.0, NEG_INF, NEG_INF])  # top 2 holds 1.0 and a -inf
    for seed in range(50):
        d = Truncation(0.5).decide(members[0], members, rng(seed))
        assert d in (Continue(), Exploit(1))  # member 0 may be tie-broken into the top
    assert Exploit(1) in {Truncation(0.5).decide(members[0], members, rng(s)) for s in range(50)}


def test_truncation_alone_continues_and_uses_the_members_own_view():
    alone = MemberView(id=3, step=1, fitness=1.0)
    assert Truncation().decide(alone, [alone], rng()) == Continue()
    assert Truncation().decide(alone, [], rng()) == Continue()
    stale = pop([5.0, 1.0])
    fresh = MemberView(id=1, step=11, fitness=9.0)  # the member's own view beats the stale row
    assert Truncation().decide(fresh, stale, rng()) == Continue()
    assert Truncation().decide(MemberView(id=7, step=1, fitness=0.0), stale, rng()) == Exploit(0)


@pytest.mark.parametrize("fraction", [0.0, 0.51, -0.1, 1.0, math.nan, "0.25"])
def test_truncation_rejects_bad_fraction(fraction):
    with pytest.raises(SpecError, match="truncation fraction"):
        Truncation(fraction)


# ---------------------------------------------------------------- tournament


def test_tournament_copies_only_a_strictly_better_member():
    members = pop([1.0, 2.0, 3.0, 2.0])
    for seed in range(100):
        d = Tournament().decide(members[1], members, rng(seed))
        assert d in (Continue(), Exploit(2))
    assert {Tournament().decide(members[1], members, rng(s)) for s in range(100)} == {Continue(), Exploit(2)}
    assert all(Tournament().decide(members[0], members, rng(s)) != Continue() for s in range(30))
    tied = pop([0.5, 0.5])
    assert all(Tournament().decide(tied[0], tied, rng(s)) == Continue() for s in range(30))


def test_tournament_draws_the_opponent_uniformly():
    members = pop([0.0, 1.0, 1.0, 1.0])
    counts = {i: 0 for i in range(4)}
    for seed in range(600):
        counts[Tournament().decide(members[0], members, rng(seed)).source] += 1
    assert counts[0] == 0 and all(150 < counts[i] < 250 for i in (1, 2, 3))


def test_tournament_alone_and_minus_inf():
    members = pop([NEG_INF, NEG_INF])
    assert Tournament().decide(members[0], members, rng()) == Continue()
    assert Tournament().decide(members[0], members[:1], rng()) == Continue()
    members = pop([NEG_INF, 0.0])
    assert Tournament().decide(members[0], members, rng()) == Exploit(1)
    assert Tournament().decide(members[1], members, rng()) == Continue()


# ---------------------------------------------------------------- t-test


def test_ttest_copies_a_significantly_better_member():
    mine = [0.0, 0.1, -0.1, 0.05, -0.05]
    theirs = [1.0, 1.1, 0.9, 1.05, 0.95]
    members = pop([mine[-1], theirs[-1]], [mine, theirs])
    assert TTest(window=5).decide(members[0], members, rng()) == Exploit(1)
    assert TTest(window=5).decide(members[1], members, rng()) == Continue()  # worse: never copied


def test_ttest_does_not_copy_a_better_mean_that_is_not_significant():
    mine = [0.0, 1.0, 0.0, 1.0, 0.0]
    theirs = [0.1, 1.1, 0.0, 1.0, 0.1]
    members = pop([mine[-1], theirs[-1]], [mine, theirs])
    assert np.mean(theirs) > np.mean(mine)
    assert TTest(window=5).decide(members[0], members, rng()) == Continue()


def test_ttest_uses_only_the_last_window_values():
    mine = [5.0] * 10 + [0.0, 0.1, 0.05]
    theirs = [-5.0] * 10 + [1.0, 1.1, 1.05]
    members = pop([mine[-1], theirs[-1]], [mine, theirs])
    assert TTest(window=3).decide(members[0], members, rng()) == Exploit(1)
    assert TTest(window=13).decide(members[0], members, rng()) == Continue()


def test_ttest_needs_two_finite_values_and_never_copies_non_finite():
    good = [1.0, 1.1, 0.9]
    bad = [0.0, 0.1, -0.1]
    cases = [
        ([bad, [1.0]], Continue()),  # other has one value
        ([[0.0], good], Continue()),  # member has one finite value
        ([bad, [1.0, math.nan, 1.1]], Continue()),  # other has a NaN
        ([bad, [1.0, math.inf, 1.1]], Continue()),
        ([[0.0, NEG_INF, 0.1, 0.0], good], Exploit(1)),  # member's -inf dropped, 3 finite remain
        ([[0.0, 0.1, NEG_INF], good], Exploit(1)),  # member's last is -inf: it is worst
    ]
    for recents, expected in cases:
        members = pop([r[-1] if math.isfinite(r[-1]) else NEG_INF for r in recents], recents)
        assert TTest().decide(members[0], members, rng()) == expected, recents
    # The other's last fitness is -inf even though its recent values look fine: never a source.
    members = [MemberView(0, 1, 0.0, tuple(bad)), MemberView(1, 1, NEG_INF, tuple(good))]
    assert TTest().decide(members[0], members, rng()) == Continue()


recent_values = st.lists(st.floats(-3, 3).map(lambda x: round(x, 1)), min_size=0, max_size=12)


@settings(max_examples=200)
@given(st.lists(recent_values, min_size=2, max_size=5), st.integers(2, 12), st.floats(0.001, 0.5), seeds)
def test_ttest_never_copies_a_member_that_is_not_significantly_better(recents, window, alpha, seed):
    members = pop([r[-1] if r else NEG_INF for r in recents], recents)
    strategy = TTest(window=window, alpha=alpha)
    for m in members:
        d = strategy.decide(m, members, rng(seed))
        if not isinstance(d, Exploit):
            continue
        theirs = list(members[d.source].recent[-window:])
        assert d.source != m.id and len(theirs) >= 2
        if m.fitness == NEG_INF:
            continue  # no scores yet: the member ranks worst
        mine = list(m.recent[-window:])
        assert np.mean(theirs) > np.mean(mine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's precision warning for near-constant samples
            p = stats.ttest_ind(theirs, mine, equal_var=False).pvalue
        assert p < alpha


@pytest.mark.parametrize("kwargs, message", [({"window": 1}, "ttest window"), ({"window": 2.5}, "ttest window"),
                                             ({"alpha": 0.0}, "ttest alpha"), ({"alpha": 1.5}, "ttest alpha")])
def test_ttest_rejects_bad_arguments(kwargs, message):
    with pytest.raises(SpecError, match=message):
        TTest(**kwargs)


def test_window_attribute():
    assert Truncation().window == 1 and Tournament().window == 1 and TTest(window=7).window == 7


# ---------------------------------------------------------------- every registered strategy


class TestEveryRegisteredStrategy(StrategySuite):
    """The conformance suite over an example() of every registered strategy: a new one is covered with no edit."""


class TestMoreSettings(StrategySuite):
    """The suite again over settings that the examples leave out."""

    strategies = [Every(1, burn_in=3), Truncation(0.5), TTest(window=4, alpha=0.2), Fire(3, 2, history=3, settle=0),
                  Perturb((0.5, 2.0), 0.0), Perturb(resample_probability=1.0), Noise(0.3), PB2(kappa=0.0, history=4)]


# ---------------------------------------------------------------- explore


SPACE = parse_space(
    {
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
        "momentum": {"type": "uniform", "low": 0.0, "high": 0.99},
        "layers": {"type": "int", "low": 1, "high": 8},
        "act": {"type": "choice", "values": ["relu", "tanh", "gelu"]},
    }
)


def module_level_explore(hparams, space, rng):
    """A user explore function: halve the learning rate."""
    return {**hparams, "lr": max(hparams["lr"] / 2, space["lr"].low)}


def bad_explore(hparams, space, rng):
    return {**hparams, "lr": 5.0}


def extra_explore(hparams, space, rng):
    return {**hparams, "dropout": 0.1}


def test_perturb_without_resample_multiplies_by_one_of_the_factors():
    hparams = {"lr": 0.01, "momentum": 0.5, "layers": 4, "act": "tanh"}
    seen = set()
    for seed in range(40):
        new = Perturb((0.5, 2.0), 0.0).explore(hparams, SPACE, rng(seed))
        assert new["lr"] in (pytest.approx(0.005), pytest.approx(0.02))
        assert new["momentum"] in (0.25, 0.99)  # 0.5 * 2 clipped to the bound
        assert new["layers"] in (2, 8) and new["act"] in ("relu", "gelu")
        seen.add((new["lr"] > 0.01, new["momentum"] > 0.5))
    assert len(seen) == 4  # each hyperparameter draws its factor independently


def test_perturb_resamples_with_the_given_probability():
    space = parse_space({"x": Uniform(0.0, 1e6)})
    changed = [Perturb((1.0,), 0.25).explore({"x": 1.0}, space, rng(s))["x"] != 1.0 for s in range(2000)]
    assert np.mean(changed) == pytest.approx(0.25, abs=0.03)
    always = [Perturb((1.0,), 1.0).explore({"x": 1.0}, space, rng(s))["x"] for s in range(200)]
    assert np.median(always) > 1e5  # drawn from the prior, not near 1


def test_resample_draws_from_the_prior():
    new = [Resample().explore({"lr": 0.5, "momentum": 0.5, "layers": 4, "act": "relu"}, SPACE, rng(s))
           for s in range(300)]
    assert {n["layers"] for n in new} == set(range(1, 9)) and {n["act"] for n in new} == {"relu", "tanh", "gelu"}


def test_noise_moves_zeros_which_perturb_cannot():
    # The paper's toy: h = (1, 0) cannot reach (1, 1) by multiplication.
    space = parse_space({"h0": Uniform(0.0, 1.0), "h1": Uniform(0.0, 1.0)})
    h = {"h0": 1.0, "h1": 0.0}
    assert all(Perturb(resample_probability=0.0).explore(h, space, rng(s))["h1"] == 0.0 for s in range(20))
    moved = [Noise(0.1).explore(h, space, rng(s))["h1"] for s in range(200)]
    assert 0.3 < np.mean(np.array(moved) > 0) < 0.7 and max(moved) <= 1.0


def test_explore_rejects_hparams_outside_the_space():
    with pytest.raises(SpecError, match="'dropout'"):
        Perturb().explore({"lr": 0.1, "momentum": 0.5, "layers": 4, "act": "relu", "dropout": 0.1}, SPACE, rng())


def test_explore_function_validates_the_result_and_names_the_function():
    hparams = {"lr": 0.1, "momentum": 0.5, "layers": 4, "act": "relu"}
    assert ExploreFunction(module_level_explore).explore(hparams, SPACE, rng())["lr"] == 0.05
    with pytest.raises(SpecError, match=r"bad_explore.*hyperparameter 'lr' = 5.0 is outside"):
        ExploreFunction(bad_explore).explore(hparams, SPACE, rng())
    with pytest.raises(SpecError, match=r"extra_explore.*unknown hyperparameter 'dropout'"):
        ExploreFunction(extra_explore).explore(hparams, SPACE, rng())
    with pytest.raises(SpecError, match="must return a dict"):
        ExploreFunction(lambda h, s, r: None).explore(hparams, SPACE, rng())
    with pytest.raises(SpecError, match="callable"):
        ExploreFunction(3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Perturb(()), "perturb factors"),
        (lambda: Perturb((0.8, -1.2)), "perturb factors"),
        (lambda: Perturb((0.8, math.inf)), "perturb factors"),
        (lambda: Perturb(resample_probability=1.5), "perturb resample_probability"),
        (lambda: Noise(0.0), "noise sigma"),
        (lambda: Noise(-1.0), "noise sigma"),
    ],
)
def test_explore_rejects_bad_arguments(make, message):
    with pytest.raises(SpecError, match=message):
        make()


# ---------------------------------------------------------------- building from specs


@pytest.mark.parametrize(
    "build, obj",
    [
        (build_ready, Every(4)),
        (build_ready, Every(10, burn_in=20)),
        (build_exploit, Truncation(0.3)),
        (build_exploit, Tournament()),
        (build_exploit, TTest(window=5, alpha=0.1)),
        (build_explore, Perturb((0.9, 1.1), 0.5)),
        (build_explore, Resample()),
        (build_explore, Noise(0.1)),
        (build_explore, ExploreFunction(module_level_explore)),
        (build_explore, PB2(kappa=1.0, history=8)),
        (build_exploit, Pareto({"acc": "max", "size": "min"}, 0.3)),
        (build_exploit, Fire(3, 2)),
    ],
    ids=repr,
)
def test_to_dict_round_trips_through_build(build, obj):
    data = json.loads(json.dumps(obj.to_dict()))
    assert build(data) == obj
    assert build(obj) is obj


def test_to_dict_formats():
    assert Every(4).to_dict() == {"type": "every", "intervals": 4, "burn_in": 0}
    assert Truncation().to_dict() == {"type": "truncation", "fraction": 0.25}
    assert ExploreFunction(module_level_explore).to_dict() == {
        "type": "function", "path": f"{__name__}:module_level_explore"}


def test_build_defaults_and_names():
    assert build_exploit({"type": "truncation"}) == Truncation(0.25)
    assert build_exploit("tournament") == Tournament()
    assert build_explore({"type": "perturb"}) == Perturb((0.8, 1.2), 0.25)


@pytest.mark.parametrize(
    "build, spec, message",
    [
        (build_exploit, {"type": "trunc"}, "exploit: unknown strategy 'trunc' (known: fire, pareto, tournament, truncation, ttest)"),
        (build_explore, {"type": "perturbb"}, "explore: unknown strategy 'perturbb' (known: function, noise, pb2, perturb, resample)"),
        (build_ready, {"type": "often"}, "ready: unknown strategy 'often' (known: every)"),
        (build_exploit, {"type": "truncation", "frac": 0.3}, "exploit: truncation has no argument 'frac'"),
        (build_exploit, {"type": "truncation", "fraction": 0.9}, "exploit: truncation fraction must be in"),
        (build_exploit, {"type": "ttest", "alpha": "low"}, "exploit: ttest alpha must be in"),
        (build_explore, {"type": "noise"}, "explore: noise needs argument 'sigma'"),
        (build_explore, {"type": "perturb", "factors": "0.8"}, "explore: perturb factors"),
        (build_explore, {"type": "function"}, "explore: function needs argument 'path'"),
        (build_explore, {"type": "function", "path": "no_such_module_xyz:f"}, "explore: function: cannot import"),
        (build_explore, {"type": "function", "path": "math:pi"}, "explore: function 'math:pi' is not callable"),
        (build_ready, {"type": "every"}, "ready: every needs argument 'intervals'"),
        (build_ready, {"intervals": 4}, "ready: missing 'type'"),
        (build_ready, 4, "ready: expected a table"),
    ],
)
def test_build_errors_name_the_strategy_and_argument(build, spec, message):
    with pytest.raises(SpecError) as info:
        build(spec)
    assert message in str(info.value)


def test_standings_refuse_a_member_listed_twice():
    with pytest.raises(ValueError, match="each member id once"):
        Truncation().decide(MemberView(0, 1, 0.0), pop([1.0, 2.0]) + pop([3.0]), rng())


# ---------------------------------------------------------------- the registry


@pytest.fixture
def fresh_registry(monkeypatch):
    """The strategy registry, restored after the test registers its own strategies."""
    import copy

    from poptrain.policy import registry

    monkeypatch.setattr(registry, "_REGISTRY", copy.deepcopy(registry._REGISTRY))
    return registry


def test_a_new_strategy_is_one_class(fresh_registry):
    @fresh_registry.strategy("exploit", "best")
    @dataclass(frozen=True)
    class Best(ExploitStrategy):
        """Copy the best member when at least `margin` below it."""

        margin: float
        label: tuple[str, ...] = ("a", "b")

        def __post_init__(self):
            object.__setattr__(self, "label", tuple(self.label))  # a TOML list, held as a tuple

        def decide(self, member, population, rng):
            best = max(population, key=lambda m: m.fitness)
            return Exploit(best.id) if best.fitness - member.fitness >= self.margin else Continue()

    made = build_exploit({"type": "best", "margin": 2.0})
    assert made == Best(2.0) and made.decide(pop([0.0, 3.0])[0], pop([0.0, 3.0]), rng()) == Exploit(1)
    assert made.window == 1 and made.reads == frozenset() and made.history == 1  # the contract's defaults
    assert made.to_dict() == {"type": "best", "margin": 2.0, "label": ["a", "b"]}  # defined in a function: no import path
    assert build_exploit(json.loads(json.dumps(made.to_dict()))) == Best(2.0, ("a", "b"))
    assert "best" in fresh_registry.registered("exploit") and "best" not in fresh_registry.registered("explore")
    with pytest.raises(SpecError, match=r"exploit: best needs argument 'margin'"):
        build_exploit("best")
    with pytest.raises(SpecError, match=r"exploit: best has no argument 'gap' \(arguments: margin, label\)"):
        build_exploit({"type": "best", "margin": 1.0, "gap": 1})
    with pytest.raises(SpecError, match=r"unknown strategy 'trunc' \(known: best, fire, pareto, tournament, truncation, ttest\); "
                                        r"a strategy of your own is named by its import path 'module:Class'"):
        build_exploit("trunc")


def test_registration_checks_the_contract(fresh_registry):
    class Loose(ExploreStrategy):
        def explore(self, hparams, space, rng):
            return dict(hparams)

    with pytest.raises(TypeError, match="frozen dataclass"):
        fresh_registry.strategy("explore", "loose")(Loose)
    with pytest.raises(TypeError, match=r"exploit strategy 'loose': Loose must subclass poptrain.policy.ExploitStrategy"):
        fresh_registry.strategy("exploit", "loose")(dataclass(frozen=True)(Loose))

    @dataclass(frozen=True)
    class Lazy(ExploitStrategy):
        pass

    with pytest.raises(TypeError, match=r"exploit strategy 'lazy': Lazy does not implement decide"):
        fresh_registry.strategy("exploit", "lazy")(Lazy)

    @dataclass(frozen=True)
    class Historian(ExploreStrategy):
        reads: ClassVar[frozenset[str]] = frozenset({"groups"})

        def explore(self, hparams, space, rng):
            return dict(hparams)

    with pytest.raises(TypeError, match="reads groups, which no engine supplies"):
        fresh_registry.strategy("explore", "historian")(Historian)

    @dataclass(frozen=True)
    class Reader(ExploreStrategy):
        reads: ClassVar[frozenset[str]] = frozenset({"history"})

        def explore(self, hparams, space, rng):
            return dict(hparams)

    with pytest.raises(TypeError, match="reads history but does not override explore_batch"):
        fresh_registry.strategy("explore", "reader")(Reader)
    with pytest.raises(ValueError, match="registered twice"):
        fresh_registry.strategy("exploit", "truncation")(dataclass(frozen=True)(type("Other", (Truncation,), {})))
    with pytest.raises(ValueError, match="must not contain ':'"):
        fresh_registry.strategy("explore", "a:b")(dataclass(frozen=True)(type("Colon", (Resample,), {})))
    with pytest.raises(ValueError, match="role"):
        fresh_registry.strategy("select", "x")


class DuckExploit:
    """Has decide() but does not subclass ExploitStrategy."""

    window = 1

    def decide(self, member, population, rng):
        return Continue()

    def to_dict(self):
        return {"type": "duck"}


@dataclass(frozen=True)
class Greedy(ExploitStrategy):
    """An unregistered exploit of the user's own: copy the best member if it is better."""

    margin: float = 0.0

    def decide(self, member, population, rng):
        best = max(population, key=lambda m: m.fitness)
        return Exploit(best.id) if best.id != member.id and best.fitness > member.fitness + self.margin else Continue()


def test_build_takes_a_strategy_instance_only_if_it_follows_the_contract():
    greedy = Greedy(0.5)
    assert build_exploit(greedy) is greedy  # not registered, but it subclasses the contract
    with pytest.raises(SpecError, match=r"exploit: DuckExploit is not an exploit strategy: subclass "
                                        r"poptrain.policy.ExploitStrategy"):
        build_exploit(DuckExploit())
    with pytest.raises(SpecError, match=r"explore: Truncation is not an explore strategy"):
        build_explore(Truncation())


def test_a_strategy_of_the_users_own_is_named_by_its_import_path():
    path = f"{__name__}:Greedy"
    assert Greedy(0.5).to_dict() == {"type": path, "margin": 0.5}  # so a fresh worker imports it
    assert build_exploit({"type": path, "margin": 0.5}) == Greedy(0.5)
    assert Perturb().to_dict()["type"] == "perturb"  # poptrain's own: its registered name
    assert build_explore({"type": "poptrain.policy.perturb:Perturb"}) == Perturb()
    with pytest.raises(SpecError, match=rf"exploit: {path} has no argument 'gap'"):
        build_exploit({"type": path, "gap": 1})
    with pytest.raises(SpecError, match=rf"explore: {path} is not an explore strategy"):
        build_explore({"type": path})
    with pytest.raises(SpecError, match=r"exploit: cannot import module 'no_such_module_xyz'"):
        build_exploit({"type": "no_such_module_xyz:Greedy"})
    with pytest.raises(SpecError, match=rf"exploit: {__name__}:ExploitStrategy does not implement decide"):
        build_exploit({"type": f"{__name__}:ExploitStrategy"})


@pytest.mark.parametrize("kind", [":", "..x:y", "os:", "a b:c", "\x00:x", "x:1"])
def test_a_type_that_is_neither_a_name_nor_an_import_path_is_one_clear_error(kind):
    with pytest.raises(SpecError, match=r"explore: unknown strategy .*import path 'module:Class'"):
        build_explore({"type": kind})


def test_the_policy_reads_what_its_strategies_declare():
    policy = Policy(Every(1), Greedy(), Resample(), SPACE, seed=0)  # an unregistered exploit: the contract's defaults
    assert policy.reads == frozenset() and policy.window == 1 and policy.history == 1
    policy = Policy(Every(1), TTest(window=7), PB2(history=20), SPACE, seed=0)
    assert policy.reads == {"recent", "history"} and policy.explore_reads == {"history"}
    assert policy.window == 7 and policy.history == 20
    assert Policy(Every(1), Fire(history=9), PB2(history=5), SPACE, seed=0).history == 9
    assert Policy(Every(1), Truncation(), PB2(history=5), SPACE, seed=0).window == 1
    none = Policy(Every(1), None, Perturb(), SPACE, seed=0)
    assert none.reads == frozenset() and none.window == 1 and none.history == 1


def test_operations_default_to_the_strategys_name():
    assert Resample().operations({}, SPACE, rng()) == dict.fromkeys(SPACE, "resample")
    assert ExploreFunction(module_level_explore).operations({}, SPACE, rng()) == dict.fromkeys(SPACE, "function")


def test_strategies_declare_what_they_read():
    assert TTest.reads == frozenset({"recent"})
    assert PB2.reads == frozenset({"history"}) and Pareto.reads == frozenset({"metrics"})
    assert all(not cls.reads for cls in (Truncation, Tournament, Every, Perturb, Resample, Noise, ExploreFunction))
    assert {k for role in ("ready", "exploit", "explore") for k in registered(role)} >= {
        "every", "truncation", "tournament", "ttest", "perturb", "resample", "noise", "function", "pb2", "pareto", "fire"}


def test_explore_function_accepts_a_function_or_its_path():
    path = f"{__name__}:module_level_explore"
    assert ExploreFunction(path) == ExploreFunction(module_level_explore) and ExploreFunction(path).fn is module_level_explore


def test_a_strategy_module_shadowed_by_one_imported_earlier_names_both_files(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, name in ((first, "Earlier"), (second, "Later")):
        folder.mkdir()
        (folder / "shadowed_strategies_xyz.py").write_text(f"class {name}:\n    pass\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(first))
    monkeypatch.delitem(sys.modules, "shadowed_strategies_xyz", raising=False)
    import shadowed_strategies_xyz  # noqa: F401  (what an earlier experiment of this process imported)
    with pytest.raises(SpecError, match=r"has no attribute 'Later'.*already imported .*first.*"
                                        r"shadowed_strategies_xyz\.py.*rename one of the two modules"):
        build_explore({"type": "shadowed_strategies_xyz:Later"}, paths=[str(second)])
    monkeypatch.delitem(sys.modules, "shadowed_strategies_xyz")
