"""FIRE PBT's exploit: sub-populations, evaluator members and improvement-rate fitness against PBT's greed.

After Dalibard & Jaderberg, "Faster Improvement Rate Population Based Training" (2021). PBT ranks
members by their score now, so a change that pays at once (lowering the learning rate) wins even
when it costs the final result. FIRE keeps that greedy search in one sub-population and ranks the
others by how fast their members improve, on the paper's assumption that of two members training
with similar hyperparameters, the faster improver ends better.

What this strategy does (a member's sub-population is its id modulo `subpopulations`, so it is a
pure function of the id and no engine has to supply groups):

- sub-population 0 is PBT: truncation selection on the latest score, in which the evaluators of
  sub-population 1 (below) compete as sources, so annealed weights that score better flow into it;
- in every other sub-population g, the members other than its evaluators (its trainers) are
  ranked by improvement rate: the least-squares slope of fitness over their recent intervals at
  unchanged hyperparameters, leaving out the first `settle` intervals after a change (the jump a
  lower learning rate makes at once is the greed to discount). The bottom `fraction` of g's
  trainers copies one with a faster rate, drawn uniformly from the top `fraction`. A member whose
  rate cannot be measured yet (too few intervals since its last change) neither copies nor is
  copied on rate;
- the last `evaluators` members (by id) of each sub-population g > 0 are its evaluators: at each
  ready point an evaluator takes the weights of g's fastest-improving trainer together with the
  hyperparameters of the best-scoring member of g - 1 (the greedy schedule, a lower learning rate
  as a rule), so its score is what those weights are worth once annealed; it keeps what it holds
  while it scores best of the whole population. Evaluators are where a run's result comes from.

Simplified from the paper: a trainer's fitness is its own improvement rate, not the rate of the
evaluator curve measured against the sub-population below; an evaluator copies, rather than
shadows, the trainer it evaluates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..records import Continue, Decision, Exploit, MemberView, Standings
from .checks import check_int, check_number
from .ranking import best_first, standings_with, top_and_bottom
from .registry import HISTORY, ExploitStrategy, PopulationView, strategy


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
class Fire(ExploitStrategy):
    """Sub-population 0 by score (PBT), the others by improvement rate, evaluators carrying weights upward."""

    subpopulations: int = 2
    evaluators: int = 1
    fraction: float = 0.25
    history: int = 8  # each member's latest intervals read to measure its improvement rate
    settle: int = 1  # intervals after a change of hyperparameters left out of the rate
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

    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision:
        """The member's rule: PBT in sub-population 0, evaluator or improvement-rate truncation elsewhere."""
        standings = standings_with(member, population)
        groups, evaluators = self.roles(standings.ids)
        g = self.group(member.id)
        mine = groups.get(g, [])
        fit = {int(m): float(f) for m, f in zip(standings.ids, standings.fitness)}
        if g == 0:  # PBT, where the evaluators above (annealed weights) compete as sources too
            above = [m for m in groups.get(1, []) if m in evaluators]
            return self._truncate(member.id, mine + above, fit, rng, bottom=mine)
        trainers = [m for m in mine if m not in evaluators]
        rates = {m: improvement_rate(standings, m, self.settle) for m in trainers if fit[m] > -math.inf}
        known = {m: r for m, r in rates.items() if not math.isnan(r)}
        if member.id in evaluators:
            return self._evaluate(member.id, known, [m for m in groups.get(g - 1, []) if m not in evaluators],
                                  [m for m in standings.ids if int(m) != member.id], fit, standings)
        if fit[member.id] == -math.inf:  # a failed score: copy the best-scoring trainer of its sub-population
            scored = [m for m in trainers if fit[m] > -math.inf]
            return Exploit(max(scored, key=lambda m: (fit[m], -m))) if scored else Continue()
        return self._truncate(member.id, [m for m in trainers if m in known], known, rng)

    def _evaluate(self, member: int, rates: dict[int, float], below: list[int], others: list[int],
                  fit: dict[int, float], standings: Standings) -> Decision:
        """An evaluator's rule: take the fastest-improving trainer's weights with the hparams of the best below.

        It anneals the trainer's weights with the greedy sub-population's current schedule, so its
        score says what those weights are worth now; it keeps what it holds while that scores
        best of the whole population (the run's result).
        """
        if fit[member] > -math.inf and all(fit[member] >= fit[int(m)] for m in others):
            return Continue()
        scored_below = [m for m in below if fit[m] > -math.inf and standings.history.get(m)]
        if not rates or not scored_below:
            return Continue()
        fastest = max(rates, key=lambda m: (rates[m], -m))
        greedy = max(scored_below, key=lambda m: (fit[m], -m))
        return Exploit(fastest, dict(standings.history[greedy][-1].hparams))

    def _truncate(self, member: int, pool: list[int], value: dict[int, float], rng: np.random.Generator,
                  bottom: list[int] | None = None) -> Decision:
        """Truncation in `pool` by `value`: a member in the bottom q of `bottom` copies one of the top q."""
        bottom = pool if bottom is None else bottom
        if member not in bottom or len(pool) < 2:
            return Continue()
        shuffled = rng.permutation(len(pool))
        ranked = [pool[i] for i in best_first(np.array([value[m] for m in pool], dtype=np.float64), shuffled)]
        top, losers = top_and_bottom(ranked, self.fraction, among=bottom)
        if member not in losers:
            return Continue()
        top = [m for m in top if value[m] > value[member] and value[m] > -math.inf]
        return Exploit(top[int(rng.integers(len(top)))]) if top else Continue()
