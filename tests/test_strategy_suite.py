"""The strategy conformance suite: it fails a strategy that breaks the contract, and covers whatever is registered.

(tests/test_policy.py runs it over every registered strategy.)
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass

import pytest

from poptrain.errors import SpecError
from poptrain.records import Continue, Exploit
from poptrain.policy import ExploitStrategy, ExploreStrategy, ReadyCriterion, Resample
from poptrain.testing import StrategySuite

pytest_plugins = ["pytester"]
suite = StrategySuite()


@dataclass(frozen=True)
class CopiesItself(ExploitStrategy):
    def decide(self, member, population, rng):
        return Exploit(member.id)


@dataclass(frozen=True)
class CopiesTheWorst(ExploitStrategy):
    def decide(self, member, population, rng):  # a failed member (-inf) is the worst: never a source
        worst = population.ids[int(population.fitness.argmin())]
        return Exploit(int(worst)) if worst != member.id else Continue()


@dataclass(frozen=True)
class CopiesByPosition(ExploitStrategy):
    def decide(self, member, population, rng):  # takes a position for an id
        return Exploit(len(population) + 1000)


@dataclass(frozen=True)
class CopiesTheFirstListed(ExploitStrategy):
    def decide(self, member, population, rng):  # depends on the order a store lists members in
        first = next(iter(population.recent))
        return Exploit(first) if first != member.id else Continue()


@dataclass(frozen=True)
class NeverCopies(ExploitStrategy):
    def decide(self, member, population, rng):
        return Continue()


@dataclass(frozen=True)
class OutOfBounds(ExploreStrategy):
    def explore(self, hparams, space, rng):
        return {**hparams, "lr": 5.0}


@dataclass(frozen=True)
class IntAsFloat(ExploreStrategy):
    def explore(self, hparams, space, rng):
        return {**hparams, "layers": float(hparams["layers"])}


@dataclass(frozen=True)
class GlobalRandom(ExploreStrategy):
    def explore(self, hparams, space, rng):  # ignores the generator it is handed
        return {**hparams, "momentum": random.uniform(0.0, 0.99)}


@dataclass(frozen=True)
class Mutates(ExploreStrategy):
    def explore(self, hparams, space, rng):
        hparams["lr"] = space["lr"].low
        return dict(hparams)


@dataclass(frozen=True)
class NamesOne(Resample):
    def operations(self, hparams, space, rng):
        return {"lr": "resample"}


@dataclass(frozen=True)
class LosesRequests(Resample):
    def explore_batch(self, requests, space, rngs, standings):
        return [self.explore(h, space, r) for (_, h), r in list(zip(requests, rngs))[:1]]


@dataclass(frozen=True)
class AlwaysReady(ReadyCriterion):
    def is_ready(self, step, last_ready_step):
        return True


@dataclass(frozen=True)
class NeverReady(ReadyCriterion):
    def is_ready(self, step, last_ready_step):
        return False


@pytest.mark.parametrize("test, strategy", [
    (suite.test_exploit_copies_only_another_scored_member, CopiesItself()),
    (suite.test_exploit_copies_only_another_scored_member, CopiesTheWorst()),
    (suite.test_exploit_copies_only_another_scored_member, CopiesByPosition()),
    (suite.test_exploit_is_reproducible_whatever_the_order, CopiesTheFirstListed()),
    (suite.test_exploit_alone_continues_and_a_spread_population_copies, NeverCopies()),
    (suite.test_exploit_alone_continues_and_a_spread_population_copies, CopiesItself()),
    (suite.test_explore_returns_new_hparams_in_the_space, OutOfBounds()),
    (suite.test_explore_returns_new_hparams_in_the_space, IntAsFloat()),
    (suite.test_explore_returns_new_hparams_in_the_space, GlobalRandom()),
    (suite.test_explore_returns_new_hparams_in_the_space, Mutates()),
    (suite.test_operations_name_every_hyperparameter, NamesOne()),
    (suite.test_explore_batch_returns_one_valid_explore_per_request, LosesRequests()),
    (suite.test_explore_batch_returns_one_valid_explore_per_request, OutOfBounds()),
    (suite.test_ready_is_a_reproducible_bool_and_never_twice_at_one_step, AlwaysReady()),
    (suite.test_ready_is_a_reproducible_bool_and_never_twice_at_one_step, NeverReady()),
], ids=lambda x: getattr(x, "__name__", type(x).__name__))
def test_the_suite_fails_a_strategy_that_breaks_the_contract(test, strategy):
    with pytest.raises((AssertionError, SpecError)):
        test(strategy)


def test_an_unregistered_strategy_round_trips_by_its_import_path():
    suite.test_round_trips_through_its_spec(NamesOne())
    assert NamesOne().to_dict() == {"type": f"{__name__}:NamesOne"}


def test_the_suite_covers_a_strategy_once_it_is_registered(pytester):
    pytester.makepyfile(test_mine=textwrap.dedent('''
        from dataclasses import dataclass

        from poptrain.policy import ExploreStrategy, strategy
        from poptrain.testing import StrategySuite


        @strategy("explore", "halve")
        @dataclass(frozen=True)
        class Halve(ExploreStrategy):
            def explore(self, hparams, space, rng):
                return {name: domain.perturb(hparams[name], 0.5, rng) for name, domain in space.items()}


        class TestAll(StrategySuite):
            pass
    '''))
    result = pytester.runpytest_subprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    collected = result.stdout.str()
    for test in ("test_explore_returns_new_hparams_in_the_space[halve]", "test_operations_name_every_hyperparameter[halve]",
                 "test_round_trips_through_its_spec[halve]", "test_exploit_copies_only_another_scored_member[truncation]",
                 "test_ready_is_a_reproducible_bool_and_never_twice_at_one_step[every]"):
        assert test in collected, collected
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-k", "halve")
    result.assert_outcomes(passed=5)  # contract, round trip, explore, operations, batch
