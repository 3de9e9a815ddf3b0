"""The conformance suite every ready, exploit and explore strategy passes, importable by strategies written elsewhere.

Use it as a base class in a test module. By default it tests an `example()` of every registered
strategy, so importing the module that registers yours is enough; or list instances of your own:

    from poptrain.testing import StrategySuite

    import my_strategies  # registers them with @strategy

    class TestStrategies(StrategySuite):
        pass  # every registered strategy, poptrain's and yours

    class TestScale(StrategySuite):
        strategies = [my_strategies.Scale(0.9)]  # only these

The populations it decides on have random member ids, a tenth to a fifth of them with a failed
latest score, `window` recent scores and `history` intervals per member (hyperparameters in
`SPACE`, changed once by some copies), and the metrics 'accuracy' (the score) and 'size'.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ..records import Continue, Exploit, Hparams, Interval, Standings
from ..policy.registry import READS, ROLES, Strategy, build, registered, role_of
from ..space import parse_space, sample_hparams, validate_hparams

SPACE = parse_space({
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
    "momentum": {"type": "uniform", "low": 0.0, "high": 0.99},
    "layers": {"type": "int", "low": 1, "high": 8},
    "act": {"type": "choice", "values": ["relu", "tanh", "gelu"]},
})
TYPES = {"lr": float, "momentum": float, "layers": int, "act": str}
seeds = st.integers(0, 2**32 - 1)
# Each test gets a fresh instance of the (stateless) suite class, which hypothesis would take for a fault.
QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.differing_executors]
few = settings(max_examples=25, deadline=None, suppress_health_check=QUIET)
fewer = settings(max_examples=6, deadline=None, suppress_health_check=QUIET)


def population(seed: int, n: int, failed: float = 0.2, window: int = 10, history: int = 12) -> Standings:
    """`n` members with random ids whose fitness drifts over `history` intervals; about `failed` of them failed last."""
    rs = np.random.default_rng(seed)
    ids = np.sort(rs.choice(1000, size=n, replace=False))
    steps = np.arange(1, max(window, history) + 1)
    recent, past, current, metrics, last = {}, {}, {}, {}, []
    for m in (int(i) for i in ids):
        fits = rs.normal(0, 1) + rs.normal(0, 0.1) * steps + rs.normal(0, 0.05, len(steps))
        if rs.random() < failed:
            fits[-1] = -math.inf
        before = sample_hparams(SPACE, rs)
        after = sample_hparams(SPACE, rs) if rs.random() < 0.5 else before  # a copy changed them
        change = int(rs.integers(1, len(steps)))
        past[m] = tuple(Interval(int(s), float(f), before if k < change else after)
                        for k, (s, f) in enumerate(zip(steps, fits)))[-history:]
        recent[m] = tuple(float(f) for f in fits[-window:])
        current[m] = sample_hparams(SPACE, rs) if rs.random() < 0.2 else after  # some explored since
        metrics[m] = {"accuracy": float(fits[-1]), "size": float(rs.uniform(1, 100))} if fits[-1] > -math.inf else {}
        last.append(fits[-1])
    return Standings(ids, np.array(last), recent, int(steps[-1]), None, past, current, metrics)


def shuffled(standings: Standings, seed: int) -> Standings:
    """The same standings with every mapping in another order (as another store might return them)."""
    order = [int(m) for m in np.random.default_rng(seed).permutation(standings.ids)]

    def again(mapping: Any) -> dict[int, Any]:
        return {m: mapping[m] for m in order if m in mapping}

    return Standings(standings.ids[::-1].copy(), standings.fitness[::-1].copy(), again(standings.recent),
                     standings.step, None, again(standings.history), again(standings.current),
                     again(standings.metrics))


def name(strategy: Any) -> str:
    """A strategy's name in test ids: its registered name, or its class name."""
    return type(strategy).__dict__.get("kind") or type(strategy).__name__


