"""FIRE PBT's exploit: sub-populations, evaluator members and improvement-rate fitness against PBT's greed.

After Dalibard & Jaderberg, "Faster Improvement Rate Population Based Training" (2021). PBT ranks
members by their score now, so a change that pays at once (lowering the learning rate) wins even
when it costs the final result. FIRE keeps that greedy search in one sub-population and ranks the
others by how fast their members improve, on the paper's assumption that of two members training
with similar hyperparameters, the faster improver ends better.

What this strategy does (a member's sub-population is its id modulo `subpopulations`, so it is a
pure function of the id and no engine has to supply groups):

- sub-population 0 is PBT: truncation selection on the latest score;
- in every other sub-population g, the last `evaluators` members (by id) are evaluators: each
  copies the best-scoring member of sub-population g - 1 when that member scores better than the
  evaluator, so the greedy search's weights enter g, and there they must prove themselves;
- the other members of g (its trainers) are ranked by improvement rate: the least-squares slope of
  fitness over their recent intervals at unchanged hyperparameters, leaving out the first `settle`
  intervals after a change (the jump a lower learning rate makes at once is the greed to discount).
  The bottom `fraction` of g's trainers copies one of the members of g (trainers and evaluators)
  with a faster rate, drawn uniformly from the top `fraction`. A member whose rate cannot be
  measured yet (too few intervals since its last change) neither copies nor is copied on rate.

Not in this strategy: the paper's evaluators also retrain a copy of a trainer's weights with the
lower sub-population's hyperparameters to score it; here an evaluator carries the lower
sub-population's weights upward and is ranked by its own rate. The run's result is its best member
over every sub-population.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..population import Continue, Decision, Exploit, MemberView, Standings
from .checks import check_int, check_number
from .ranking import standings_with
from .registry import HISTORY, PopulationView, Strategy, strategy


def improvement_rate(standings: Standings, member: int, settle: int) -> float:
    """The slope of `member`'s fitness per step over its recent intervals at its current hparams; NaN if unknown."""
    past = standings.history.get(member, ())
    if not past:
        return math.nan
    current = past[-1].hparams
    run = []
    for point in reversed(past):
        if point.hparams != current:
            break
        run.append(point)
    run.reverse()
    changed = len(run) < len(past)  # the run started with a change (a copy) inside the history read
    run = run[settle:] if changed else run
    steps = np.array([p.step for p in run], dtype=np.float64)
    fit = np.array([p.fitness for p in run], dtype=np.float64)
    if len(run) < 2 or not np.isfinite(fit).all() or np.ptp(steps) == 0:
        return math.nan
    return float(np.polyfit(steps, fit, 1)[0])


@strategy("exploit", "fire")
@dataclass(frozen=True)
class Fire(Strategy):
    """Sub-population 0 by score (PBT), the others by improvement rate, evaluators carrying weights upward."""

    subpopulations: int = 2
    evaluators: int = 1
    fraction: float = 0.25
    history: int = 8  # each member's latest intervals read to measure its improvement rate
    settle: int = 1  # intervals after a change of hyperparameters left out of the rate
    window: ClassVar[int] = 1
    reads: ClassVar[frozenset[str]] = frozenset({HISTORY})

    def __post_init__(self) -> None:
        object.__setattr__(self, "subpopulations", check_int("fire", "subpopulations", self.subpopulations, 1, 1000))
        object.__setattr__(self, "evaluators", check_int("fire", "evaluators", self.evaluators, 0, 1000))
        object.__setattr__(self, "fraction", check_number("fire", "fraction", self.fraction, 0.0, 0.5))
        object.__setattr__(self, "history", check_int("fire", "history", self.history, 3, 10_000))
        object.__setattr__(self, "settle", check_int("fire", "settle", self.settle, 0, self.history - 2))

    def group(self, member: int) -> int:
        """The sub-population of `member`."""
        return int(member) % self.subpopulations

    def roles(self, ids: np.ndarray) -> tuple[dict[int, list[int]], set[int]]:
        """Each sub-population's members (ascending) and the evaluators among them (none in sub-population 0)."""
        groups: dict[int, list[int]] = {}
        for m in ids:
            groups.setdefault(self.group(int(m)), []).append(int(m))
        evaluators = set()
        for g, members in groups.items():
            if g > 0 and self.evaluators:
                evaluators |= set(members[-min(self.evaluators, len(members) - 1):]) if len(members) > 1 else set()
        return groups, evaluators

    def quantile(self, n: int) -> int:
        """q = max(1, ceil(n * fraction)), at most n // 2."""
        return min(max(1, math.ceil(round(n * self.fraction, 9))), n // 2)

    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision:
        """The member's rule: PBT in sub-population 0, evaluator or improvement-rate truncation elsewhere."""
        standings = standings_with(member, population)
        groups, evaluators = self.roles(standings.ids)
        g = self.group(member.id)
        mine = groups.get(g, [])
        fit = {int(m): float(f) for m, f in zip(standings.ids, standings.fitness)}
        if g == 0:
            return self._truncate(member.id, mine, fit, rng)
        if member.id in evaluators:
            below = [m for m in groups.get(g - 1, []) if m not in evaluators and fit[m] > -math.inf]
            if not below:
                return Continue()
            best = max(below, key=lambda m: (fit[m], -m))
            return Exploit(best) if fit[best] > fit[member.id] else Continue()
        if fit[member.id] == -math.inf:  # a failed score: copy the best-scoring member of its sub-population
            scored = [m for m in mine if fit[m] > -math.inf]
            return Exploit(max(scored, key=lambda m: (fit[m], -m))) if scored else Continue()
        rates = {m: improvement_rate(standings, m, self.settle) for m in mine if fit[m] > -math.inf}
        known = {m: r for m, r in rates.items() if not math.isnan(r)}
        return self._truncate(member.id, [m for m in mine if m in known], known, rng,
                              bottom=[m for m in mine if m in known and m not in evaluators])

    def _truncate(self, member: int, pool: list[int], value: dict[int, float], rng: np.random.Generator,
                  bottom: list[int] | None = None) -> Decision:
        """Truncation in `pool` by `value`: a member in the bottom q of `bottom` copies one of the top q."""
        bottom = pool if bottom is None else bottom
        if member not in bottom or len(pool) < 2:
            return Continue()
        shuffled = [pool[i] for i in rng.permutation(len(pool))]
        ranked = sorted(shuffled, key=lambda m: -value[m])  # stable: ties in random order
        q = self.quantile(len(pool))
        losers = [m for m in ranked if m in bottom][-q:]
        if member not in losers:
            return Continue()
        top = [m for m in ranked[:q] if value[m] > value[member] and value[m] > -math.inf]
        return Exploit(top[int(rng.integers(len(top)))]) if top else Continue()
