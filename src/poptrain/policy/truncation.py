"""Truncation selection: the bottom of the population copies a member of the top (the paper's default)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..population import Continue, Decision, Exploit, MemberView
from .checks import check_number
from .ranking import standings_with
from .registry import PopulationView, Strategy, strategy


@strategy("exploit", "truncation")
@dataclass(frozen=True)
class Truncation(Strategy):
    """Bottom `fraction` of the population (random tie-breaks) copies a uniform draw from the top."""

    fraction: float = 0.25
    window: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", check_number("truncation", "fraction", self.fraction, 0.0, 0.5))

    def quantile(self, n: int) -> int:
        """q = max(1, ceil(n * fraction)), at most n // 2: the size of the top and of the bottom."""
        return min(max(1, math.ceil(round(n * self.fraction, 9))), n // 2)

    def decide(self, member: MemberView, population: PopulationView, rng: np.random.Generator) -> Decision:
        """Exploit a top-q member if `member` ranks in the bottom q, else Continue."""
        standings = standings_with(member, population)
        n = len(standings)
        if n < 2:
            return Continue()
        # A stable sort of a random permutation breaks ties uniformly at random (one shared
        # permutation when a synchronous generation is decided together).
        shuffled = standings.tiebreak if standings.tiebreak is not None else rng.permutation(n)
        ranked = shuffled[np.argsort(-standings.fitness[shuffled], kind="stable")]
        q = self.quantile(n)
        if standings.index(member.id) not in ranked[n - q:]:
            return Continue()
        top = ranked[:q]
        sources = top[standings.fitness[top] > -math.inf]
        if not len(sources):
            return Continue()
        return Exploit(int(standings.ids[sources[int(rng.integers(len(sources)))]]))
