"""Truncation selection: the bottom of the population copies a member of the top (the paper's default)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..records import Continue, Decision, Exploit, MemberView
from .checks import check_number
from .ranking import best_first, quantile, standings_with, top_and_bottom
from .registry import ExploitStrategy, PopulationView, strategy


@strategy("exploit", "truncation")
@dataclass(frozen=True)
class Truncation(ExploitStrategy):
    """Bottom `fraction` of the population (random tie-breaks) copies a uniform draw from the top."""

    fraction: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", check_number("truncation", "fraction", self.fraction, 0.0, 0.5))

    def quantile(self, n: int) -> int:
        """q = max(1, ceil(n * fraction)), at most n // 2: the size of the top and of the bottom."""
        return quantile(n, self.fraction)

    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision:
        """Exploit a top-q member if `member` ranks in the bottom q, else Continue."""
        standings = standings_with(member, population)
        n = len(standings)
        if n < 2:
            return Continue()
        # Ties are broken uniformly at random (one shared permutation when a synchronous generation
        # is decided together).
        shuffled = standings.tiebreak if standings.tiebreak is not None else rng.permutation(n)
        top, bottom = top_and_bottom(best_first(standings.fitness, shuffled), self.fraction)
        if standings.index(member.id) not in bottom:
            return Continue()
        sources = top[standings.fitness[top] > -math.inf]
        if not len(sources):
            return Continue()
        return Exploit(int(standings.ids[sources[int(rng.integers(len(sources)))]]))