class StrategySuite:
    """The strategy conformance tests; subclass it as `Test...` (see the module)."""

    strategies: ClassVar[Sequence[Strategy] | None] = None  # None: an example() of every registered strategy

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """Run each test over the strategies of its role (its argument names the role), read at collection time."""
        chosen = list(self.strategies) if self.strategies is not None else \
            [cls.example() for role in ROLES for cls in registered(role).values()]
        for role in (*ROLES, None):
            arg = f"{role}_strategy" if role else "strategy"
            if arg in metafunc.fixturenames:
                mine = [s for s in chosen if role is None or role_of(s) == role]
                metafunc.parametrize(arg, mine, ids=[name(s) for s in mine])

    def population(self, seed: int, n: int, failed: float, strategy: Strategy) -> Standings:
        """The standings a strategy decides on, with as many recent scores and intervals as it reads."""
        window = strategy.window if role_of(strategy) == "exploit" else 2  # type: ignore[attr-defined]
        return population(seed, n, failed, window=max(2, window), history=max(2, strategy.history))

    # ------------------------------------------------------------ every strategy

    def test_follows_its_roles_contract(self, strategy: Strategy) -> None:
        role = role_of(strategy)
        assert role in ROLES, f"{name(strategy)} subclasses none of ReadyCriterion, ExploitStrategy, ExploreStrategy"
        assert set(strategy.reads) <= READS, f"{name(strategy)} reads {set(strategy.reads) - READS}, which no engine supplies"
        assert isinstance(strategy.history, int) and strategy.history >= 1
        if role == "exploit":
            assert isinstance(strategy.window, int) and strategy.window >= 1  # type: ignore[attr-defined]

    def test_round_trips_through_its_spec(self, strategy: Strategy) -> None:
        role = role_of(strategy)
        data = json.loads(json.dumps(strategy.to_dict()))  # as a stored spec holds it
        assert isinstance(data["type"], str)
        assert build(role, data) == strategy
        assert build(role, strategy) is strategy

    # ------------------------------------------------------------ ready

    def test_ready_is_a_reproducible_bool_and_never_twice_at_one_step(self, ready_strategy: Strategy) -> None:
        answers = [ready_strategy.is_ready(step, last) for step in range(0, 60) for last in range(0, step + 1, 7)]
        assert all(a is True or a is False for a in answers)
        assert answers == [ready_strategy.is_ready(step, last) for step in range(0, 60) for last in range(0, step + 1, 7)]
        assert not any(ready_strategy.is_ready(step, step) for step in range(0, 60))
        assert any(ready_strategy.is_ready(step, 0) for step in range(1, 10_000)), "never ready"

    # ------------------------------------------------------------ exploit

    @few
    @given(seed=seeds, n=st.integers(1, 12), failed=st.sampled_from([0.0, 0.2, 0.6]))
    @example(seed=0, n=10, failed=0.6)  # always some failed members
    def test_exploit_copies_only_another_scored_member(self, exploit_strategy: Strategy, seed: int, n: int,
                                                       failed: float) -> None:
        standings = self.population(seed, n, failed, exploit_strategy)
        ids = {int(m) for m in standings.ids}
        for m in ids:
            view = standings.view(m)
            decision = exploit_strategy.decide(view, standings, np.random.default_rng(seed + m))
            assert isinstance(decision, (Continue, Exploit)), decision
            if isinstance(decision, Exploit):
                assert decision.source != m, f"member {m} copies itself"
                assert decision.source in ids, f"member {m} copies {decision.source}, which is not in the population"
                assert standings.fitness[standings.index(decision.source)] > -math.inf, "copies a failed member"
                if decision.hparams is not None:
                    assert validate_hparams(SPACE, decision.hparams, "exploit") == dict(decision.hparams)

    @few
    @given(seed=seeds, n=st.integers(2, 12))
    @example(seed=0, n=10)
    def test_exploit_is_reproducible_whatever_the_order(self, exploit_strategy: Strategy, seed: int, n: int) -> None:
        standings = self.population(seed, n, 0.2, exploit_strategy)
        other = shuffled(standings, seed)

        def decisions(s: Standings) -> list[Any]:
            return [exploit_strategy.decide(s.view(int(m)), s, np.random.default_rng([seed, int(m)]))
                    for m in standings.ids]

        first = decisions(standings)
        assert first == decisions(standings)
        assert first == decisions(other)

    def test_exploit_alone_continues_and_a_spread_population_copies(self, exploit_strategy: Strategy) -> None:
        alone = self.population(0, 1, 0.0, exploit_strategy)
        assert exploit_strategy.decide(alone.view(int(alone.ids[0])), alone, np.random.default_rng(0)) == Continue()
        copied = False
        for seed in range(10):
            standings = self.population(seed, 8, 0.0, exploit_strategy)
            copied = copied or any(isinstance(exploit_strategy.decide(standings.view(int(m)), standings,
                                                                      np.random.default_rng(seed)), Exploit)
                                   for m in standings.ids)
        assert copied, "no member of ten populations with spread-out scores ever copied"

    # ------------------------------------------------------------ explore

    @few
    @given(seed=seeds)
    def test_explore_returns_new_hparams_in_the_space(self, explore_strategy: Strategy, seed: int) -> None:
        hparams = sample_hparams(SPACE, np.random.default_rng(seed))
        before = dict(hparams)
        new = explore_strategy.explore(hparams, SPACE, np.random.default_rng(seed + 1))
        assert new is not hparams and hparams == before, "explore changed the hparams it was given"
        assert validate_hparams(SPACE, new, "explored") == new
        assert {k: type(v) for k, v in new.items()} == TYPES
        assert new == explore_strategy.explore(hparams, SPACE, np.random.default_rng(seed + 1)), "not reproducible"

    @few
    @given(seed=seeds)
    def test_operations_name_every_hyperparameter(self, explore_strategy: Strategy, seed: int) -> None:
        hparams = sample_hparams(SPACE, np.random.default_rng(seed))
        ops = explore_strategy.operations(hparams, SPACE, np.random.default_rng(seed + 1))
        assert set(ops) == set(SPACE) and all(isinstance(op, str) and op for op in ops.values()), ops
        assert ops == explore_strategy.operations(hparams, SPACE, np.random.default_rng(seed + 1))

    @fewer
    @given(seed=seeds, n=st.integers(1, 8), k=st.integers(0, 3))
    @example(seed=0, n=6, k=3)  # always one batch of several requests
    def test_explore_batch_returns_one_valid_explore_per_request(self, explore_strategy: Strategy, seed: int,
                                                                 n: int, k: int) -> None:
        standings = self.population(seed, n, 0.2, explore_strategy)
        rs = np.random.default_rng(seed)
        requests = [(int(m), sample_hparams(SPACE, rs)) for m in standings.ids[:k]]
        before = [dict(h) for _, h in requests]

        def batch() -> list[Hparams]:
            rngs = [np.random.default_rng([seed, m]) for m, _ in requests]
            return explore_strategy.explore_batch(requests, SPACE, rngs, standings)

        out = batch()
        assert len(out) == len(requests) and [h for _, h in requests] == before
        for new in out:
            assert validate_hparams(SPACE, new, "explored") == new
            assert {key: type(v) for key, v in new.items()} == TYPES
        assert out == batch(), "not reproducible"
